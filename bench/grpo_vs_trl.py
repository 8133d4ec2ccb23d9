"""GRPO and RLOO: rlhfkit vs TRL's GRPOTrainer / RLOOTrainer on the bundled SmolLM2-135M, CPU; and
what GRPO does on the shipped arithmetic task.

    .venv/bin/python bench/grpo_vs_trl.py throughput   # samples/s and peak memory, GRPO and RLOO, both sides
    .venv/bin/python bench/grpo_vs_trl.py arithmetic   # rlhfkit GRPO, configs/grpo_arithmetic.yaml: held-out accuracy
    .venv/bin/python bench/grpo_vs_trl.py sentiment    # rlhfkit GRPO against VADER sentiment, beta > 0: reward and KL
    .venv/bin/python bench/grpo_vs_trl.py report       # bench/results/grpo.md from the above

Each job holds the machine's bench lock while it measures; results go to WORK/<job>.json (default
WORK: /tmp/rlhfkit-grpo-bench), `report` renders them.

Throughput: both sides get the same policy directory (rlhfkit's cached safetensors of
SmolLM2-135M-Instruct), the same prompts (the shipped arithmetic problems, conversational rows, chat
template applied), the same reward function (the arithmetic verifier), group size, prompts per step,
response length, temperature, beta (0: neither side loads a reference), token-mean loss over the step
(TRL's ``loss_type="dapo"``), one optimizer step per generation batch, and learning rate. TRL runs with
LoRA r=16 on all linear layers through ``peft_config`` (on this CPU faster than its full fine-tuning,
whose AdamW state is 4x the model) in fp32; rlhfkit runs its defaults: LoRA r=16 on the top 8 blocks,
the frozen bottom blocks run once per rollout.
"""

from __future__ import annotations

import argparse
import math
import os
import sys
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
    markdown_table,
    read_json,
    run_measured,
    write_json,
)

SIDES = Path(__file__).resolve().parent / "grpo_sides.py"
ROOT = Path(__file__).resolve().parents[1]
FIXTURES = ROOT / "src" / "rlhfkit" / "data" / "fixtures"
PYTHONS = {"rlhfkit": ROOT / ".venv" / "bin" / "python", "trl": VENVS_DIR / "trl-latest" / "bin" / "python"}

METRICS = [
    Metric("samples_per_s", "samples/s (steady, after step 1)", "{:.3f}", higher_is_better=True, target=2.0),
    Metric("samples_per_cpu_s", "samples per CPU-second (steady)", "{:.3f}", higher_is_better=True, target=None),
    Metric("train_max_rss_mb", "peak RSS during training (MiB)", "{:,.0f}", higher_is_better=False, target=1.0),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=["throughput", "arithmetic", "sentiment", "report"])
    p.add_argument("--work", type=Path, default=Path(os.environ.get("GRPO_BENCH_WORK", "/tmp/rlhfkit-grpo-bench")))
    p.add_argument("--steps", type=int, default=None, help="steps (default: 4 throughput, 40 arithmetic, 30 sentiment)")
    p.add_argument("--methods", default="grpo,rloo", help="throughput: which trainers")
    p.add_argument("--sides", default="rlhfkit,trl", help="throughput: which sides")
    p.add_argument("--threads", type=int, default=0, help="torch threads per side (0: torch's default)")
    p.add_argument("--override", action="append", default=[], help="extra rlhfkit key=value (repeatable)")
    return p.parse_args(argv)


def model_dir() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.models.loading import ensure_bundled

    return str(ensure_bundled("smollm2"))


