"""Direct preference optimisation: preference pairs or rankings -> policy, with no reward model and
no sampling during training (Rafailov et al. 2023, "Direct Preference Optimization").

The losses are the pure functions of `rlhfkit.algorithms.dpo_losses`, chosen by name. This loop
supplies what they need with one model in memory: reference log-probs are computed once, before
the first update, from the initial weights (full fine-tuning) or from the base with the adapter
disabled (LoRA), and cached in the run directory; each step then encodes all responses of its
groups in one forward pass (see `preference_batches`). The loss is the mean over the pairs (or
rankings) of the whole optimizer step, however it is split into micro-batches.
"""

from __future__ import annotations

import contextlib
import inspect
import json
import math
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import NamedTuple

import torch
from torch import Tensor, nn

from rlhfkit.algorithms.dpo_losses import DPO_LOSSES, REFERENCE_FREE_LOSSES, PreferenceLogps, plackett_luce_dpo
from rlhfkit.algorithms.kl import KL_ESTIMATORS
from rlhfkit.config import require
from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.models.adapters import LoRAConfig, apply_lora, count_parameters, freeze_bottom_layers, is_peft
from rlhfkit.models.adapters import trainable_parameters
from rlhfkit.models.lm import response_logprobs
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.rollout.generate import SamplingConfig, sample
from rlhfkit.data.sampler import BatchStream
from rlhfkit.train.checkpoint import save_checkpoint
from rlhfkit.train.engine import Engine
from rlhfkit.train.preference_batches import (
    LAYOUTS,
    PreferenceGroup,
    compute_reference_logps,
    encode_group,
    fingerprint,
    gather_responses,
    load_reference_cache,
    pair_indices,
    record_texts,
    response_logps,
    response_offsets,
    save_reference_cache,
)
from rlhfkit.train.run import (
    MetricsLogger,
    Throughput,
    TrainConfig,
    check_finite,
    resume_latest,
    log,
    make_optimizer,
    prepare_run_dir,
    progress,
    scheduler_state,
)
from rlhfkit.train.sources import load_training_records, split_holdout

REFERENCE_CACHE = "reference_logps.safetensors"
"""File in the run directory holding the reference log-probs of every train and eval response."""

HYPER_FIELDS = ("label_smoothing", "gamma", "sft_weight")
"""Config fields passed to the loss as keyword arguments; each loss accepts those in its signature."""


def loss_hyperparameters(loss: str) -> frozenset[str]:
    """The keyword-only hyper-parameters that `DPO_LOSSES[loss]` accepts (read from its signature)."""
    params = inspect.signature(DPO_LOSSES[loss]).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


