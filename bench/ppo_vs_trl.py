"""PPO: rlhfkit vs TRL 1.12's PPOTrainer on the bundled SmolLM2-135M, sentiment prompts, CPU.

    .venv/bin/python bench/ppo_vs_trl.py rm           # the shared reward model (rlhfkit reward training)
    .venv/bin/python bench/ppo_vs_trl.py throughput   # samples/s and peak memory, both sides
    .venv/bin/python bench/ppo_vs_trl.py effect       # rlhfkit against VADER sentiment: reward and KL curve
    .venv/bin/python bench/ppo_vs_trl.py report       # bench/results/ppo.md from the above

Each job stays under about ten minutes and holds the machine's bench lock while it measures; results
go to WORK/<job>.json (default WORK: /tmp/rlhfkit-ppo-bench), `report` renders them.

Both sides get the same policy directory (rlhfkit's cached safetensors of SmolLM2-135M-Instruct), the
same prompts (rlhfkit/data/fixtures/sentiment_prompts.jsonl, chat template applied), the same reward
model (trained by the `rm` job; TRL reads it as a sequence classifier whose score layer holds the same
head with the normalization folded in), the same rollout batch, minibatch, response length (stopping at
EOS), temperature, PPO epochs and learning rate. TRL runs its PPOTrainer as documented: full
fine-tuning, a reference copy, a value model initialized from the reward model; bf16 and gradient
checkpointing are off (`--trl-bf16` turns bf16 on, for CPUs where bf16 matmul is the faster). rlhfkit runs its defaults: a LoRA policy whose
reference is the same base with adapters off, and a value head on the policy's trunk.
"""

from __future__ import annotations

import argparse
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

SIDES = Path(__file__).resolve().parent / "ppo_sides.py"
ROOT = Path(__file__).resolve().parents[1]
PROMPTS = ROOT / "src" / "rlhfkit" / "data" / "fixtures" / "sentiment_prompts.jsonl"
PYTHONS = {"rlhfkit": ROOT / ".venv" / "bin" / "python", "trl": VENVS_DIR / "trl-1.12" / "bin" / "python"}

METRICS = [
    Metric("samples_per_s", "samples/s (steady, after step 1)", "{:.3f}", higher_is_better=True, target=3.0),
    Metric("samples_per_cpu_s", "samples per CPU-second (steady)", "{:.3f}", higher_is_better=True, target=None),
    Metric("train_max_rss_mb", "peak RSS during training (MiB)", "{:,.0f}", higher_is_better=False, target=0.4),
    Metric("max_rss_mb", "peak RSS of the whole process (MiB)", "{:,.0f}", higher_is_better=False, target=None),
]


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=["rm", "throughput", "effect", "report"])
    p.add_argument("--work", type=Path, default=Path(os.environ.get("PPO_BENCH_WORK", "/tmp/rlhfkit-ppo-bench")))
    p.add_argument("--steps", type=int, default=None, help="PPO steps (default: 4 throughput, 40 effect)")
    p.add_argument("--rollout", type=int, default=16, help="prompts per PPO step")
    p.add_argument("--minibatch", type=int, default=8, help="samples per optimizer step")
    p.add_argument(
        "--micro", type=int, default=4, help="rlhfkit: samples per forward/backward (minibatch / grad_accum)"
    )
    p.add_argument("--response-length", type=int, default=48)
    p.add_argument("--ppo-epochs", type=int, default=4)
    p.add_argument("--sides", default="rlhfkit,trl", help="throughput: which sides to run")
    p.add_argument("--threads", type=int, default=0, help="torch threads per side (0: torch's default)")
    p.add_argument(
        "--trl-bf16",
        action="store_true",
        help="TRL computes in bf16 (autocast): faster on CPUs whose bf16 matmul beats fp32",
    )
    p.add_argument("--override", action="append", default=[], help="extra rlhfkit key=value (repeatable)")
    return p.parse_args(argv)


def model_dir() -> str:
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.models.loading import ensure_bundled

    return str(ensure_bundled("smollm2"))


def spec_for(args: argparse.Namespace, job: str, steps: int) -> dict[str, Any]:
    return {
        "model_dir": model_dir(),
        "rm_dir": str(args.work / "rm"),
        "prompts_file": str(PROMPTS),
        "out_dir": str(args.work / job),
        "steps": steps,
        "rollout_batch_size": args.rollout,
        "minibatch": args.minibatch,
        "micro": args.micro,
        "response_length": args.response_length,
        "ppo_epochs": args.ppo_epochs,
        "temperature": 0.7,
        "lr": 1e-5 if job != "effect" else 3e-5,
        "seed": 0,
        "rlhfkit_overrides": args.override,
        "threads": args.threads,
        "trl_bf16": args.trl_bf16,
    }


