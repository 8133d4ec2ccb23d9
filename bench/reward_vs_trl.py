"""Reward-model training: rlhfkit vs TRL's RewardTrainer on SmolLM2-135M and HH-RLHF harmless pairs.

    .venv/bin/python bench/reward_vs_trl.py                      # 30 steps, batch 8, max length 128
    .venv/bin/python bench/reward_vs_trl.py --steps 20 --eval-size 200 --freeze-layers 24 --layout rows

Both sides get the same model directory (rlhfkit's cached safetensors of SmolLM2-135M-Instruct), the
same training pairs and held-out pairs (a prompt-disjoint split of the shared HH-RLHF harmless dev
file), the SAME BATCHES in the same order (``--order shared``, the default: the harness draws the
pairs each step trains on, so the accuracies are a paired comparison of the two trainers rather than
of their samplers; ``--order own`` lets each side's sampler draw its own), and the SAME TOKEN IDS:
the harness tokenizes every (prompt, response) once with rlhfkit's chat formatting and truncation and hands TRL the ids (its pre-tokenized ``chosen_ids`` /
``rejected_ids`` format), so neither side's truncation rule changes what is trained. Same batch,
steps, constant learning rate, AdamW betas, clipping; one compute dtype on both sides (`--dtype`, fp32 by default). TRL reads the reward at
the last non-pad token, so its pad token is set to ``<|endoftext|>`` (never inside the texts) and
it reads the EOS, exactly as rlhfkit does. rlhfkit trains in its default packed layout (``--layout``):
a pair's chosen and rejected share one row and their common prompt is encoded once, with the same
rewards as one row each; tokens/s counts the sequences' tokens on both sides, as TRL does.

Each side runs in its own process under the machine's bench lock (TRL in bench/.venvs/trl-latest)
and reports steps/s and non-padding tokens/s (steady state after the first step) and its held-out
accuracy, scored by one function here; the harness measures peak RSS. A third, unmeasured TRL
process checks that TRL's own `RewardTrainer.compute_loss` and rlhfkit's objective give the same
Bradley-Terry loss (with margins) on the same batch, same weights. The table goes to
bench/results/reward.md.

This one file is also the two sides: ``python bench/reward_vs_trl.py --side SIDE SPEC OUT``.
"""

from __future__ import annotations

import argparse
import contextlib
import json
import os
import resource
import shlex
import sys
import tempfile
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    VENVS_DIR,
    ChildRun,
    Metric,
    bench_lock,
    busy_warning,
    comparison_table,
    cpu_name,
    log_tail,
    read_json,
    read_rlhfkit_in_file_order,
    read_trl_in_file_order,
    run_measured,
    shared_order,
    steady_rate,
    write_json,
)

HH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "dev.jsonl"
TRL_PAD = "<|endoftext|>"
"""TRL's pad token here: the classifier reads the last token that is not the pad token, and SmolLM2's
default pad is its EOS, which would make TRL read the token before the EOS."""

METRICS = [
    Metric("steps_per_s", "optimizer steps/s (steady state)", "{:.3f}", True, 2.0),
    Metric("tokens_per_s", "non-padding tokens/s (steady state)", "{:,.0f}", True),
    Metric("peak_rss_mb", "peak RSS, process tree (MiB)", "{:,.0f}", False, 1.0),
    Metric("train_max_rss_mb", "peak RSS at end of training (MiB, ru_maxrss)", "{:,.0f}", False),
    Metric("accuracy", "held-out accuracy", "{:.4f}", True, 1.0),
    Metric("trainable_params", "trainable parameters", "{:,.0f}", False),
    Metric("train_call_s", "training call, wall s (load, tokenize, train, save)", "{:.1f}", False),
]


# ---- shared by every side -----------------------------------------------------------------------