@dataclass(frozen=True)
class DPOConfig(TrainConfig):
    """`rlhfkit dpo`: fine-tune a model on preference pairs or rankings with DPO or a variant."""

    model: str = "smollm2"
    """MODEL to start from (and the reference): 'smollm2' (bundled), a model directory, a finished run, or a hub id."""
    data: str = ""
    """Preferences: JSONL/CSV/JSON file, dataset directory, hf:NAME, or DBURL#PROJECT (a feedback-app project)."""
    kind: str = "pairs"
    """What `data` holds: 'pairs' (prompt, chosen, rejected; ties are dropped) or 'rankings' (K responses, best first)."""
    eval_data: str = ""
    """Held-out preferences of the same kind; when empty, `eval_fraction` of `data` is held out (by prompt)."""
    eval_fraction: float = 0.05
    """Share of `data` held out for the eval metrics and the KL prompts when `eval_data` is empty."""
    skip_invalid: bool = False
    """Skip malformed rows (and report how many and why) instead of failing on the first."""
    loss: str = "sigmoid"
    """Preference loss: sigmoid (DPO), cdpo, robust, hinge, ipo, simpo, orpo (see algorithms/dpo_losses.py)."""
    beta: float = 0.1
    """Loss temperature: DPO's beta, IPO's tau, SimPO's beta, ORPO's lambda (weight of the odds-ratio term)."""
    label_smoothing: float | None = None
    """Probability that a label is flipped, for cdpo, robust and simpo only; unset = the loss's default (0.1, 0.1, 0)."""
    gamma: float | None = None
    """SimPO's target reward margin (simpo only); unset = 0.5."""
    sft_weight: float | None = None
    """Weight of the chosen response's mean NLL added to the SimPO loss (simpo only; CPO's alpha); unset = 0."""
    rankings_as: str = "pairs"
    """How K-way rankings train (kind=rankings): 'pairs' = every better/worse pair under `loss`, each response
    encoded once; 'plackett_luce' = the Plackett-Luce likelihood of the whole ranking (DPO appendix A.3; loss=sigmoid)."""
    layout: str = "packed"
    """Batch layout: 'packed' (one row per prompt: the prompt once, then each response behind a block attention mask)
    or 'rows' (one row per prompt+response, all concatenated along the batch). Same log-probs; packed does less work."""
    max_length: int = 512
    """Maximum tokens of prompt + one response."""
    max_prompt_length: int = 256
    """When prompt + the longest response exceed `max_length`, the prompt is cut from the left to this many tokens."""
    group_by_length: bool = True
    """Batch groups of similar length together to cut padding (the order stays seeded)."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters (e.g. lora.r=16); the reference is then the base model with the adapter disabled."""
    freeze_layers: int = 0
    """Freeze the embeddings and this many bottom transformer layers (full fine-tuning of the rest)."""
    ref_batch_size: int = 16
    """Prompts per forward pass when computing the reference log-probs (no gradients, so it can exceed batch_size)."""
    eval_batches: int = 8
    """At most this many batches of held-out preferences per evaluation."""
    kl_prompts: int = 8
    """Held-out prompts sampled from at each evaluation to estimate KL(policy || reference) (0: skip)."""
    kl_max_new_tokens: int = 64
    """Longest sampled response for the KL estimate."""
    kl_estimator: str = "k3"
    """Per-token KL estimator summed over each sampled response: k1, k2 or k3 (Schulman 2020)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.data), "data is required (a preference pairs or rankings file)")
        require(self.kind in ("pairs", "rankings"), f"kind must be 'pairs' or 'rankings', got {self.kind!r}")
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")
        require(self.loss in DPO_LOSSES, f"loss must be one of {', '.join(DPO_LOSSES)}, got {self.loss!r}")
        require(self.beta > 0, f"beta must be positive, got {self.beta}")
        accepted = loss_hyperparameters(self.loss)
        for name in HYPER_FIELDS:
            require(getattr(self, name) is None or name in accepted,
                    f"{name} does not apply to loss={self.loss}; it is a parameter of "
                    f"{', '.join(n for n in DPO_LOSSES if name in loss_hyperparameters(n))}")
        if self.label_smoothing is not None:
            require(0.0 <= self.label_smoothing < 0.5, "label_smoothing must be in [0, 0.5)")
        if self.gamma is not None:
            require(math.isfinite(self.gamma), "gamma must be a finite number")
        if self.sft_weight is not None:
            require(self.sft_weight >= 0, "sft_weight must be >= 0")
        require(self.rankings_as in RANKING_MODES, f"rankings_as must be one of {', '.join(RANKING_MODES)}")
        require(self.rankings_as == "pairs" or self.kind == "rankings",
                "rankings_as applies to kind=rankings; pairs always train as pairs")
        require(self.rankings_as != "plackett_luce" or self.loss == "sigmoid",
                "rankings_as=plackett_luce is the K-way form of the sigmoid (DPO) loss; set loss=sigmoid")
        require(self.layout in LAYOUTS, f"layout must be one of {', '.join(LAYOUTS)}")
        require(self.max_length >= 8, "max_length must be at least 8")
        require(0 < self.max_prompt_length < self.max_length, "max_prompt_length must be in (0, max_length)")
        require(self.freeze_layers >= 0, "freeze_layers must be >= 0")
        require(not (self.lora is not None and self.freeze_layers),
                "lora and freeze_layers both choose what trains; set one of them")
        require(self.ref_batch_size > 0 and self.eval_batches > 0, "ref_batch_size and eval_batches must be positive")
        require(self.kl_prompts >= 0 and self.kl_max_new_tokens > 0, "kl_prompts >= 0 and kl_max_new_tokens > 0")
        require(self.kl_estimator in KL_ESTIMATORS, f"kl_estimator must be one of {', '.join(KL_ESTIMATORS)}")

    def hyperparameters(self) -> dict[str, float]:
        """The variant's hyper-parameters that are set, as keyword arguments of the loss."""
        return {name: getattr(self, name) for name in HYPER_FIELDS if getattr(self, name) is not None}


