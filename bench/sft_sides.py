"""The two sides of bench/sft_vs_trl.py; each runs in its own process, under its own venv.

    python bench/sft_sides.py SIDE SPEC.json RESULT.json        (SIDE: rlhfkit | trl)

SPEC (written by sft_vs_trl.py) names the model directory, the training JSONL (TRL's conversational
prompt/completion format, which rlhfkit also loads), the pre-tokenized eval rows and the shared
hyper-parameters. Each side trains, records when every optimizer step ended and how many
non-padding tokens it trained, scores the eval rows with `common.mean_completion_nll`, and writes
RESULT. Only this file's side-specific imports differ: the TRL venv has no rlhfkit, and rlhfkit's
venv needs no trl.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import (
    mean_completion_nll,
    read_json,
    read_rlhfkit_in_file_order,
    read_trl_in_file_order,
    steady_rate,
    write_json,
)


class StepRecorder:
    """When each optimizer step ended and the non-padding tokens it trained."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.tokens: list[int] = []
        self.rss_mb_at_last_step = 0.0

    def step(self, tokens: int) -> None:
        self.times.append(time.perf_counter())
        self.tokens.append(int(tokens))
        self.rss_mb_at_last_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self) -> dict[str, Any]:
        return {
            "tokens_per_s": steady_rate(self.times, self.tokens, skip=1),
            "step_s": [round(b - a, 4) for a, b in pairwise(self.times)],
            "step_tokens": self.tokens,
            "tokens_trained": sum(self.tokens),
            # ru_maxrss when the last step ended: the training peak, before saving and evaluation.
            "train_max_rss_mb": self.rss_mb_at_last_step,
        }


def _eval_rows(spec: dict[str, Any]) -> list[dict[str, list[int]]]:
    return [json.loads(line) for line in Path(spec["eval_tokens"]).read_text().splitlines() if line]


def _params(model: Any) -> int:
    return sum(p.numel() for p in model.parameters())


def run_rlhfkit(spec: dict[str, Any]) -> dict[str, Any]:
    """rlhfkit.train.sft.sft, timed through its run's Throughput counter (one add() per optimizer step)."""
    import torch
    from transformers import AutoModelForCausalLM

    from rlhfkit.models.dtype import resolve_dtype
    from rlhfkit.train import run as run_module
    from rlhfkit.train import sft as sft_module
    from rlhfkit.train.sft import SFTConfig, sft

    recorder = StepRecorder()

    class RecordingThroughput(run_module.Throughput):
        def add(self, n: float) -> None:
            super().add(n)
            recorder.step(int(n))

    run_module.Throughput = RecordingThroughput  # measurement hook only; the loop is unchanged
    if spec.get("file_order"):  # train.jsonl is in the harness's batch order (the same as TRL's)
        read_rlhfkit_in_file_order(sft_module)
    cfg = SFTConfig(
        output=Path(spec["work_dir"]) / "rlhfkit-run",
        model=spec["model_dir"],
        data=spec["train_file"],
        eval_fraction=0.0,  # the eval set is scored below, identically for both sides
        max_length=spec["max_length"],
        batch_size=spec["batch_size"],
        grad_accum=spec["grad_accum"],
        lr=spec["lr"],
        warmup_steps=0,
        schedule="constant",
        max_grad_norm=1.0,
        max_steps=spec["steps"],
        dtype=spec["rlhfkit_dtype"],
        seed=spec["seed"],
        group_by_length=spec["rlhfkit_group_by_length"],
        weights=spec.get("rlhfkit_weights", "auto"),
        compile=spec.get("rlhfkit_compile", False),
        save_every=0,
        log_every=1,
        progress=False,
        resume=False,
    )
    start = time.perf_counter()
    run_dir = sft(cfg)
    train_s = time.perf_counter() - start
    model = AutoModelForCausalLM.from_pretrained(run_dir, dtype=torch.float32)
    losses = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    dtype = resolve_dtype(spec["rlhfkit_dtype"], "cpu")
    return {
        **recorder.summary(),
        "version": _version("rlhfkit"),
        "dtype": "bf16" if dtype == torch.bfloat16 else "fp32",
        "settings": f"dtype={spec['rlhfkit_dtype']}, weights={cfg.weights}, compile={cfg.compile}, "
        + (
            "the harness's batch order"
            if spec.get("file_order")
            else f"group_by_length={spec['rlhfkit_group_by_length']}"
        ),
        "params": _params(model),
        "train_loss_last": [r["train/loss"] for r in losses if "train/loss" in r][-1],
        "train_call_s": train_s,
        "eval_loss": mean_completion_nll(model, _eval_rows(spec)),
    }