def run_side(args: argparse.Namespace, side: str, name: str, spec: dict[str, Any]) -> tuple[dict[str, Any], ChildRun]:
    args.work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path, log_path = (args.work / f"{name}-{side}.{ext}" for ext in ("spec.json", "json", "log"))
    write_json(spec_path, spec)
    env = {**os.environ, "PYTHONPATH": f"{SIDES.parent}:{ROOT / 'src'}", "TOKENIZERS_PARALLELISM": "false"}
    run = run_measured(
        [str(PYTHONS[side]), str(SIDES), side, str(spec_path), str(out_path)], log_path=log_path, env=env
    )
    if run.returncode != 0:
        raise SystemExit(f"{side} {name} failed ({run.returncode}):\n{log_tail(log_path)}")
    return read_json(out_path), run


def job_throughput(args: argparse.Namespace) -> None:
    steps = args.steps or 4
    out: dict[str, Any] = {"cpu": cpu_name(), "steps": steps}
    with bench_lock():
        for method in args.methods.split(","):
            for side in args.sides.split(","):
                spec = {
                    "method": method,
                    "model_dir": model_dir(),
                    "prompts_file": str(FIXTURES / "arithmetic_train.jsonl"),
                    "out_dir": str(args.work / f"{method}-{side}"),
                    "steps": steps,
                    "prompts_per_step": 4,
                    "group_size": 8,
                    "micro": 8,
                    "response_length": 32,
                    "temperature": 1.0,
                    "beta": 0.0,
                    "lr": 1e-5,
                    "seed": 0,
                    "threads": args.threads,
                    "rlhfkit_overrides": args.override,
                }
                result, run = run_side(args, side, f"throughput-{method}", spec)
                result.pop("metrics", None)
                out[f"{method}-{side}"] = {**result, "max_rss_mb": run.max_rss_mb, "run": run.as_dict()}
                print(method, side, {k: result[k] for k in ("samples_per_s", "train_max_rss_mb", "step_s")}, flush=True)
    write_json(args.work / "throughput.json", out)


def _rlhfkit_cli(args: argparse.Namespace, name: str, cli: list[str]) -> dict[str, Any]:
    """`rlhfkit grpo ...` as a measured child process; returns its metrics rows and how it ran."""
    out = args.work / name
    log_path = args.work / f"{name}.log"
    args.work.mkdir(parents=True, exist_ok=True)
    cmd = [
        str(PYTHONS["rlhfkit"]),
        "-m",
        "rlhfkit.cli",
        "grpo",
        *cli,
        "--output",
        str(out),
        "progress=false",
        *args.override,
    ]
    with bench_lock():
        run = run_measured(cmd, log_path=log_path, env={**os.environ, "TOKENIZERS_PARALLELISM": "false"}, cwd=ROOT)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed ({run.returncode}):\n{log_tail(log_path)}")
    import json

    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return {"cpu": cpu_name(), "metrics": rows, "run": run.as_dict()}


def job_arithmetic(args: argparse.Namespace) -> None:
    steps = args.steps or 40
    result = _rlhfkit_cli(
        args, "arithmetic", ["--config", "configs/grpo_arithmetic.yaml", f"max_steps={steps}", "resume=false"]
    )
    write_json(args.work / "arithmetic.json", result)


def job_sentiment(args: argparse.Namespace) -> None:
    steps = args.steps or 30
    cli = [
        "--reward",
        "python:rlhfkit.rollout.rewards:vader_sentiment",
        "--prompts",
        str(FIXTURES / "sentiment_prompts.jsonl"),
        f"max_steps={steps}",
        "beta=0.05",
        "lr=2e-4",
        "sampling.max_new_tokens=32",
        "sampling.temperature=1.0",
        "sampling.batch_size=32",
        "save_every=0",
        "resume=false",
    ]
    write_json(args.work / "sentiment.json", _rlhfkit_cli(args, "sentiment", cli))


def wilson(successes: float, n: int, z: float = 1.96) -> tuple[float, float]:
    """95% Wilson score interval of a proportion (Wilson 1927): sound at 0 or n successes, unlike the normal one."""
    from scipy.stats import binomtest

    ci = binomtest(round(successes), n).proportion_ci(confidence_level=0.95, method="wilson")
    return ci.low, ci.high


