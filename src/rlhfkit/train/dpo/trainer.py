"""Direct preference optimisation: preference pairs or rankings -> policy, with no reward model and
no sampling during training (Rafailov et al. 2023, "Direct Preference Optimization").

The losses are the pure functions of `rlhfkit.algorithms.dpo_losses`, chosen by name. This loop
supplies what they need with one model in memory: reference log-probs are computed once, before
the first update, from the initial weights (full fine-tuning) or from the base with the adapter
disabled (LoRA), and cached in the run directory; each step then encodes all responses of its
groups in one forward pass (see `batches`). The loss is the mean over the pairs (or rankings) of
the whole optimizer step, however it is split into micro-batches.
"""

from __future__ import annotations

import functools
from pathlib import Path
from typing import Any, NamedTuple

from torch import Tensor, nn

from rlhfkit.algorithms.dpo_losses import REFERENCE_FREE_LOSSES
from rlhfkit.config import require
from rlhfkit.data.chat import describe_templating
from rlhfkit.data.records import PromptText, prompt_text
from rlhfkit.models.adapters import (
    choose_trainable,
    trainable_parameters,
)
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.train.dpo.batches import (
    LAYOUTS,
    PreferenceGroup,
    compute_reference_logps,
    encode_group,
    fingerprint,
    gather_responses,
    given_reference_logps,
    load_reference_cache,
    record_texts,
    response_logps,
    response_offsets,
    save_reference_cache,
)
from rlhfkit.train.dpo.config import DPOConfig
from rlhfkit.train.dpo.evaluation import as_reference, evaluate, sampled_kl
from rlhfkit.train.dpo.terms import RANKING_MODES, MetricSums
from rlhfkit.train.engine import Engine
from rlhfkit.train.run import Run, log
from rlhfkit.train.sources import load_train_eval

REFERENCE_CACHE = "reference_logps.safetensors"
"""File in the run directory holding the reference log-probs of every train and eval response."""

HEADLINE = (
    ("train/loss", "loss"),
    ("train/reward_accuracy", "accuracy"),
    ("train/reward_margin", "margin"),
    ("eval/kl", "eval KL"),
)
"""What the console shows of a DPO run."""


def _encode(tokenizer, records: list, cfg: DPOConfig) -> tuple[list[PreferenceGroup], list[PromptText]]:
    texts, ties = record_texts(records)
    if ties:
        log.info("dropped %d ties: a tie names no better response", ties)
    groups = [
        encode_group(
            tokenizer,
            p,
            r,
            max_length=cfg.max_length,
            max_prompt_length=cfg.prompt_limit,
            chat_template=cfg.chat_template,
        )
        for p, r in texts
    ]
    cut = sum(g.prompt_truncated for g in groups)
    if cut:
        log.info("%d prompts were longer than the limit and were cut from the left", cut)
    return groups, [p for p, _ in texts]


class Preferences(NamedTuple):
    """Tokenized preference groups, and what evaluations read of the held-out ones."""

    train: list[PreferenceGroup]
    """Groups that train (every row held ties only is gone)."""
    held: list[PreferenceGroup]
    """Held-out groups."""
    eval_batches: list[list[int]]
    """At most `eval_batches` batches of indices into `held`."""
    kl_prompts: list[PromptText]
    """At most `kl_prompts` distinct held-out prompts, sampled to estimate the KL."""


def encode_preferences(tokenizer, train_recs: list, eval_recs: list, cfg: DPOConfig) -> Preferences:
    """Tokenize every group once; batch the held-out ones and pick the KL prompts."""
    log.info(describe_templating([r.prompt for r in train_recs], cfg.chat_template))
    train, _ = _encode(tokenizer, train_recs, cfg)
    held, held_prompts = _encode(tokenizer, eval_recs, cfg)
    if not train:
        raise ValueError(f"{cfg.data}: no usable preferences (every row was a tie)")
    size = cfg.batch_size
    batches = [list(range(i, min(i + size, len(held)))) for i in range(0, len(held), size)][: cfg.eval_batches]
    kl_prompts = list({prompt_text(p): p for p in held_prompts}.values())[: cfg.kl_prompts]
    return Preferences(train, held, batches, kl_prompts)


def reference_logps(
    cfg: DPOConfig,
    model: nn.Module,
    engine: Engine,
    run_dir: Path,
    splits: dict[str, list[PreferenceGroup]],
    pad: int,
    given: dict[str, Tensor | None],
) -> dict[str, Tensor] | None:
    """Reference log-probs of every response: the data's own (TRL's precomputed columns, when every row of
    every split has them), else from the cache or from one pass over the data."""
    if cfg.loss in REFERENCE_FREE_LOSSES:
        return None
    if all(v is not None for v in given.values()):
        log.info("reference log-probs read from the data (ref_chosen_logps / ref_rejected_logps): no reference pass")
        return {name: v for name, v in given.items() if v is not None}
    path = run_dir / REFERENCE_CACHE
    key = fingerprint(cfg.model, str(engine.compute_dtype), splits)
    cached = load_reference_cache(path, key)
    if cached is not None:
        log.info("reference log-probs read from %s", path)
        return cached
    with as_reference(model):
        out = {
            name: compute_reference_logps(
                model,
                groups,
                layout=cfg.layout,
                pad_id=pad,
                batch_size=cfg.ref_batch_size,
                device=engine.device,
                autocast=engine.autocast,
            )
            for name, groups in splits.items()
        }
    if engine.is_main:
        save_reference_cache(path, key, out)
    log.info(
        "reference log-probs of %d responses computed once and cached in %s", sum(v.numel() for v in out.values()), path
    )
    return out