class PreferenceTerms(NamedTuple):
    """A batch's loss terms and what is logged about it. U units (pairs or rankings), P pairs."""

    losses: Tensor
    """(U,) loss per unit; the step minimises their mean."""
    chosen_rewards: Tensor
    """(P,) detached implicit reward of the better response of each pair."""
    rejected_rewards: Tensor
    """(P,) detached implicit reward of the worse response."""
    chosen_logps: Tensor
    """(P,) detached summed policy log-prob of the better response."""
    rejected_logps: Tensor
    """(P,) detached summed policy log-prob of the worse response."""


def pairwise_terms(logps: Tensor, lengths: Tensor, ref: Tensor | None, sizes: Sequence[int],
                   cfg: DPOConfig) -> PreferenceTerms:
    """`cfg.loss` on every better/worse pair of each group; logps, lengths, ref are (n_responses,)."""
    better, worse = (i.to(logps.device) for i in pair_indices(sizes))
    token_counts = lengths.to(logps.dtype).clamp(min=1)
    batch = PreferenceLogps(
        chosen_logps=logps[better],
        rejected_logps=logps[worse],
        ref_chosen_logps=None if ref is None else ref[better],
        ref_rejected_logps=None if ref is None else ref[worse],
        chosen_lengths=lengths[better],
        rejected_lengths=lengths[worse],
        chosen_nll=-logps[better] / token_counts[better],  # mean token NLL (ORPO's and SimPO's SFT term)
    )
    out = DPO_LOSSES[cfg.loss](batch, cfg.beta, **cfg.hyperparameters())
    return PreferenceTerms(out.losses, out.chosen_rewards, out.rejected_rewards,
                           logps[better].detach(), logps[worse].detach())


def plackett_luce_terms(logps: Tensor, lengths: Tensor, ref: Tensor | None, sizes: Sequence[int],
                        cfg: DPOConfig) -> PreferenceTerms:
    """The Plackett-Luce DPO loss of each whole ranking; rewards are logged pair by pair."""
    if ref is None:
        raise ValueError("plackett_luce needs reference log-probs")
    rows = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)], device=logps.device)
    cols = torch.tensor([j for n in sizes for j in range(n)], device=logps.device)
    shape = (len(sizes), max(sizes))
    policy = logps.new_zeros(shape).index_put((rows, cols), logps)
    reference = logps.new_zeros(shape).index_put((rows, cols), ref.to(logps.dtype))
    mask = torch.zeros(shape, dtype=torch.bool, device=logps.device).index_put((rows, cols), torch.tensor(True))
    out = plackett_luce_dpo(policy, reference, mask, cfg.beta)
    rewards = out.rewards[rows, cols]  # back to flat response order
    better, worse = (i.to(logps.device) for i in pair_indices(sizes))
    return PreferenceTerms(out.losses, rewards[better], rewards[worse], logps[better].detach(), logps[worse].detach())


class RankingMode(NamedTuple):
    terms: Callable[[Tensor, Tensor, Tensor | None, Sequence[int], DPOConfig], PreferenceTerms]
    """Loss terms of a batch."""
    units: Callable[[Sequence[int]], int]
    """How many loss units (the mean's denominator) groups of these sizes hold."""


