"""Reward-model training on human judgments: pairs, rankings and ratings in one model.

Ouyang et al. 2022 (InstructGPT), sec. 3.5: a language-model trunk with a scalar head, trained so
preferred responses score higher. Each kind of judgment trains with a loss chosen by name (see
`objective`); K heads on bootstrap resamples make an ensemble whose disagreement flags
responses the reward model knows little about. After training the scores are normalized on samples
of a reference policy (Ziegler et al. 2019) and the run directory becomes a reward-model directory
(`rlhfkit.models.reward`).

What trains: everything, LoRA adapters, the top layers (``freeze_layers=N``), or only the heads
(``freeze_layers=-1``). With the trunk fully frozen its features are computed once per sequence and
cached, so every epoch after the first costs only the heads.
"""

from __future__ import annotations

import json
import random
from collections import Counter
from dataclasses import replace
from pathlib import Path
from typing import Any, cast

import torch

from rlhfkit.config import require
from rlhfkit.data.chat import describe_templating
from rlhfkit.data.records import Comparison, Record
from rlhfkit.files import write_text_atomic
from rlhfkit.models.adapters import (
    apply_lora,
    freeze_bottom_layers,
    trainable_parameters,
)
from rlhfkit.models.lm import base_model
from rlhfkit.models.loading import load_model
from rlhfkit.models.reward import (
    RewardHead,
    RewardModel,
    build_reward_model,
    normalization_from_raw,
    save_reward_model,
)
from rlhfkit.rollout.generate import sample_texts
from rlhfkit.train.reward.config import RewardConfig
from rlhfkit.train.reward.data import (
    RewardBatch,
    RewardData,
    bootstrap_weights,
    collate,
    encode_records,
    load_reward_records,
)
from rlhfkit.train.reward.evaluation import (
    eval_pairs,
    evaluate_reward_model,
    format_metrics,
    metrics_json,
    pair_metrics,
)
from rlhfkit.train.reward.objective import (
    FeatureCache,
    LossParams,
    ObjectiveSpec,
    data_fingerprint,
    objective,
    ordinal_classes,
)
from rlhfkit.train.run import Run, log
from rlhfkit.train.sources import hold_out

FEATURES_FILE = "features.safetensors"
EVAL_FILE = "reward_eval.json"

HEADLINE = (
    ("train/loss", "loss"),
    ("train/accuracy", "accuracy"),
    ("eval/accuracy", "eval accuracy"),
    ("perf/examples_per_s", "examples/s"),
)
"""What the console shows of a reward-model run."""


def _load_split(cfg: RewardConfig) -> tuple[list[Record], list[Record]]:
    """(train, held-out) records of every source; held-out by whole prompts unless `eval_data` is given."""
    train: list[Record] = []
    held: list[Record] = []
    for spec in cfg.data:
        records = load_reward_records(spec, cfg.kind, cfg.skip_invalid)
        part_train, part_held = hold_out(records, 0.0 if cfg.eval_data else cfg.eval_fraction, cfg.seed)
        train, held = train + part_train, held + part_held
    for spec in cfg.eval_data:
        held += load_reward_records(spec, cfg.kind, cfg.skip_invalid)
    return train, held


def _drop_ties(records: list[Record], pairwise_loss: str) -> list[Record]:
    """Plain Bradley-Terry has no term for a tie: such pairs are dropped, and the count is reported."""
    if pairwise_loss != "bradley_terry":
        return records
    kept = [r for r in records if not (isinstance(r, Comparison) and r.tie)]
    if len(kept) < len(records):
        log.warning(
            "dropped %d tied pairs: pairwise_loss=bradley_terry cannot learn from ties (use ties_half or davidson)",
            len(records) - len(kept),
        )
    return kept


def _loss_name(cfg: RewardConfig, data: RewardData) -> str:
    names = {"pairs": cfg.pairwise_loss, "rankings": cfg.ranking_loss, "ratings": cfg.rating_loss}
    return "+".join(names[k] for k in data.kinds())