def run_trl(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's SFTTrainer on CPU, timed by a callback at the end of every optimizer step."""
    import torch
    from datasets import load_dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import SFTConfig, SFTTrainer

    recorder = StepRecorder()
    holder: dict[str, Any] = {}

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            # TRL counts attention-mask tokens (padding-free: the packed row's length) per micro-batch.
            seen = holder["trainer"]._total_train_tokens
            recorder.step(seen - sum(recorder.tokens))

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    model.config.attention_dropout = 0.0  # as rlhfkit's loader does (SmolLM2 ships 0.0 anyway)
    dataset = load_dataset("json", data_files=spec["train_file"], split="train")
    padding_free = spec["trl_padding_free"]
    args = SFTConfig(
        output_dir=str(Path(spec["work_dir"]) / "trl-run"),
        use_cpu=True,
        bf16=spec["trl_dtype"] == "bf16",
        fp16=False,
        gradient_checkpointing=False,  # TRL defaults to True; recomputing activations is slower
        per_device_train_batch_size=spec["batch_size"],
        gradient_accumulation_steps=spec["grad_accum"],
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,  # rlhfkit's AdamW betas
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        max_steps=spec["steps"],
        # Padding-free needs max_length=None without packing; the harness already dropped every
        # example longer than max_length, so nothing would have been truncated anyway.
        max_length=None if padding_free else spec["max_length"],
        padding_free=padding_free,
        completion_only_loss=True,
        train_sampling_strategy="group_by_length" if spec["trl_group_by_length"] else "random",
        dataloader_num_workers=0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        torch_compile=spec.get("trl_compile", False),
        seed=spec["seed"],
    )
    trainer = SFTTrainer(
        model=model, args=args, train_dataset=dataset, processing_class=tokenizer, callbacks=[StepTimer()]
    )
    holder["trainer"] = trainer
    if spec.get("file_order"):  # train.jsonl is in the harness's batch order (the same as rlhfkit's)
        read_trl_in_file_order(trainer)
    lengths = [len(ids) for ids in trainer.train_dataset["input_ids"]]
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    losses = [h["loss"] for h in trainer.state.log_history if "loss" in h]
    import trl

    return {
        **recorder.summary(),
        "version": trl.__version__,
        "dtype": spec["trl_dtype"],
        "settings": (
            f"use_cpu=True, bf16={args.bf16}, padding_free={padding_free}, "
            + (
                "the harness's batch order, "
                if spec.get("file_order")
                else f"train_sampling_strategy={args.train_sampling_strategy}, "
            )
            + "gradient_checkpointing=False, "
            f"optim={args.optim}, dataloader_num_workers=0, torch_compile={args.torch_compile}"
        ),
        "params": _params(trainer.model),
        "dataset_tokens": sum(lengths),
        "max_example_tokens": max(lengths),
        "train_loss_last": losses[-1],
        "train_call_s": train_s,
        "eval_loss": mean_completion_nll(trainer.model, _eval_rows(spec)),
    }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


SIDES: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {"rlhfkit": run_rlhfkit, "trl": run_trl}
"""Side name -> function(spec) -> result dict."""


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in SIDES:
        raise SystemExit(f"usage: sft_sides.py {{{'|'.join(SIDES)}}} SPEC.json RESULT.json")
    side, spec_path, out_path = argv
    import torch

    result = SIDES[side](read_json(Path(spec_path)))
    write_json(Path(out_path), {"side": side, "torch": torch.__version__, "threads": torch.get_num_threads(), **result})


if __name__ == "__main__":
    main(sys.argv[1:])