class StepRecorder:
    """When each optimizer step ended, the non-padding tokens of its sequences, and the tokens the
    trunk encoded for them (fewer when a pair's shared prompt is encoded once)."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.encoded: list[int] = []
        self.rss_mb = 0.0

    def step(self, tokens: int, encoded: int | None = None) -> None:
        self.times.append(time.perf_counter())
        self.tokens.append(int(tokens))
        self.encoded.append(int(tokens if encoded is None else encoded))
        self.rss_mb = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self) -> dict[str, Any]:
        return {
            "steps_per_s": steady_rate(self.times, [1] * len(self.times), skip=1),
            "tokens_per_s": steady_rate(self.times, self.tokens, skip=1),
            "step_s": [round(b - a, 3) for a, b in pairwise(self.times)],
            "tokens_trained": sum(self.tokens),
            "tokens_encoded": sum(self.encoded),
            "step_tokens": self.tokens,
            "train_max_rss_mb": self.rss_mb,  # ru_maxrss when the last step ended: before saving and eval
        }


def _rows(path: str | Path) -> list[dict[str, Any]]:
    return [json.loads(line) for line in Path(path).read_text().splitlines() if line]


def pair_accuracy(
    score: Callable[[Any, Any], Any], rows: list[dict[str, Any]], pad_id: int, batch_size: int = 16
) -> float:
    """Share of held-out pairs whose chosen ids score higher; `score(ids, mask) -> (B,)` rewards.

    Sequences are scored longest first in right-padded batches; an exact tie counts 1/2.
    """
    import torch

    seqs = [r["chosen_ids"] for r in rows] + [r["rejected_ids"] for r in rows]
    order = sorted(range(len(seqs)), key=lambda i: -len(seqs[i]))
    rewards = torch.zeros(len(seqs))
    with torch.no_grad():
        for start in range(0, len(order), batch_size):
            chunk = order[start : start + batch_size]
            width = max(len(seqs[i]) for i in chunk)
            ids = torch.full((len(chunk), width), pad_id, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for j, i in enumerate(chunk):
                ids[j, : len(seqs[i])] = torch.tensor(seqs[i])
                mask[j, : len(seqs[i])] = 1
            rewards[chunk] = score(ids, mask).float().flatten()
    n = len(rows)
    delta = rewards[:n] - rewards[n:]
    return float(((delta > 0).float() + 0.5 * (delta == 0).float()).mean())


def _trainable(model: Any) -> int:
    return sum(p.numel() for p in model.parameters() if p.requires_grad)


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


# ---- rlhfkit side ------------------------------------------------------------------------------


def run_rlhfkit(spec: dict[str, Any]) -> dict[str, Any]:
    """rlhfkit.train.reward.train_reward_model, timed through its Throughput counter (one add() per step)."""
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.train import run as run_module
    from rlhfkit.train.reward import RewardConfig, train_reward_model
    from rlhfkit.train.reward import trainer as reward_module

    recorder = StepRecorder()
    tokens: dict[str, int] = {"n": 0, "encoded": 0}
    original_collate = reward_module.collate

    def counting_collate(data: Any, ids: list[int], pad: int, layout: str = "rows") -> Any:
        batch = original_collate(data, ids, pad, layout)
        # Non-padding tokens of the step's sequences (a sequence shared by two examples counts once), as
        # TRL counts them, and the tokens the trunk encoded (the packed layout encodes a shared prompt once).
        tokens["n"] = sum(len(data.sequences[s]) for s in batch.seq_ids.tolist())
        tokens["encoded"] = batch.n_tokens
        return batch

    class RecordingThroughput(run_module.Throughput):
        def add(self, n: float) -> None:
            super().add(n)
            recorder.step(tokens["n"], tokens["encoded"])

    run_module.Throughput = RecordingThroughput  # measurement hooks only; the loop is unchanged
    reward_module.collate = counting_collate
    if spec.get("file_order"):  # train.jsonl starts with the harness's batches (the same as TRL's)
        read_rlhfkit_in_file_order(reward_module)
    cfg = RewardConfig(
        output=Path(spec["work_dir"]) / "rlhfkit-run",
        model=spec["model_dir"],
        data=(spec["train_file"],),
        eval_fraction=0.0,  # the held-out pairs are scored below, identically for both sides
        max_length=spec["max_length"],
        batch_size=spec["batch_size"],
        lr=spec["lr"],
        warmup_steps=0,
        schedule="constant",
        max_grad_norm=1.0,
        max_steps=spec["steps"],
        dtype=spec.get("dtype", "fp32"),
        seed=spec["seed"],
        freeze_layers=spec["freeze_layers"],
        group_by_length=spec["group_by_length"],
        normalize=False,
        pooling=spec.get("pooling", "last"),
        layout=spec.get("layout", "packed"),
        save_every=0,
        log_every=1,
        progress=False,
        resume=False,
    )
    start = time.perf_counter()
    run_dir = train_reward_model(cfg)
    train_s = time.perf_counter() - start
    model = load_reward_model(run_dir)
    # The same token ids as the TRL side: rlhfkit re-tokenized train.jsonl; check it matches the harness.
    check = model.encode(*zip(*[(r["prompt"], r["chosen"]) for r in _rows(spec["train_file"])[:50]], strict=True))
    if check != [r["chosen_ids"] for r in _rows(spec["train_ids"])[:50]]:
        raise SystemExit("rlhfkit tokenized train.jsonl differently from the harness")
    reward_module._select_trainable(model, cfg)  # the configured split, to count what trained
    trainable = _trainable(model)
    losses = [
        r["train/loss"]
        for r in map(json.loads, (run_dir / "metrics.jsonl").read_text().splitlines())
        if "train/loss" in r
    ]
    return {
        **recorder.summary(),
        "version": _version("rlhfkit"),
        "settings": (
            f"freeze_layers={spec['freeze_layers']} (embeddings + bottom layers frozen, "
            f"top {30 - spec['freeze_layers']} of 30 layers + final norm + head train), "
            + ("the harness's batch order" if spec.get("file_order") else f"group_by_length={spec['group_by_length']}")
            + f", dtype={spec.get('dtype', 'fp32')}, "
            f"pooling={spec.get('pooling', 'last')}, layout={spec.get('layout', 'packed')}"
        ),
        "trainable_params": trainable,
        "train_loss_last": losses[-1],
        "train_call_s": train_s,
        "accuracy": pair_accuracy(
            lambda ids, mask: model(ids, mask)[:, 0], _rows(spec["eval_ids"]), model.tokenizer.pad_token_id
        ),
    }


def bt_check_batch(spec: dict[str, Any]) -> dict[str, Any]:
    """rlhfkit's objective on 8 training pairs with margins, with a seeded fresh head (rlhfkit venv)."""
    import torch

    from rlhfkit.models.reward import build_reward_model
    from rlhfkit.train.reward.data import RewardData, RewardExample, collate
    from rlhfkit.train.reward.objective import LossParams, ObjectiveSpec, objective

    model = build_reward_model(spec["model_dir"], max_length=spec["max_length"], seed=spec["seed"])
    rows = _rows(spec["train_ids"])[:8]
    margins = [0.5 * (i % 3) for i in range(len(rows))]  # 0, 0.5, 1: exercise the margin path
    seqs = [s for r in rows for s in (r["chosen_ids"], r["rejected_ids"])]
    exs = [RewardExample("pairs", i, (2 * i, 2 * i + 1), margin=m) for i, m in enumerate(margins)]
    batch = collate(RewardData(seqs, [0] * len(seqs), exs), list(range(len(exs))), model.tokenizer.pad_token_id)
    with torch.no_grad():
        rewards = model(batch.input_ids, batch.attention_mask).float()
        loss, _ = objective(rewards, batch, torch.ones(len(exs), 1), LossParams(1), ObjectiveSpec())
    return {
        "rows": [{**r, "margin": m} for r, m in zip(rows, margins, strict=True)],
        "loss": float(loss),
        "head_weight": model.head.weight.detach()[0].tolist(),
        "head_bias": model.head.bias.detach()[0].item(),
    }


