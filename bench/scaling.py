"""Data-parallel scaling on CPU: SFT of the bundled model on 2 processes x 1 thread against 1 x 1.

    .venv/bin/python bench/scaling.py                 # 12 steps of 8 examples each side
    .venv/bin/python bench/scaling.py --steps 20 --model tiny

Both sides train the same global batch (1 process: batch_size 4 x grad_accum 2; 2 processes, started
by torchrun: batch_size 4 each), in fp32, one thread per process. samples/s is the mean of the logged
``perf/examples_per_s`` (summed over processes) after the first `--skip` steps. The target is 1.6x.
Writes bench/results/scaling.md.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
import tempfile
from pathlib import Path

from common import ChildRun, bench_lock, busy_warning, cpu_name, log_tail, markdown_table, run_measured

ROOT = Path(__file__).resolve().parents[1]
RESULT = ROOT / "bench" / "results" / "scaling.md"
TARGET = 1.6


def side_cmd(processes: int, args: argparse.Namespace, out: Path) -> list[str]:
    demos = ROOT / "src" / "rlhfkit" / "data" / "fixtures" / "demos_small.jsonl"
    head = [sys.executable, "-m", "rlhfkit.cli"]
    if processes > 1:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        head += ["-m", "rlhfkit.cli"]
    grad_accum = args.global_batch // (args.batch_size * processes)
    return [
        *head,
        "sft",
        "--model",
        args.model,
        "--data",
        str(demos),
        "--output",
        str(out),
        f"max_steps={args.steps}",
        f"batch_size={args.batch_size}",
        f"grad_accum={grad_accum}",
        "dtype=fp32",
        "eval_fraction=0",
        "save_every=0",
        "progress=false",
        "resume=false",
    ]


def samples_per_s(run_dir: Path, skip: int) -> float:
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    rates = [r["perf/examples_per_s"] for r in rows if "perf/examples_per_s" in r and r["step"] > skip]
    if not rates:
        raise SystemExit(f"{run_dir}: no steps after the first {skip} were logged")
    return sum(rates) / len(rates)


def measure(processes: int, args: argparse.Namespace, work: Path) -> tuple[float, ChildRun]:
    out = work / f"p{processes}"
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONPATH": str(ROOT / "src")}
    run = run_measured(side_cmd(processes, args, out), log_path=work / f"p{processes}.log", env=env)
    if run.returncode != 0:
        raise SystemExit(f"{processes} process(es) failed:\n{log_tail(work / f'p{processes}.log')}")
    return samples_per_s(out, args.skip), run


def report(args: argparse.Namespace, one: float, two: float, runs: dict[str, ChildRun]) -> str:
    rows = [
        [name, f"{rate:.2f}", f"{run.wall_s:.0f}", f"{run.cpu_s:.0f}", f"{run.other_cpu_cores:.2f}"]
        for (name, run), rate in zip(runs.items(), (one, two), strict=True)
    ]
    table = markdown_table(["side", "samples/s", "wall s", "CPU s", "other cores busy"], rows)
    speedup = two / one
    verdict = "met" if speedup >= TARGET else "NOT met"
    lines = [
        "# Data-parallel scaling on CPU (bench/scaling.py)",
        "",
        f"SFT of `{args.model}`, {args.steps} steps of {args.global_batch} examples (fp32, one thread per process),",
        f"samples/s averaged over the steps after the first {args.skip}; machine: {cpu_name()}, {os.cpu_count()} cores.",
        "",
        table,
        f"**2 processes / 1 process: {speedup:.2f}x** (target {TARGET}x: {verdict}).",
        "",
        busy_warning(runs, os.cpu_count() or 1) or "No other work used more than a quarter core during the runs.",
        "",
    ]
    return "\n".join(lines)


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--model", default="smollm2")
    p.add_argument("--steps", type=int, default=12)
    p.add_argument("--skip", type=int, default=2, help="steps left out of the rate (warm-up)")
    p.add_argument("--batch-size", type=int, default=4, help="examples per micro-batch")
    p.add_argument("--global-batch", type=int, default=8, help="examples per optimizer step, both sides")
    p.add_argument("--output", type=Path, default=RESULT, help="where to write the Markdown result")
    args = p.parse_args()
    with tempfile.TemporaryDirectory() as tmp, bench_lock():
        work = Path(tmp)
        one, run_one = measure(1, args, work)
        two, run_two = measure(2, args, work)
    text = report(args, one, two, {"1 process x 1 thread": run_one, "2 processes x 1 thread": run_two})
    args.output.write_text(text)
    print(text)


if __name__ == "__main__":
    main()