def _select_trainable(model: RewardModel, cfg: RewardConfig) -> bool:
    """Apply LoRA or freezing to the trunk; returns whether the whole trunk is frozen."""
    base_model(model.backbone).config.use_cache = False
    if cfg.lora is not None:
        model.backbone = apply_lora(model.backbone, cfg.lora)
    elif cfg.freeze_layers < 0:
        model.backbone.requires_grad_(False)
    elif cfg.freeze_layers > 0:
        freeze_bottom_layers(model.backbone, cfg.freeze_layers)
        # freeze_bottom_layers keeps tied embeddings trainable for the LM head's sake; a reward model
        # never uses that head, and trainable embeddings would send gradients through every layer.
        base_model(model.backbone).get_input_embeddings().requires_grad_(False)
    return not any(p.requires_grad for p in model.backbone.parameters())


def _rewards(
    model: torch.nn.Module, core: RewardModel, batch: RewardBatch, cache: FeatureCache | None, frozen: bool
) -> torch.Tensor:
    """(S, K) raw rewards of the batch rows: from cached features, a no-grad trunk, or a full forward."""
    if cache is not None:
        return core.head(cache.lookup(batch, core.features).to(core.device))
    if frozen:
        with torch.no_grad():
            features = core.features(batch.input_ids, batch.attention_mask, **batch.trunk_inputs())
        return core.head(features)
    return model(batch.input_ids, batch.attention_mask, **batch.trunk_inputs())


class HeldOut:
    """Held-out evaluation of `model`; with a frozen trunk the features are computed once and reused."""

    def __init__(self, model: RewardModel, data: RewardData, batch_size: int, reuse_features: bool) -> None:
        self.model = model
        self.data = data
        self.pairs = eval_pairs(data)
        self.batch_size = batch_size
        self.reuse = reuse_features
        self._features: torch.Tensor | None = None

    def __call__(self, step: int) -> dict[str, float]:
        """The scale-free metrics of any step, for metrics.jsonl (`_eval_metrics`)."""
        return _eval_metrics(self.metrics())

    def metrics(self) -> dict:
        """Accuracy, margins, calibration and accuracy by length of the model as it is now."""
        model = self.model
        if not self.reuse:
            return evaluate_reward_model(model, self.data, self.batch_size)
        if self._features is None:
            self._features = model.batched_features(self.data.sequences, self.batch_size)
        with torch.no_grad():
            raw = model.head(self._features.to(model.device)).float().cpu()
        return pair_metrics(raw, model.normalize(raw), self.pairs, self.data.response_lengths)


def reference_samples(
    model: RewardModel, cfg: RewardConfig, records: list[Record], frozen: bool
) -> tuple[list, list[str]]:
    """(prompts, responses): one sample of the reference policy for each of `normalize_prompts`
    distinct training prompts (two of a lone prompt; seeded choice and sampling, so the same call gives
    the same samples)."""
    prompts = list({json.dumps(r.prompt, sort_keys=True): r.prompt for r in records}.values())
    random.Random(cfg.seed).shuffle(prompts)
    prompts = prompts[: cfg.normalize_prompts]
    policy_name = cfg.normalize_policy or cfg.model
    if frozen and policy_name == cfg.model:
        policy, tokenizer = model.backbone, model.tokenizer  # the frozen trunk is the base model itself
    else:
        loaded = load_model(policy_name, dtype="auto", device=model.device)
        policy, tokenizer = loaded.model, loaded.tokenizer
    # A std needs two samples: with a single distinct prompt (a tiny data set), sample it twice.
    n = 1 if len(prompts) >= 2 else 2
    texts = sample_texts(policy, tokenizer, prompts, cfg.normalize_sampling, n=n, seed=cfg.seed)
    return [p for p in prompts for _ in range(n)], [t for group in texts for t in group]


def fit_normalization(model: RewardModel, cfg: RewardConfig, records: list[Record], frozen: bool) -> None:
    """Normalize every head so the reference policy's samples score mean 0, std 1 (Ziegler et al. 2019)."""
    prompts, texts = reference_samples(model, cfg, records, frozen)
    raw = model.raw_scores(model.encode(prompts, texts), cfg.eval_batch_size)
    policy_name = cfg.normalize_policy or cfg.model
    model.set_normalization(normalization_from_raw(raw, policy_name))
    norm = model.meta.normalization
    log.info(
        "normalized on %d samples of %s: gain %s, bias %s",
        len(prompts),
        policy_name,
        [round(g, 4) for g in norm.gain],
        [round(b, 4) for b in norm.bias],
    )