# ---- TRL side ----------------------------------------------------------------------------------


def _trl_model_and_tokenizer(spec: dict[str, Any]) -> tuple[Any, Any]:
    import torch
    from transformers import AutoModelForSequenceClassification, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    tokenizer.pad_token = TRL_PAD
    # The new `score` head is drawn from torch's global generator, which a fresh process seeds at
    # random, and RewardTrainer seeds only after the model exists. Seed it here, so a seed's TRL run
    # is reproducible like rlhfkit's (unseeded, seed 0 scored 0.5702 and 0.5950 on the same batches).
    torch.manual_seed(spec["seed"])
    model = AutoModelForSequenceClassification.from_pretrained(spec["model_dir"], num_labels=1, dtype=torch.float32)
    model.config.pad_token_id = tokenizer.pad_token_id
    return model, tokenizer


def _trl_args(spec: dict[str, Any], out: str, steps: int) -> Any:
    from trl import RewardConfig

    return RewardConfig(
        output_dir=out,
        use_cpu=True,
        bf16=spec.get("dtype") == "bf16",
        fp16=False,  # --dtype: both sides alike
        gradient_checkpointing=False,  # TRL defaults to True; recomputing activations is slower
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=1,
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,
        adam_epsilon=1e-8,  # rlhfkit's AdamW betas
        max_grad_norm=1.0,
        max_steps=steps,
        max_length=None,  # ids are already cut to max_length
        train_sampling_strategy="group_by_length" if spec["group_by_length"] else "random",
        remove_unused_columns=False,  # keep "length" for the sampler; the collator reads only its keys
        dataloader_num_workers=0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec["seed"],
    )


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's RewardTrainer on CPU, timed by a callback at the end of every optimizer step."""
    from datasets import Dataset
    from transformers import TrainerCallback
    from trl import RewardTrainer

    recorder = StepRecorder()
    holder: dict[str, Any] = {}

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            seen = holder["trainer"]._total_train_tokens  # attention-mask tokens, counted by TRL
            recorder.step(seen - sum(recorder.tokens))

    model, tokenizer = _trl_model_and_tokenizer(spec)
    freeze = spec["trl_freeze_layers"]
    if freeze:  # the same freezing as rlhfkit's freeze_layers, applied by hand (TRL has no option)
        model.model.embed_tokens.requires_grad_(False)
        for layer in model.model.layers[:freeze]:
            layer.requires_grad_(False)
    # "length" feeds TRL's group_by_length sampler, which cannot infer lengths of preference rows.
    dataset = Dataset.from_list(
        [
            {
                "chosen_ids": r["chosen_ids"],
                "rejected_ids": r["rejected_ids"],
                "length": len(r["chosen_ids"]) + len(r["rejected_ids"]),
            }
            for r in _rows(spec["train_ids"])
        ]
    )
    args = _trl_args(spec, str(Path(spec["work_dir"]) / "trl-run"), spec["steps"])
    trainer = RewardTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[StepTimer()]
    )
    if spec.get("file_order"):  # train_ids.jsonl starts with the harness's batches (the same as rlhfkit's)
        read_trl_in_file_order(trainer)
    holder["trainer"] = trainer
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    import trl

    trained = trainer.model.eval()
    return {
        **recorder.summary(),
        "version": trl.__version__,
        "settings": (
            f"full fine-tune{f' with bottom {freeze} layers + embeddings frozen by hand' if freeze else ''}, "
            f"use_cpu=True, bf16={args.bf16}, gradient_checkpointing=False, "
            + (
                "the harness's batch order (sequential sampler)"
                if spec.get("file_order")
                else f"train_sampling_strategy={args.train_sampling_strategy}"
            )
            + f", optim={args.optim}, "
            f"dataloader_num_workers=0, pad token {TRL_PAD}"
        ),
        "trainable_params": _trainable(trained),
        "train_loss_last": losses[-1],
        "train_call_s": train_s,
        "accuracy": pair_accuracy(
            lambda ids, mask: trained(input_ids=ids, attention_mask=mask).logits[:, 0],
            _rows(spec["eval_ids"]),
            tokenizer.pad_token_id,
        ),
    }


