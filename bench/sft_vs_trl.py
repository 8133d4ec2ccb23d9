"""SFT throughput, memory and eval loss: rlhfkit vs TRL's SFTTrainer, on the bundled SmolLM2-135M.

    .venv/bin/python bench/sft_vs_trl.py                    # 6 steps x batch 4 x accum 2, max length 256
    .venv/bin/python bench/sft_vs_trl.py --steps 10 --trl-dtype bf16 --out /tmp/sft.md

Both sides get the same model directory (rlhfkit's cached safetensors of SmolLM2-135M-Instruct),
the same demonstrations (chosen side of HH-RLHF harmless dev, as a conversational prompt/completion
JSONL), the same batch, accumulation, max length, constant learning rate, AdamW betas, clipping and
number of steps, and completion-only loss. Exactly steps * batch * accum training examples are
written, so both sides train on the same examples once each. With ``--order shared`` (the default) the
harness writes them in batch order and both sides read them as they stand, so every optimizer step
holds the same examples on both sides and the eval losses are a paired comparison of the trainers;
``--order own`` lets each side's sampler order them. Examples longer
than max length are dropped first, so neither side's truncation rule (rlhfkit cuts the prompt's
left, TRL keeps the start) changes what is trained.

Each side runs in its own process (TRL in bench/.venvs/trl-latest, see setup_trl.sh) under the
machine's bench lock, and reports tokens/s (non-padding tokens, steady state after the first
step), its eval loss on the same pre-tokenized held-out rows (scored by the same function), and
the harness measures its peak RSS. The Markdown table goes to bench/results/sft.md.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import tempfile
import time
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
    matmul_peak_gflops,
    mfu,
    read_json,
    run_measured,
    shared_order,
    write_json,
)

HH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "dev.jsonl"
SIDES_SCRIPT = Path(__file__).resolve().parent / "sft_sides.py"

METRICS = [
    Metric("tokens_per_s", "tokens/s (non-padding, steady state)", "{:,.0f}", True, 1.5),
    Metric("mfu_pct", "MFU % (6·N·tokens/s ÷ matmul peak of its dtype)", "{:.1f}", True),
    Metric("peak_rss_mb", "peak RSS, process tree (MiB)", "{:,.0f}", False, 1.0),
    Metric("train_max_rss_mb", "peak RSS at end of training (MiB, ru_maxrss)", "{:,.0f}", False),
    Metric("eval_loss", "eval loss (mean NLL of completion tokens)", "{:.4f}", False, 1.0),
    Metric("train_call_s", "training call, wall s (load, tokenize, train, save)", "{:.1f}", False),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--steps", type=int, default=6, help="optimizer steps on each side")
    p.add_argument("--batch-size", type=int, default=4)
    p.add_argument("--grad-accum", type=int, default=2)
    p.add_argument("--max-length", type=int, default=256, help="examples longer than this are dropped")
    p.add_argument("--lr", type=float, default=2e-5, help="constant learning rate, no warm-up")
    p.add_argument("--eval-size", type=int, default=32, help="held-out examples scored at the end")
    p.add_argument("--seed", type=int, default=0, help="seed of the train/held-out split (and of training)")
    p.add_argument(
        "--train-seed",
        type=int,
        default=None,
        help="seed of each side's training order only (default: --seed); the split stays --seed's",
    )
    p.add_argument(
        "--order",
        choices=("shared", "own"),
        default="shared",
        help="shared: the harness orders the examples into batches and both sides read that order; "
        "own: each side's sampler orders them (--*-group-by-length)",
    )
    p.add_argument("--rlhfkit-dtype", default="auto", choices=["auto", "fp32", "bf16"])
    p.add_argument("--rlhfkit-group-by-length", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument(
        "--rlhfkit-weights",
        default="auto",
        choices=["auto", "master", "fp32"],
        help="rlhfkit's `weights`: bf16 weights + fp32 masters ('master'), or fp32 + autocast",
    )
    p.add_argument("--rlhfkit-compile", action="store_true", help="rlhfkit's `compile=true` (per decoder layer)")
    p.add_argument("--trl-compile", action="store_true", help="TrainingArguments.torch_compile=True")
    p.add_argument(
        "--trl-dtype",
        default="fp32",
        choices=["fp32", "bf16"],
        help="fp32 is TRL's faster choice on this CPU (see bench/README.md)",
    )
    p.add_argument(
        "--trl-padding-free",
        action=argparse.BooleanOptionalAction,
        default=True,
        help="TRL was faster padding-free on this CPU (see bench/README.md)",
    )
    p.add_argument("--trl-group-by-length", action=argparse.BooleanOptionalAction, default=True)
    p.add_argument("--trl-venv", type=Path, default=VENVS_DIR / "trl-latest")
    p.add_argument("--sides", default="rlhfkit,trl", help="comma list: which sides to run, in order")
    p.add_argument("--data", type=Path, default=HH_DEV)
    p.add_argument("--work-dir", type=Path, default=None, help="default: a fresh temp dir")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "sft.md")
    args = p.parse_args(argv)
    if args.steps < 2:
        p.error("--steps must be >= 2 (the first step is excluded from the steady state)")
    return args


def prepare_data(args: argparse.Namespace, model_dir: Path, work: Path) -> dict[str, Any]:
    """Write train.jsonl (conversational prompt/completion) and eval_tokens.jsonl; return counts."""
    from rlhfkit.data.chat import as_messages, encode_pair
    from rlhfkit.data.loaders import load_records, split_records, write_jsonl
    from rlhfkit.models.loading import load_tokenizer

    loaded = load_records(args.data, "demos", skip_invalid=True)
    tokenizer = load_tokenizer(model_dir)
    length = {
        id(r): len(encode_pair(tokenizer, r.prompt, r.response, max_length=10**9).input_ids) for r in loaded.records
    }
    # +1: TRL's rendering ends the assistant turn with "<|im_end|>\n", one token more than rlhfkit's EOS.
    fits = [r for r in loaded.records if length[id(r)] + 1 <= args.max_length]
    train, held = split_records(fits, args.eval_size / len(fits), args.seed)
    need = args.steps * args.batch_size * args.grad_accum
    if len(train) < need:
        raise SystemExit(f"only {len(train)} training examples fit in {args.max_length} tokens; {need} needed")
    train = train[:need]
    if args.order == "shared":  # one order for both sides, written into train.jsonl (micro-batches grouped by length)
        seed = args.seed if args.train_seed is None else args.train_seed
        order = shared_order([length[id(r)] for r in train], args.steps * args.grad_accum, args.batch_size, seed, True)
        train = [train[i] for i in order]
    rows = [
        {"prompt": as_messages(r.prompt), "completion": [{"role": "assistant", "content": r.response}]} for r in train
    ]
    write_jsonl(work / "train.jsonl", rows)
    check = load_records(work / "train.jsonl", "demos").records
    if [(c.prompt, c.response) for c in check] != [(r.prompt, r.response) for r in train]:
        raise SystemExit("train.jsonl does not load back into the same demonstrations")
    eval_rows = []
    for r in held:
        e = encode_pair(tokenizer, r.prompt, r.response, max_length=args.max_length)
        eval_rows.append({"input_ids": e.input_ids, "labels": e.labels})
    (work / "eval_tokens.jsonl").write_text("".join(json.dumps(x) + "\n" for x in eval_rows))
    return {
        "rows": len(loaded.records),
        "skipped": len(loaded.skipped),
        "fit": len(fits),
        "train": len(train),
        "eval": len(held),
        "eval_completion_tokens": sum(sum(t != -100 for t in x["labels"][1:]) for x in eval_rows),
    }


def initial_eval_loss(model_dir: Path, work: Path) -> float:
    import torch
    from transformers import AutoModelForCausalLM
    from transformers.utils import logging as hf_logging

    from common import mean_completion_nll

    hf_logging.disable_progress_bar()

    model = AutoModelForCausalLM.from_pretrained(model_dir, dtype=torch.float32)
    rows = [json.loads(line) for line in (work / "eval_tokens.jsonl").read_text().splitlines()]
    return mean_completion_nll(model, rows)


def run_side(side: str, python: Path, spec_path: Path, work: Path) -> tuple[dict[str, Any], ChildRun]:
    out, log = work / f"{side}.json", work / f"{side}.log"
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    print(f"[{time.strftime('%H:%M:%S')}] {side}: running (log {log})", file=sys.stderr, flush=True)
    run = run_measured([str(python), str(SIDES_SCRIPT), side, str(spec_path), str(out)], log_path=log, env=env)
    if run.returncode != 0 or not out.exists():
        raise SystemExit(f"{side} failed with exit status {run.returncode}:\n{log_tail(log)}")
    result = read_json(out)
    print(
        f"[{time.strftime('%H:%M:%S')}] {side}: {result['tokens_per_s']:.0f} tokens/s, "
        f"peak {run.peak_rss_mb:.0f} MiB, eval loss {result['eval_loss']:.4f}",
        file=sys.stderr,
        flush=True,
    )
    return result, run


def render(
    args: argparse.Namespace,
    argv: list[str],
    data: dict[str, Any],
    peaks: dict[str, float],
    results: dict[str, dict[str, Any]],
    runs: dict[str, ChildRun],
    loss0: float,
) -> str:
    for side, res in results.items():
        res["peak_rss_mb"] = runs[side].peak_rss_mb
        res["mfu_pct"] = 100 * mfu(res["params"], res["tokens_per_s"], peaks[res["dtype"]])
    ours, theirs = results["rlhfkit"], results["trl"]
    per_step = args.batch_size * args.grad_accum
    order = "each seen once, in each side's own order"
    if args.order == "shared":
        # TRL's rendering has one more token per example (the newline after <|im_end|>).
        same = [t - o for o, t in zip(ours["step_tokens"], theirs["step_tokens"], strict=True)] == [
            per_step
        ] * args.steps
        order = (
            "each seen once, in the same batches and order on both sides: every step's token count "
            f"{'matches' if same else 'DIFFERS'} between the sides, up to TRL's extra token per example"
        )
    table = comparison_table(METRICS, ours, theirs, names=("rlhfkit", f"TRL {theirs['version']}"))
    import torch

    lines = [
        "# SFT: rlhfkit vs TRL SFTTrainer\n",
        f"Command: `.venv/bin/python bench/sft_vs_trl.py {shlex.join(argv)}`".rstrip() + "  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {cpu_name()}, {os.cpu_count()} cores, "
        f"torch {torch.__version__} ({ours['threads']} threads).\n",
        table,
        f"Model: SmolLM2-135M-Instruct ({ours['params']:,} parameters, fp32 weights), both sides from "
        f"rlhfkit's cached safetensors directory. Data: chosen side of HH-RLHF harmless dev "
        f"({data['rows']} rows, {data['skipped']} skipped as empty); {data['fit']} fit in {args.max_length} "
        f"tokens; {data['train']} train examples (= {args.steps} steps x batch {args.batch_size} x accum "
        f"{args.grad_accum}, {order}), {data['eval']} held-out ({data['eval_completion_tokens']} "
        f"completion tokens). lr {args.lr} constant, AdamW betas (0.9, 0.95), clip 1.0, completion-only loss.\n",
        f"Eval loss before training: {loss0:.4f} (same rows, same function).\n",
        f"Matmul peak measured here (best square matmul): fp32 {peaks['fp32']:.0f} GFLOP/s, "
        f"bf16 {peaks['bf16']:.0f} GFLOP/s; each side's MFU uses the peak of the dtype it computed in.\n",
        f"- rlhfkit {ours['version']}: dtype {ours['dtype']} ({ours['settings']}); "
        f"{ours['tokens_trained']:,} tokens trained.",
        f"- TRL {theirs['version']}: dtype {theirs['dtype']} ({theirs['settings']}); "
        f"{theirs['tokens_trained']:,} tokens trained (TRL's rendering ends each example with one more "
        f"token, a newline after <|im_end|>); longest example {theirs['max_example_tokens']} tokens.",
    ]
    for side, run in runs.items():
        lines.append(
            f"- {side} process: load average before {run.loadavg_before}, other processes used "
            f"{run.other_cpu_cores:.2f} cores on average while it ran, child wall {run.wall_s:.0f} s."
        )
    warning = busy_warning(runs, os.cpu_count() or 1)
    lines.append(
        "\n"
        + (
            f"**{warning}** Throughput numbers from those runs are pessimistic."
            if warning
            else "No other significant work was running on the machine during the runs."
        )
    )
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    from rlhfkit.models.loading import ensure_bundled

    model_dir = ensure_bundled("smollm2")
    trl_python = args.trl_venv / "bin" / "python"
    if not trl_python.exists():
        raise SystemExit(f"{trl_python} is missing: run bench/setup_trl.sh first")
    work = args.work_dir or Path(tempfile.mkdtemp(prefix="rlhfkit-bench-sft-"))
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, model_dir, work)
    spec = {
        "model_dir": str(model_dir),
        "train_file": str(work / "train.jsonl"),
        "eval_tokens": str(work / "eval_tokens.jsonl"),
        "work_dir": str(work),
        "batch_size": args.batch_size,
        "grad_accum": args.grad_accum,
        "max_length": args.max_length,
        "lr": args.lr,
        "steps": args.steps,
        "seed": args.seed if args.train_seed is None else args.train_seed,
        "rlhfkit_dtype": args.rlhfkit_dtype,
        "rlhfkit_group_by_length": args.rlhfkit_group_by_length,
        "rlhfkit_weights": args.rlhfkit_weights,
        "rlhfkit_compile": args.rlhfkit_compile,
        "trl_dtype": args.trl_dtype,
        "trl_padding_free": args.trl_padding_free,
        "trl_compile": args.trl_compile,
        "trl_group_by_length": args.trl_group_by_length,
        "file_order": args.order == "shared",
    }
    write_json(work / "spec.json", spec)
    pythons = {"rlhfkit": Path(sys.executable), "trl": trl_python}
    results: dict[str, dict[str, Any]] = {}
    runs: dict[str, ChildRun] = {}
    with bench_lock():
        peaks = {"fp32": matmul_peak_gflops("fp32"), "bf16": matmul_peak_gflops("bf16")}
        for side in args.sides.split(","):
            results[side], runs[side] = run_side(side, pythons[side], work / "spec.json", work)
    loss0 = initial_eval_loss(model_dir, work)
    write_json(
        work / "summary.json",
        {
            "peaks": peaks,
            "data": data,
            "results": results,
            "runs": {k: v.as_dict() for k, v in runs.items()},
            "eval_loss_0": loss0,
        },
    )
    if set(results) != {"rlhfkit", "trl"}:
        print(json.dumps(results, indent=1))
        return
    text = render(args, argv, data, peaks, results, runs, loss0)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)
    print(f"written to {args.out}; raw numbers in {work / 'summary.json'}", file=sys.stderr)


if __name__ == "__main__":
    main(sys.argv[1:])