def _accuracy_lines(rows: list[dict[str, Any]]) -> list[str]:
    evals = [r for r in rows if "eval/reward" in r]
    if len(evals) < 2:
        return ["(no held-out evaluation)"]
    body = []
    for r in evals:
        n = int(r["eval/n"])
        lo, hi = wilson(r["eval/reward"] * n, n)
        body.append([str(r["step"]), f"{100 * r['eval/reward']:.1f}%", f"{100 * lo:.1f}-{100 * hi:.1f}%", str(n)])
    first, last = evals[0]["eval/reward"], evals[-1]["eval/reward"]
    return [
        markdown_table(["step", "held-out accuracy (greedy)", "95% CI (Wilson)", "problems"], body),
        "",
        f"Change: {100 * (last - first):+.1f} points (target: +10).",
    ]


def _curve(rows: list[dict[str, Any]], keys: list[tuple[str, str]], groups: int = 6) -> str:
    rows = [r for r in rows if "rl/reward" in r]
    every = max(1, math.ceil(len(rows) / groups))
    body = []
    for start in range(0, len(rows), every):
        chunk = rows[start : start + every]
        cells = [format(sum(r.get(k, 0.0) for r in chunk) / len(chunk), f) for k, f in keys]
        body.append([f"{chunk[0]['step']}-{chunk[-1]['step']}", *cells])
    return markdown_table(["steps", *[k for k, _ in keys]], body)


def job_report(args: argparse.Namespace) -> None:
    lines = ["# GRPO and RLOO: rlhfkit vs TRL", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    tp_path = args.work / "throughput.json"
    if tp_path.exists():
        tp = read_json(tp_path)
        for method in ("grpo", "rloo"):
            ours, theirs = tp.get(f"{method}-rlhfkit"), tp.get(f"{method}-trl")
            if not ours or not theirs:
                continue
            lines += [
                f"## {method.upper()} throughput and memory ({tp['steps']} steps of 4 prompts x 8 responses, {tp['cpu']})",
                "",
                comparison_table(METRICS, ours, theirs),
                "",
                f"Step times (s), rlhfkit: {ours['step_s']}; TRL: {theirs['step_s']}. TRL: {theirs['settings']} "
                f"(trl {theirs['version']}).",
                "",
            ]
            warning = busy_warning(
                {"rlhfkit": ChildRun(**ours["run"]), "TRL": ChildRun(**theirs["run"])}, os.cpu_count() or 1
            )
            if warning:
                lines += [f"> {warning}", ""]
    for name, title in (("arithmetic", "Arithmetic: held-out accuracy"), ("sentiment", "Sentiment: reward and KL")):
        path = args.work / f"{name}.json"
        if not path.exists():
            continue
        result = read_json(path)
        run = ChildRun(**result["run"]) if "run" in result else None  # None: a run stopped by hand
        rows = result["metrics"]
        how = f"{run.wall_s / 60:.1f} min" if run else result.get("note", "")
        lines += [f"## {title} (rlhfkit GRPO, {result['cpu']}, {how})", ""]
        if name == "arithmetic":
            lines += [*_accuracy_lines(rows), ""]
        keys = [("rl/reward", ".3f"), ("rl/kl", ".3f"), ("rl/zero_std_frac", ".2f"), ("rl/response_len", ".1f")]
        lines += ["Training curve (means over groups of steps):", "", _curve(rows, keys), ""]
        warning = busy_warning({name: run}, os.cpu_count() or 1) if run else None
        if warning:
            lines += [f"> {warning}", ""]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "grpo.md").write_text("\n".join(lines))
    print(RESULTS_DIR / "grpo.md")


JOBS = {"throughput": job_throughput, "arithmetic": job_arithmetic, "sentiment": job_sentiment, "report": job_report}


if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    JOBS[ns.job](ns)