RANKING_MODES: dict[str, RankingMode] = {
    "pairs": RankingMode(pairwise_terms, lambda sizes: sum(n * (n - 1) // 2 for n in sizes)),
    "plackett_luce": RankingMode(plackett_luce_terms, len),
}
"""How a group of responses becomes loss terms: every pair under a pairwise loss, or one ranking."""


class MetricSums:
    """Running sums of a step's (or an evaluation's) loss and pair statistics."""

    def __init__(self) -> None:
        self.loss = self.units = self.pairs = 0.0
        self.sums: dict[str, float] = {}

    def add(self, terms: PreferenceTerms) -> None:
        self.loss += float(terms.losses.detach().sum())
        self.units += terms.losses.numel()
        self.pairs += terms.chosen_rewards.numel()
        margin = terms.chosen_rewards - terms.rejected_rewards
        for name, value in (("chosen_reward", terms.chosen_rewards), ("rejected_reward", terms.rejected_rewards),
                            ("reward_margin", margin), ("reward_accuracy", (margin > 0).float()),
                            ("chosen_logp", terms.chosen_logps), ("rejected_logp", terms.rejected_logps)):
            self.sums[name] = self.sums.get(name, 0.0) + float(value.float().sum())

    def means(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/loss": self.loss / max(1.0, self.units)}
        out.update({f"{prefix}/{k}": v / max(1.0, self.pairs) for k, v in self.sums.items()})
        return out


def _encode(tokenizer, records: list, cfg: DPOConfig) -> tuple[list[PreferenceGroup], list[PromptText]]:
    texts, ties = record_texts(records)
    if ties:
        log.info("dropped %d ties: a tie names no better response", ties)
    groups = [encode_group(tokenizer, p, r, max_length=cfg.max_length, max_prompt_length=cfg.max_prompt_length)
              for p, r in texts]
    cut = sum(g.prompt_truncated for g in groups)
    if cut:
        log.info("%d prompts were longer than the limit and were cut from the left", cut)
    return groups, [p for p, _ in texts]


def _reference_logps(cfg: DPOConfig, model: nn.Module, engine: Engine, run_dir: Path,
                     splits: dict[str, list[PreferenceGroup]], pad: int) -> dict[str, Tensor] | None:
    """Reference log-probs of every response, from the cache or from one pass over the data."""
    if cfg.loss in REFERENCE_FREE_LOSSES:
        return None
    path = run_dir / REFERENCE_CACHE
    key = fingerprint(cfg.model, str(engine.compute_dtype), splits)
    cached = load_reference_cache(path, key)
    if cached is not None:
        log.info("reference log-probs read from %s", path)
        return cached
    with _as_reference(model):
        out = {name: compute_reference_logps(model, groups, layout=cfg.layout, pad_id=pad,
                                             batch_size=cfg.ref_batch_size, device=engine.device,
                                             autocast=engine.autocast)
               for name, groups in splits.items()}
    save_reference_cache(path, key, out)
    log.info("reference log-probs of %d responses computed once and cached in %s",
             sum(v.numel() for v in out.values()), path)
    return out


def _as_reference(model: nn.Module) -> contextlib.AbstractContextManager:
    """LoRA: the base with the adapter disabled. Full fine-tuning: the model before any update."""
    return model.disable_adapter() if is_peft(model) else contextlib.nullcontext()


@contextlib.contextmanager
def _reference_model(cfg: DPOConfig, model: nn.Module, engine: Engine) -> Iterator[nn.Module]:
    """The reference for fresh samples: the adapter-disabled base (LoRA), else the initial weights
    loaded for the moment (training keeps one model; this one lives only while the KL is measured)."""
    if is_peft(model):
        with model.disable_adapter():
            yield model
        return
    ref = load_model(cfg.model, dtype="fp32", device=engine.device).model
    ref.eval()
    try:
        yield ref
    finally:
        del ref


@torch.no_grad()
def evaluate(cfg: DPOConfig, engine: Engine, model: nn.Module, groups: list[PreferenceGroup],
             batches: list[list[int]], ref: Tensor | None, pad: int) -> dict[str, float]:
    """Loss, reward accuracy and margin, rewards and log-probs on held-out preferences."""
    model.eval()
    offsets = response_offsets(groups)
    sums = MetricSums()
    for idx in batches:
        batch = LAYOUTS[cfg.layout]([groups[i] for i in idx], pad).to(engine.device)
        ref_b = None if ref is None else gather_responses(ref, offsets, idx).to(engine.device)
        with engine.autocast():
            logps, lengths = response_logps(model, batch)
            sums.add(RANKING_MODES[cfg.rankings_as].terms(logps.float(), lengths, ref_b, batch.sizes, cfg))
    return sums.means("eval")


@torch.no_grad()
def sampled_kl(cfg: DPOConfig, engine: Engine, model: nn.Module, tokenizer, prompts: list[PromptText],
               seed: int) -> tuple[float, list[str]]:
    """Mean over sampled responses of the summed per-token KL(policy || reference) estimate.

    Responses are sampled from the policy at temperature 1 with no truncation, so they come from the
    very distribution whose KL to the reference is estimated (Schulman 2020, k1/k2/k3).
    """
    policy = engine.unwrap(model)
    policy.eval()
    scfg = SamplingConfig(max_new_tokens=cfg.kl_max_new_tokens, temperature=1.0,
                          max_prompt_length=cfg.max_prompt_length, batch_size=len(prompts))
    out = sample(policy, tokenizer, prompts, scfg, generator_seed=seed)
    ids = torch.cat([out.prompt_ids, out.response_ids], dim=1)
    mask = torch.cat([out.prompt_mask, out.response_mask], dim=1)
    start = out.prompt_ids.shape[1]
    with engine.autocast():
        logp, _ = response_logprobs(policy, ids, mask, start)
    with _reference_model(cfg, policy, engine) as ref, engine.autocast():
        ref_logp, _ = response_logprobs(ref, ids, mask, start)
    per_token = KL_ESTIMATORS[cfg.kl_estimator](logp.float(), ref_logp.float())
    kl = (per_token * out.response_mask).sum(dim=1)  # (B,) summed over each response
    return float(kl.mean()), out.texts


def _write_samples(path: Path, step: int, prompts: list[PromptText], texts: list[str]) -> None:
    with open(path, "a", encoding="utf-8") as f:
        for p, t in zip(prompts, texts, strict=True):
            f.write(json.dumps({"step": step, "prompt": prompt_text(p), "response": t}) + "\n")


def _drop_samples_after(path: Path, step: int) -> None:
    """A resumed run samples those steps again: drop what a killed run wrote past its checkpoint."""
    if path.exists():
        rows = [line for line in path.read_text(encoding="utf-8").splitlines() if line.strip()]
        kept = []
        for line in rows:
            try:
                if int(json.loads(line)["step"]) <= step:
                    kept.append(line)
            except (ValueError, KeyError, TypeError):
                continue  # a line torn by a crash mid-write
        path.write_text("".join(k + "\n" for k in kept), encoding="utf-8")


def dpo(cfg: DPOConfig) -> Path:
    """Run DPO (or a variant); returns the run directory, which is also the fine-tuned model's directory."""
    run_dir = prepare_run_dir(cfg)
    engine = Engine(cfg.dtype, cfg.seed)

    # 1. Data: load, hold out by prompt, tokenize once.
    records = load_training_records(cfg.data, cfg.kind, skip_invalid=cfg.skip_invalid)
    train_recs, eval_recs = split_holdout(records, cfg.eval_data, cfg.eval_fraction, cfg.seed, cfg.kind,
                                          cfg.skip_invalid)
    loaded = load_model(cfg.model, dtype="fp32", device=engine.device)
    tokenizer, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    train, _ = _encode(tokenizer, train_recs, cfg)
    held, held_prompts = _encode(tokenizer, eval_recs, cfg)
    if not train:
        raise ValueError(f"{cfg.data}: no usable preferences (every row was a tie)")
    stream = BatchStream([g.packed_length for g in train], cfg.batch_size, cfg.seed, cfg.group_by_length)
    offsets = response_offsets(train)
    eval_batches = [list(range(i, min(i + cfg.batch_size, len(held))))
                    for i in range(0, len(held), cfg.batch_size)][: cfg.eval_batches]
    kl_prompts = list({prompt_text(p): p for p in held_prompts}.values())[: cfg.kl_prompts]

    # 2. Model: what trains (all, LoRA, or the top layers).
    model = loaded.model
    model.config.use_cache = False
    if cfg.lora is not None:
        model = apply_lora(model, cfg.lora)
    freeze_bottom_layers(model, cfg.freeze_layers)
    trainable, total = count_parameters(model)
    log.info("training %s of %s parameters on %d preference groups (%s loss)",
             f"{trainable:,}", f"{total:,}", len(train), cfg.loss)

    # 3. Reference log-probs, once, from the weights before any update (and before a checkpoint loads).
    reference = _reference_logps(cfg, model, engine, run_dir, {"train": train, "eval": held}, pad)
    train_ref = None if reference is None else reference["train"]
    eval_ref = None if reference is None else reference["eval"]
    optimizer, scheduler = make_optimizer(trainable_parameters(model), cfg)

    # 4. Resume from the newest checkpoint, if any.
    restored = resume_latest(run_dir, enabled=cfg.resume, modules={"model": model}, optimizer=optimizer,
                             scheduler=scheduler, stream=stream)
    start = restored.step if restored else 0
    model, optimizer = engine.prepare(model, optimizer)

    logger = MetricsLogger(run_dir, cfg.report_to, config=cfg, resume_step=start)
    samples_path = run_dir / "samples.jsonl"
    _drop_samples_after(samples_path, start)
    mode = RANKING_MODES[cfg.rankings_as]
    speed = Throughput()
    bar = progress(cfg.max_steps, start, "dpo", cfg.progress)

    def run_eval(step: int) -> dict[str, float]:
        metrics = evaluate(cfg, engine, model, held, eval_batches, eval_ref, pad) if eval_batches else {}
        if kl_prompts:
            metrics["eval/kl"], texts = sampled_kl(cfg, engine, model, tokenizer, kl_prompts, cfg.seed + step)
            _write_samples(samples_path, step, kl_prompts, texts)
        return metrics

    if start == 0 and (eval_batches or kl_prompts):
        logger.log(0, run_eval(0))

    def checkpoint(step: int) -> None:
        state = {"scheduler": scheduler_state(scheduler), "data": stream.state_dict()}
        save_checkpoint(run_dir / "checkpoints", step, modules={"model": engine.unwrap(model)},
                        optimizer=optimizer, state=state, keep=cfg.keep_checkpoints)

    for step in range(start + 1, cfg.max_steps + 1):
        # 5. One optimizer step: every response of the micro-batch's groups in one forward pass,
        # the loss normalised by the pairs (or rankings) of the whole step.
        model.train()
        micro = [stream.next_batch() for _ in range(cfg.grad_accum)]
        units = sum(mode.units([len(train[i].responses) for i in idx]) for idx in micro)
        sums = MetricSums()
        for i, idx in enumerate(micro):
            batch = LAYOUTS[cfg.layout]([train[g] for g in idx], pad).to(engine.device)
            ref = None if train_ref is None else gather_responses(train_ref, offsets, idx).to(engine.device)
            with engine.sync(model, last=i == len(micro) - 1), engine.autocast():
                logps, lengths = response_logps(model, batch)
                terms = mode.terms(logps.float(), lengths, ref, batch.sizes, cfg)
                engine.backward(terms.losses.sum() / max(1, units))
            sums.add(terms)
            speed.add(len(idx))
        grad_norm = engine.clip(model, cfg.max_grad_norm)
        optimizer.step()
        scheduler.step()
        optimizer.zero_grad(set_to_none=True)

        # 6. Log, evaluate, checkpoint.
        metrics = {**sums.means("train"), "train/grad_norm": grad_norm, "train/lr": scheduler.get_last_lr()[0]}
        check_finite(step, metrics, run_dir)
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            metrics["perf/examples_per_s"] = speed.rate()
            if (cfg.eval_every and step % cfg.eval_every == 0) or step == cfg.max_steps:
                metrics.update(run_eval(step))
            logger.log(step, metrics)
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
            checkpoint(step)
        bar.update(1)
    bar.close()
    logger.close()

    # 7. The run directory becomes a model directory, and gets its report.
    save_model_dir(engine.unwrap(model), tokenizer, run_dir)
    from rlhfkit.eval.report import write_report

    write_report(run_dir, title=f"DPO ({cfg.loss}) of {cfg.model}")
    return run_dir