def held_out_metrics(
    run: Run,
    cfg: DPOConfig,
    model: nn.Module,
    tokenizer: Any,
    data: Preferences,
    eval_ref: Tensor | None,
    pad: int,
    step: int,
) -> dict[str, float]:
    """Step `step`'s evaluation: loss and reward statistics of the held-out preferences, and the KL
    of fresh samples of held-out prompts (whose texts go to samples.jsonl)."""
    metrics = evaluate(cfg, run.engine, model, data.held, data.eval_batches, eval_ref, pad) if data.eval_batches else {}
    if data.kl_prompts:
        metrics["eval/kl"], texts = sampled_kl(cfg, run.engine, model, tokenizer, data.kl_prompts, cfg.seed + step)
        rows = [
            {"step": step, "prompt": prompt_text(p), "response": t} for p, t in zip(data.kl_prompts, texts, strict=True)
        ]
        run.append_samples(rows)
    return metrics


def dpo(cfg: DPOConfig) -> Path:
    """Run DPO (or a variant); returns the run directory, which is also the fine-tuned model's directory."""
    run = Run(cfg, "dpo", HEADLINE)

    # 1. Data: load, hold out by prompt, tokenize once.
    train_recs, eval_recs = load_train_eval(cfg, cfg.kind)
    loaded = load_model(cfg.model, dtype="fp32", device=run.device)
    tokenizer, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    data = encode_preferences(tokenizer, train_recs, eval_recs, cfg)
    train = data.train
    stream = run.stream([g.packed_length for g in train], group_by_length=cfg.group_by_length)
    offsets = response_offsets(train)

    # 2. Model: what trains (all, LoRA, or the top layers).
    require(not (run.engine.fsdp and cfg.lora is not None), "FSDP on CPU fine-tunes the full model: drop lora")
    model = choose_trainable(loaded.model, cfg.lora, cfg.freeze_layers)

    # 3. Reference log-probs, once, from the weights before any update (and before a checkpoint loads).
    given = {"train": given_reference_logps(train_recs), "eval": given_reference_logps(eval_recs)}
    reference = reference_logps(cfg, model, run.engine, run.dir, {"train": train, "eval": data.held}, pad, given)
    train_ref, eval_ref = (reference["train"], reference["eval"]) if reference else (None, None)

    # 4. Optimizer, resume from the newest checkpoint, engine.
    model, _, _ = run.setup(
        model,
        trainable_parameters(model),
        modules={"model": model},
        state={"data": stream},
        on=f"{len(train)} preference groups ({cfg.loss} loss)",
    )
    mode = RANKING_MODES[cfg.rankings_as]
    held_out = functools.partial(held_out_metrics, run, cfg, model, tokenizer, data, eval_ref, pad)
    run.log_initial(held_out if data.eval_batches or data.kl_prompts else None)

    for step in run.steps():
        # 5. One optimizer step: every response of the micro-batch's groups in one forward pass,
        # the loss normalised by the pairs (or rankings) of the whole step on every process.
        model.train()
        micro = stream.next_step()
        divisor = run.divisor(sum(mode.units([len(train[i].responses) for i in idx]) for idx in micro))
        sums = MetricSums()
        for i, idx in enumerate(micro):
            batch = LAYOUTS[cfg.layout]([train[g] for g in idx], pad).to(run.device)
            ref = None if train_ref is None else gather_responses(train_ref, offsets, idx).to(run.device)
            with run.engine.sync(model, last=i == len(micro) - 1), run.engine.autocast():
                logps, lengths = response_logps(model, batch)
                terms = mode.terms(logps.float(), lengths, ref, batch.sizes, cfg)
                run.engine.backward(terms.losses.sum() / divisor)
            sums.add(terms)
            run.count("examples", len(idx))
        grad_norm = run.optimizer_step(model)

        # 6. Log, evaluate, checkpoint.
        sums.reduce(run.all_sum)
        run.end_step(step, {**sums.means("train"), "train/grad_norm": grad_norm}, evaluate=held_out)
    run.close()

    # 7. The run directory becomes a model directory.
    _save_model(run, model, tokenizer)
    return run.dir


def _save_model(run: Run, model: nn.Module, tokenizer: Any) -> None:
    """The main process writes the trained model into the run directory (under FSDP every process
    first hands it its shards)."""
    plain = run.engine.full_model(model)
    if plain is not None:
        save_model_dir(plain, tokenizer, run.dir)