def run_side(args: argparse.Namespace, side: str, job: str, spec: dict[str, Any]) -> tuple[dict[str, Any], ChildRun]:
    args.work.mkdir(parents=True, exist_ok=True)
    spec_path, out_path, log_path = (args.work / f"{job}-{side}.{ext}" for ext in ("spec.json", "json", "log"))
    write_json(spec_path, spec)
    python = PYTHONS["trl" if side == "trl" else "rlhfkit"]
    env = {**os.environ, "PYTHONPATH": str(SIDES.parent), "TOKENIZERS_PARALLELISM": "false"}
    run = run_measured(
        [str(python), str(SIDES), side if job != "effect" else "effect", str(spec_path), str(out_path)],
        log_path=log_path,
        env=env,
    )
    if run.returncode != 0:
        raise SystemExit(f"{side} {job} failed ({run.returncode}):\n{log_tail(log_path)}")
    return read_json(out_path), run


def job_rm(args: argparse.Namespace) -> None:
    if (args.work / "rm" / "reward.json").exists():
        print(f"reward model already in {args.work / 'rm'}")
        return
    result, run = run_side(args, "rm", "rm", spec_for(args, "rm", 0))
    write_json(args.work / "rm.json", {**result, "run": run.as_dict()})


def job_throughput(args: argparse.Namespace) -> None:
    if not (args.work / "rm" / "reward.json").exists():
        raise SystemExit("run the rm job first")
    steps = args.steps or 4
    out: dict[str, Any] = {"cpu": cpu_name(), "steps": steps}
    with bench_lock():
        for side in args.sides.split(","):
            result, run = run_side(args, side, "throughput", spec_for(args, "throughput", steps))
            result.pop("metrics", None)
            out[side] = {**result, "max_rss_mb": run.max_rss_mb, "run": run.as_dict()}
            print(
                side,
                {
                    k: result[k]
                    for k in ("samples_per_s", "samples_per_cpu_s", "train_max_rss_mb", "step_s", "step_cpu_s")
                },
                flush=True,
            )
    write_json(args.work / "throughput.json", out)


def job_effect(args: argparse.Namespace) -> None:
    steps = args.steps or 40
    with bench_lock():
        result, run = run_side(args, "rlhfkit", "effect", spec_for(args, "effect", steps))
    write_json(args.work / "effect.json", {**result, "run": run.as_dict()})


def _curve_table(rows: list[dict[str, Any]], every: int) -> str:
    keys = [
        ("ppo/score", ".3f"),
        ("ppo/kl", ".2f"),
        ("ppo/beta", ".4f"),
        ("ppo/entropy", ".2f"),
        ("ppo/response_len", ".1f"),
        ("ppo/clip_frac", ".3f"),
    ]
    body = []
    for start in range(0, len(rows), every):
        chunk = rows[start : start + every]
        body.append(
            [f"{chunk[0]['step']}-{chunk[-1]['step']}"]
            + [format(sum(r[k] for r in chunk) / len(chunk), f) for k, f in keys]
        )
    return markdown_table(["steps", *[k for k, _ in keys]], body)


def job_report(args: argparse.Namespace) -> None:
    lines = ["# PPO: rlhfkit vs TRL 1.12 PPOTrainer", "", __doc__.split("\n\n", 2)[2].strip(), ""]
    tp_path = args.work / "throughput.json"
    if tp_path.exists():
        tp = read_json(tp_path)
        ours, theirs = tp["rlhfkit"], tp["trl"]
        lines += [
            f"## Throughput and memory ({tp['steps']} PPO steps each, {tp['cpu']})",
            "",
            comparison_table(METRICS, ours, theirs),
            "",
            f"Step times (s), rlhfkit: {ours['step_s']}; TRL: {theirs['step_s']}.",
            "",
            f"TRL settings: {theirs['settings']} (trl {theirs['version']}).",
            "",
        ]
        warning = busy_warning(
            {"rlhfkit": ChildRun(**ours["run"]), "TRL": ChildRun(**theirs["run"])}, os.cpu_count() or 1
        )
        if warning:
            lines += [f"> {warning}", ""]
    ef_path = args.work / "effect.json"
    if ef_path.exists():
        ef = read_json(ef_path)
        rows = [r for r in ef["metrics"] if "ppo/score" in r]
        target = _config_value(args.work / "effect" / "config.yaml", "kl_target")
        lines += [
            "## Effect: VADER positive sentiment as the reward (rlhfkit, LoRA, adaptive KL)",
            "",
            f"{len(rows)} PPO steps of {ef['metrics'][0].get('perf/samples_per_s', 0) and args.rollout} prompts; "
            f"KL target {target} nats per response. Means over groups of steps:",
            "",
            _curve_table(rows, max(1, len(rows) // 8)),
            "",
        ]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "ppo.md").write_text("\n".join(lines))
    print(RESULTS_DIR / "ppo.md")


def _config_value(path: Path, key: str) -> Any:
    import yaml

    return (yaml.safe_load(path.read_text()) or {}).get(key) if path.exists() else None


JOBS = {"rm": job_rm, "throughput": job_throughput, "effect": job_effect, "report": job_report}


if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    JOBS[ns.job](ns)