def _model_settings(cfg: RewardConfig) -> dict[str, Any]:
    """The settings of `cfg` that shape the reward model itself (`build_reward_model`'s keywords)."""
    keys = ("n_heads", "max_length", "seed", "pooling", "chat_template")
    return {key: getattr(cfg, key) for key in keys}


def train_reward_model(cfg: RewardConfig) -> Path:
    """Train; returns the run directory, which is also the reward model's directory."""
    run = Run(cfg, "reward", HEADLINE)

    # 1. Data: load, hold out whole prompts, tokenize every distinct sequence once.
    train_recs, eval_recs = _load_split(cfg)
    train_recs = _drop_ties(train_recs, cfg.pairwise_loss)
    core = build_reward_model(cfg.model, device=run.device, **_model_settings(cfg))
    data, held = _encode(core, cfg, train_recs, eval_recs)
    stream = run.stream(data.example_lengths(), group_by_length=cfg.group_by_length)
    weights = bootstrap_weights(len(data.examples), cfg.n_heads, cfg.seed, cfg.bootstrap)

    # 2. What trains: the heads (and the loss's own parameters) always; the trunk fully, through LoRA,
    # its top layers, or not at all (then its features are computed once and cached).
    frozen = _select_trainable(core, cfg)
    params, spec = _loss(cfg, data, run.device)
    _check_fsdp(run, cfg, params)
    cache = _feature_cache(cfg, core, data) if frozen and cfg.cache_features else None
    layout = "rows" if cache is not None else cfg.layout  # the cache keys features by sequence, row by row
    modules: dict[str, torch.nn.Module] = {"model": core, **({"loss": params} if list(params.parameters()) else {})}

    # 3. Optimizer, resume (the feature cache is kept beside the checkpoints), engine.
    model, _, _ = run.setup(
        core,
        trainable_parameters(core) + list(params.parameters()),
        modules=modules,
        state={"data": stream},
        files={FEATURES_FILE: cache},
        on=f"{len(data.examples)} judgments ({len(data.sequences)} distinct sequences, {core.meta.loss})",
    )
    held_out = HeldOut(core, held, cfg.eval_batch_size, reuse_features=frozen) if held.examples else None
    run.log_initial(held_out if cfg.eval_every else None)

    for step in run.steps():
        # 4. One optimizer step over this process's micro-batches (the loss: a mean over the global step).
        model.train()
        micro = stream.next_step()
        divisor = run.divisor(sum(len(idx) for idx in micro))
        sums: Counter[str] = Counter()
        for i, idx in enumerate(micro):
            batch = collate(data, idx, core.tokenizer.pad_token_id, layout).to(run.device)
            with run.engine.sync(model, last=i == len(micro) - 1), run.engine.autocast():
                rewards = _rewards(model, core, batch, cache, frozen).float()
                w = weights[batch.example_ids].to(run.device)
                loss, batch_metrics = objective(rewards, batch, w, params, spec, divisor=divisor)
                run.engine.backward(loss)
            sums.update(_weighted(batch_metrics, float(loss.detach()) * divisor, len(idx)))
            run.count("examples", len(batch.example_ids))
        grad_norm = run.optimizer_step(model)

        # 5. Log, evaluate (the last step's evaluation comes after normalizing), checkpoint.
        metrics = {**_step_means(run, sums), "train/grad_norm": grad_norm}
        if cache is not None:
            metrics["perf/cache_hit_rate"] = cache.hits / max(1, cache.hits + cache.misses)
        run.end_step(step, metrics, evaluate=held_out if cfg.eval_every and step < cfg.max_steps else None)

    # 6. Normalize on the reference policy, save the reward model, evaluate it.
    _finish(run, core, cfg, train_recs, frozen, held_out)
    return run.dir


STEP_METRICS = ("train/loss", "train/accuracy", "train/margin")
"""What `objective` may report of a batch; every process reduces all of them, present or not."""


def _weighted(batch_metrics: dict[str, float], loss_sum: float, examples: int) -> dict[str, float]:
    """A micro-batch's metrics as sums weighted by its examples, each with its weight (``n:KEY``)."""
    out = {"train/loss": loss_sum, "n:train/loss": float(examples)}
    for key in STEP_METRICS[1:]:
        if key in batch_metrics:
            out[key], out[f"n:{key}"] = batch_metrics[key] * examples, float(examples)
    return out