def run_trl_check(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's own compute_loss on rlhfkit's check batch, with rlhfkit's head copied into TRL's `score`."""
    import torch
    from datasets import Dataset
    from trl import RewardTrainer
    from trl.trainer.reward_trainer import DataCollatorForPreference

    check = read_json(Path(spec["work_dir"]) / "bt_check.json")
    model, tokenizer = _trl_model_and_tokenizer(spec)
    if check["head_bias"] != 0.0:
        raise SystemExit("TRL's score head has no bias; the check needs rlhfkit's bias at its initial 0")
    with torch.no_grad():
        model.score.weight.copy_(torch.tensor([check["head_weight"]]))
    rows = check["rows"]
    dataset = Dataset.from_list(rows)
    trainer = RewardTrainer(
        model=model,
        args=_trl_args(spec, str(Path(spec["work_dir"]) / "trl-check"), 1),
        train_dataset=dataset,
        processing_class=tokenizer,
    )
    batch = DataCollatorForPreference(pad_token_id=tokenizer.pad_token_id)(rows)
    trainer.model.eval()
    with torch.no_grad():
        trl_loss = float(trainer.compute_loss(trainer.model, batch))
    return {
        "trl_loss": trl_loss,
        "rlhfkit_loss": check["loss"],
        "abs_diff": abs(trl_loss - check["loss"]),
        "pairs": len(rows),
        "margins": [r["margin"] for r in rows],
    }


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "rlhfkit": run_rlhfkit,
    "trl": run_trl,
    "trl-check": run_trl_check,
}
"""Side name -> function(spec) -> result dict (each runs in its own process)."""


# ---- harness -----------------------------------------------------------------------------------


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=30, help="optimizer steps on each side")
    p.add_argument("--batch-size", type=int, default=8, help="pairs per step")
    p.add_argument("--max-length", type=int, default=128, help="prompt + response tokens (prompt cut from the left)")
    p.add_argument("--lr", type=float, default=1e-4, help="constant learning rate (TRL RewardConfig's default)")
    p.add_argument("--train-size", type=int, default=1300, help="training pairs")
    p.add_argument("--eval-size", type=int, default=363, help="held-out pairs (prompt-disjoint)")
    p.add_argument(
        "--freeze-layers",
        type=int,
        default=15,
        help="rlhfkit: freeze embeddings and this many bottom layers of 30 (-1: all, cached features); "
        "15, configs/reward_hh.yaml's setting, trains the top half",
    )
    p.add_argument(
        "--trl-freeze-layers",
        type=int,
        default=0,
        help="TRL: freeze the same way by hand (0 = TRL's own full fine-tune)",
    )
    p.add_argument(
        "--order",
        choices=("shared", "own"),
        default="shared",
        help="shared: the harness draws every step's pairs and both sides train on those batches; "
        "own: each side's sampler draws its own",
    )
    p.add_argument(
        "--group-by-length",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="batches of similar lengths (the shared order's, or each side's sampler's)",
    )
    p.add_argument(
        "--pooling",
        choices=("last", "mean"),
        default="last",
        help="rlhfkit: the head reads the last token (as TRL) or the mean of all tokens",
    )
    p.add_argument(
        "--layout",
        choices=("packed", "rows"),
        default="packed",
        help="rlhfkit: a pair's shared prompt encoded once (packed, its default) or one row per response",
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--dtype",
        choices=("fp32", "bf16"),
        default="fp32",
        help="compute dtype of both sides (weights stay fp32; bf16 is autocast on each side)",
    )
    p.add_argument("--trl-venv", type=Path, default=VENVS_DIR / "trl-latest")
    p.add_argument("--sides", default="rlhfkit,trl,trl-check", help="comma list: which sides to run, in order")
    p.add_argument("--data", type=Path, default=HH_DEV)
    p.add_argument("--work-dir", type=Path, default=None, help="default: a fresh temp dir")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "reward.md")
    p.add_argument("--no-lock", action="store_true", help="smoke runs only: skip the bench lock (numbers not valid)")
    p.add_argument("--side", nargs=3, metavar=("SIDE", "SPEC", "OUT"), help=argparse.SUPPRESS)
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be >= 2 (the first step is excluded from the steady state)")
    return args


def prepare_data(args: argparse.Namespace, model_dir: Path, work: Path) -> dict[str, Any]:
    """Split HH pairs by prompt, tokenize once with rlhfkit, write records (rlhfkit) and ids (TRL)."""
    from rlhfkit.data.chat import encode_pair
    from rlhfkit.data.loaders import load_records, split_records, write_jsonl
    from rlhfkit.models.loading import load_tokenizer

    loaded = load_records(args.data, "pairs", skip_invalid=True)
    records = loaded.records
    train, held = split_records(records, args.eval_size / len(records), args.seed)
    train, held = train[: args.train_size], held[: args.eval_size]
    tokenizer = load_tokenizer(model_dir)

    def ids(rec: Any) -> dict[str, Any]:
        c = encode_pair(tokenizer, rec.prompt, rec.chosen, max_length=args.max_length)
        r = encode_pair(tokenizer, rec.prompt, rec.rejected, max_length=args.max_length)
        return {"chosen_ids": c.input_ids, "rejected_ids": r.input_ids, "cut": c.prompt_truncated + r.prompt_truncated}

    train_ids, eval_ids = [ids(r) for r in train], [ids(r) for r in held]
    if args.order == "shared":  # the drawn batches first, in order, then the pairs no step reads
        order = shared_order(
            [len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in train_ids],
            args.steps,
            args.batch_size,
            args.seed,
            args.group_by_length,
        )
        drawn = set(order)
        order += [i for i in range(len(train)) if i not in drawn]
        train, train_ids = [train[i] for i in order], [train_ids[i] for i in order]
    write_jsonl(work / "train.jsonl", train)
    write_jsonl(work / "train_ids.jsonl", train_ids)
    write_jsonl(work / "eval_ids.jsonl", eval_ids)
    return {
        "rows": loaded.rows,
        "skipped": len(loaded.skipped),
        "train": len(train),
        "eval": len(held),
        "train_seqs_cut": sum(r["cut"] for r in train_ids),
        "mean_tokens": sum(len(r["chosen_ids"]) + len(r["rejected_ids"]) for r in train_ids) / (2 * len(train)),
    }


def run_side(side: str, python: Path, spec_path: Path, work: Path) -> tuple[dict[str, Any], ChildRun]:
    out, log = work / f"{side}.json", work / f"{side}.log"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    print(f"[{time.strftime('%H:%M:%S')}] {side}: running (log {log})", file=sys.stderr, flush=True)
    cmd = [str(python), str(Path(__file__).resolve()), "--side", side, str(spec_path), str(out)]
    run = run_measured(cmd, log_path=log, env=env)
    if run.returncode != 0 or not out.exists():
        raise SystemExit(f"{side} failed with exit status {run.returncode}:\n{log_tail(log)}")
    result = read_json(out)
    shown = {k: result[k] for k in ("steps_per_s", "accuracy", "abs_diff") if k in result}
    print(
        f"[{time.strftime('%H:%M:%S')}] {side}: {shown}, peak {run.peak_rss_mb:.0f} MiB, wall {run.wall_s:.0f} s",
        file=sys.stderr,
        flush=True,
    )
    return result, run


def render(
    args: argparse.Namespace,
    argv: list[str],
    data: dict[str, Any],
    results: dict[str, dict[str, Any]],
    runs: dict[str, ChildRun],
) -> str:
    for side in ("rlhfkit", "trl"):
        results[side]["peak_rss_mb"] = runs[side].peak_rss_mb
    ours, theirs, check = results["rlhfkit"], results["trl"], results["trl-check"]
    table = comparison_table(METRICS, ours, theirs, names=("rlhfkit", f"TRL {theirs['version']}"))
    drawn = "drawn by each side's own sampler"
    if args.order == "shared":
        same = ours["step_tokens"] == theirs["step_tokens"]
        drawn = (
            "the same batches in the same order on both sides: every step's non-padding token count "
            f"{'matches' if same else 'DIFFERS'} between the sides"
        )
    lines = [
        "# Reward model: rlhfkit vs TRL RewardTrainer\n",
        f"Command: `.venv/bin/python bench/reward_vs_trl.py {shlex.join(argv)}`".rstrip() + "  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"torch {ours['torch']} ({ours['threads']} threads).\n",
        table,
        f"Bradley-Terry loss on the same batch ({check['pairs']} pairs, margins {check['margins']}), same "
        f"weights: rlhfkit objective {check['rlhfkit_loss']:.8f}, TRL `RewardTrainer.compute_loss` "
        f"{check['trl_loss']:.8f}, |difference| = {check['abs_diff']:.2e} "
        f"(target <= 1e-5: {'met' if check['abs_diff'] <= 1e-5 else 'NOT met'}).\n",
        f"Model: SmolLM2-135M-Instruct (fp32 weights), both sides from rlhfkit's cached safetensors directory. "
        f"Data: HH-RLHF harmless dev ({data['rows']} rows, {data['skipped']} skipped as empty), split by prompt "
        f"into {data['train']} training and {data['eval']} held-out pairs; tokenized once by the harness "
        f"(max length {args.max_length}, {data['train_seqs_cut']} training sequences had their prompt cut from "
        f"the left; mean {data['mean_tokens']:.0f} tokens per sequence). {args.steps} steps x batch "
        f"{args.batch_size} pairs on each side ({args.steps * args.batch_size} pairs seen, {drawn}), "
        f"lr {args.lr} constant, AdamW betas (0.9, 0.95), clip 1.0, no normalization step.\n",
        f"- rlhfkit {ours['version']}: {ours['settings']}; {ours['tokens_trained']:,} tokens trained "
        f"({ours.get('tokens_encoded', ours['tokens_trained']):,} encoded by the trunk); "
        f"last train loss {ours['train_loss_last']:.4f}.",
        f"- TRL {theirs['version']}: {theirs['settings']}; {theirs['tokens_trained']:,} tokens trained; "
        f"last train loss {theirs['train_loss_last']:.4f}.",
    ]
    for side in ("rlhfkit", "trl"):
        run = runs[side]
        lines.append(
            f"- {side} process: load average before {run.loadavg_before}, other processes used "
            f"{run.other_cpu_cores:.2f} cores on average while it ran, child wall {run.wall_s:.0f} s."
        )
    warning = busy_warning({k: runs[k] for k in ("rlhfkit", "trl")}, os.cpu_count() or 1)
    lines.append(
        "\n"
        + (
            f"**{warning}** Both sides' absolute speeds are then pessimistic; compare the ratio."
            if warning
            else "No other significant work was running on the machine during the runs."
        )
    )
    return "\n".join(lines) + "\n"


def side_main(side: str, spec_path: str, out_path: str) -> None:
    import torch

    spec = read_json(Path(spec_path))
    if side == "rlhfkit":  # the BT check batch comes from rlhfkit's venv, before the measured training
        write_json(Path(spec["work_dir"]) / "bt_check.json", bt_check_batch(spec))
    result = SIDES[side](spec)
    write_json(Path(out_path), {"side": side, "torch": torch.__version__, "threads": torch.get_num_threads(), **result})


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    if args.side:
        side_main(*args.side)
        return
    from rlhfkit.models.loading import ensure_bundled

    model_dir = ensure_bundled("smollm2")
    trl_python = args.trl_venv / "bin" / "python"
    if not trl_python.exists() and any(side.startswith("trl") for side in args.sides.split(",")):
        raise SystemExit(f"{trl_python} is missing: run bench/setup_trl.sh first")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rlhfkit-bench-reward-"))
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, model_dir, work)
    spec = {
        "model_dir": str(model_dir),
        "train_file": str(work / "train.jsonl"),
        "train_ids": str(work / "train_ids.jsonl"),
        "eval_ids": str(work / "eval_ids.jsonl"),
        "work_dir": str(work),
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": args.lr,
        "steps": args.steps,
        "seed": args.seed,
        "dtype": args.dtype,
        "freeze_layers": args.freeze_layers,
        "trl_freeze_layers": args.trl_freeze_layers,
        "group_by_length": args.group_by_length,
        "pooling": args.pooling,
        "layout": args.layout,
        "file_order": args.order == "shared",
    }
    write_json(work / "spec.json", spec)
    pythons = {"rlhfkit": Path(sys.executable), "trl": trl_python, "trl-check": trl_python}
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, ChildRun] = {}
    with contextlib.nullcontext() if args.no_lock else bench_lock():
        for side in args.sides.split(","):
            results[side], runs[side] = run_side(side, pythons[side], work / "spec.json", work)
    runs_json = {k: v.as_dict() for k, v in runs.items()}
    write_json(work / "summary.json", {"data": data, "results": results, "runs": runs_json})
    if not {"rlhfkit", "trl", "trl-check"} <= set(results):
        print(json.dumps(results, indent=1))
        return
    text = render(args, argv, data, results, runs)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}; raw numbers in {work / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