def _step_means(run: Run, sums: Counter[str]) -> dict[str, float]:
    """The step's metrics over every micro-batch of every process, example-weighted."""
    keys = [*STEP_METRICS, *(f"n:{k}" for k in STEP_METRICS)]
    totals = run.all_sum({k: sums.get(k, 0.0) for k in keys})
    return {k: totals[k] / totals[f"n:{k}"] for k in STEP_METRICS if totals[f"n:{k}"] > 0}


def _finish(
    run: Run, core: RewardModel, cfg: RewardConfig, train: list[Record], frozen: bool, held_out: HeldOut | None
) -> None:
    """Normalize the scores on the reference policy, save the reward model, and log and save its
    held-out metrics (the run's last evaluation: after normalizing, so margins are in its units)."""
    if cfg.normalize:
        fit_normalization(core, cfg, train, frozen)
    plain = run.engine.full_model(core, lambda: _plain_copy(core))  # under FSDP the shards gathered on rank 0
    if plain is not None:
        save_reward_model(cast(RewardModel, plain), run.dir)
    if held_out is not None:
        final = held_out.metrics()
        run.log(run.cfg.max_steps, _eval_metrics(final))
        if run.is_main:
            write_text_atomic(run.dir / EVAL_FILE, metrics_json(final) + "\n")
        log.info("held-out evaluation:\n%s", format_metrics(final))
    run.close()


def _check_fsdp(run: Run, cfg: RewardConfig, params: LossParams) -> None:
    """FSDP on CPU shards one model's own parameters, all of them trained (`Run.setup`)."""
    require(
        not run.engine.fsdp or (cfg.lora is None and cfg.freeze_layers == 0 and not list(params.parameters())),
        "FSDP on CPU fine-tunes the whole reward model and nothing else: drop lora and freeze_layers, use a "
        "loss without parameters of its own (not davidson or ordinal), or launch data-parallel",
    )


def _plain_copy(core: RewardModel) -> RewardModel:
    """An unsharded reward model shaped like the sharded `core` (its trunk's class, its heads and
    metadata), for `Engine.full_model` to load the gathered weights into."""
    trunk = type(core.backbone)(core.backbone.config)
    return RewardModel(trunk, core.tokenizer, RewardHead(core.meta.hidden_size, core.n_heads), core.meta)


def _encode(
    core: RewardModel, cfg: RewardConfig, train: list[Record], held: list[Record]
) -> tuple[RewardData, RewardData]:
    """Every distinct sequence tokenized once; the model's metadata names the loss it trains with."""
    log.info(describe_templating([r.prompt for r in train], cfg.chat_template))
    data = encode_records(core.tokenizer, train, cfg.max_length, cfg.chat_template)
    if data.truncated:
        log.info("%d sequences had their prompt cut from the left to fit max_length=%d", data.truncated, cfg.max_length)
    core.meta = replace(core.meta, loss=_loss_name(cfg, data))
    return data, encode_records(core.tokenizer, held, cfg.max_length, cfg.chat_template)


def _loss(cfg: RewardConfig, data: RewardData, device: torch.device) -> tuple[LossParams, ObjectiveSpec]:
    """The loss's learned parameters (Davidson's tie rate, ordinal thresholds) and its settings."""
    n_classes = ordinal_classes(data) if cfg.rating_loss == "ordinal" and "ratings" in data.kinds() else 0
    params = LossParams(cfg.n_heads, davidson=cfg.pairwise_loss == "davidson", n_classes=n_classes).to(device)
    return params, ObjectiveSpec(cfg.pairwise_loss, cfg.ranking_loss, cfg.rating_loss, cfg.use_margins, cfg.center_coef)


def _feature_cache(cfg: RewardConfig, core: RewardModel, data: RewardData) -> FeatureCache:
    """A cache of the frozen trunk's features, keyed by what they depend on (trunk, pooling, tokens)."""
    return FeatureCache(
        len(data.sequences), core.meta.hidden_size, data_fingerprint(f"{cfg.model}|{cfg.pooling}", data)
    )


def _eval_metrics(m: dict) -> dict[str, float]:
    """The scale-free held-out metrics for metrics.jsonl (margins, whose unit changes with the
    normalization, are only in reward_eval.json)."""
    keys = ("accuracy", "ece", "bt_loss", "mean_head_std")
    return {f"eval/{k}": m[k] for k in keys if k in m and m[k] == m[k]}
