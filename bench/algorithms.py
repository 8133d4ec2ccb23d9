"""The race: PPO, GRPO, RLOO, REINFORCE++ and DPO on the demo's task, same budget and seed, gold reward
against KL to the starting policy (the frontier of Gao et al. 2022, "Scaling Laws for Reward Model
Overoptimization").

    rlhfkit demo --output DEMO                                  # once: the demo's SFT policy, prompts and reward model
    .venv/bin/python bench/algorithms.py run --demo DEMO        # every method, one after another (bench lock held)
    .venv/bin/python bench/algorithms.py report                 # bench/results/algorithms.md and algorithms.svg

Every RL method starts from the demo's SFT policy (DEMO/sft), optimizes the demo's learned reward model
(DEMO/round-01/reward: the proxy, trained on the simulated panel's rankings) on the demo's training
prompts, and is scored by the demo's gold (VADER sentiment with the degeneracy penalty), which it never
sees. Each runs the loop's preset for its method (`rlhfkit.loop.config`: PPO_STAGE, GRPO_STAGE,
RLOO_STAGE; REINFORCE++ is GRPO_STAGE with ``advantage=reinforce_pp`` and the KL in the reward): 20
steps of 32 responses, 640 samples each, seed 0, LoRA on the top 8 blocks. DPO (DPO_STAGE, 20 steps of
8 pairs) learns offline from the panel's pairs that trained that reward model, sampling nothing. Two
views of the frontier:

- along training: every step's rollout, gold mean against the trainer's own KL estimate per response
  (k1 for PPO and RLOO and REINFORCE++, k3 for GRPO; both unbiased on the policy's own samples);
- at the end: the final policy on the demo's held-out prompts (2 samples each), gold mean and KL to the
  starting policy measured the same way for every method (`rlhfkit.loop.evaluate.evaluate_policy`),
  and its gold win rate against the starting policy.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    ChildRun,
    bench_lock,
    busy_warning,
    cpu_name,
    markdown_table,
    read_json,
    run_measured,
    write_json,
)

ROOT = Path(__file__).resolve().parents[1]
PYTHON = ROOT / ".venv" / "bin" / "python"
METHODS: dict[str, tuple[str, list[str]]] = {
    "PPO": ("ppo", []),
    "GRPO": ("grpo", []),
    "RLOO": ("rloo", []),
    "REINFORCE++": ("grpo", ["advantage=reinforce_pp", "kl_in=reward", "kl_estimator=k1"]),
    "DPO": ("dpo", []),
}
"""Method -> (command, key=value on top of the loop's preset for that command)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=["run", "report"])
    p.add_argument("--demo", type=Path, default=ROOT / "rlhfkit-demo", help="a finished `rlhfkit demo` directory")
    p.add_argument("--work", type=Path, default=Path(os.environ.get("RACE_WORK", "/tmp/rlhfkit-race")))
    p.add_argument("--methods", default=",".join(METHODS))
    p.add_argument("--eval-prompts", type=int, default=32, help="held-out prompts of the final evaluation")
    return p.parse_args(argv)


def preset(command: str) -> list[str]:
    """The loop's preset for `command` as key=value strings (the same settings the loop would run)."""
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.config import to_dict
    from rlhfkit.loop.config import DPO_STAGE, GRPO_STAGE, PPO_STAGE, RLOO_STAGE

    stage = {"ppo": PPO_STAGE, "grpo": GRPO_STAGE, "rloo": RLOO_STAGE, "dpo": DPO_STAGE}[command]
    flat: list[str] = []

    def walk(prefix: str, value: Any) -> None:
        if isinstance(value, dict):
            for k, v in value.items():
                walk(f"{prefix}{k}.", v)
        elif value is not None:
            flat.append(f"{prefix[:-1]}={json.dumps(value) if isinstance(value, list) else value}")

    walk("", {k: v for k, v in to_dict(stage).items() if k != "method"})
    flat += ["save_every=0", "resume=false", "progress=false"]
    if command == "dpo":  # no rollouts to log
        return flat
    rollout = getattr(stage, "rollout_batch_size", None) or getattr(stage, "rollout_size", 32)
    return [*flat, f"samples_per_log={rollout}"]


def inputs(command: str, demo: Path, work: Path) -> list[str]:
    """What a method learns from: the demo's reward model and training prompts (the RL methods), or
    the pairs the demo's panel labelled, which that reward model was trained on (DPO, offline; from a
    copy of the demo's database brought to this rlhfkit's schema, the demo's own left as it is)."""
    if command == "dpo":
        import shutil

        import yaml

        sys.path.insert(0, str(ROOT / "src"))
        from rlhfkit.feedback.db import Database

        project = yaml.safe_load((demo / "loop.yaml").read_text())["feedback"]["project"]
        shutil.copyfile(demo / "feedback.db", work / "feedback.db")
        db = Database(f"sqlite:///{work / 'feedback.db'}")
        db.migrate()
        db.dispose()
        return ["--model", str(demo / "sft"), "--data", f"sqlite:///{work / 'feedback.db'}#{project}", "kind=pairs"]
    return [
        "--policy", str(demo / "sft"),
        "--reward", str(demo / "round-01" / "reward"),
        "--prompts", str(demo / "prompts-train.jsonl"),
    ]  # fmt: skip


def job_run(args: argparse.Namespace) -> None:
    demo = args.demo.resolve()
    for needed in (demo / "sft", demo / "round-01" / "reward", demo / "prompts-train.jsonl"):
        if not needed.exists():
            raise SystemExit(f"{needed} is missing: run `rlhfkit demo --output {demo}` first")
    args.work.mkdir(parents=True, exist_ok=True)
    out: dict[str, Any] = read_json(args.work / "race.json") if (args.work / "race.json").exists() else {}
    out |= {"cpu": cpu_name(), "demo": str(demo)}
    with bench_lock():
        for method in args.methods.split(","):
            command, extra = METHODS[method]
            run_dir = args.work / method
            cmd = [
                str(PYTHON), "-m", "rlhfkit.cli", command, *inputs(command, demo, args.work),
                "--output", str(run_dir), *preset(command), *extra,
            ]  # fmt: skip
            run = run_measured(cmd, log_path=args.work / f"{method}.log", cwd=ROOT)
            if run.returncode != 0:
                raise SystemExit(f"{method} failed; see {args.work / f'{method}.log'}")
            out[method] = {"run": run.as_dict(), "final": evaluate(args, demo, run_dir, method)}
            print(method, f"{run.wall_s / 60:.1f} min", out[method]["final"], flush=True)
            write_json(args.work / "race.json", out)


def evaluate(args: argparse.Namespace, demo: Path, run_dir: Path, method: str) -> dict[str, Any]:
    """The final policy on held-out prompts: gold, KL to the start, gold win rate against the start."""
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.data.loaders import load_records
    from rlhfkit.eval.gold import resolve_gold
    from rlhfkit.loop.config import LOOP_SAMPLING
    from rlhfkit.loop.evaluate import evaluate_policy

    prompts = [r.prompt for r in load_records(str(demo / "prompts-eval.jsonl"), "prompts").records][: args.eval_prompts]
    common = {
        "initial_policy": str(demo / "sft"),
        "reward_dir": demo / "round-01" / "reward",
        "prompts": prompts,
        "gold": resolve_gold("sentiment"),
        "sampling": LOOP_SAMPLING,
        "n": 2,
        "seed": 0,
        "progress": False,
    }
    base = args.work / "start-eval"
    if not (base / "summary.json").exists():
        evaluate_policy(round_index=0, policy=str(demo / "sft"), out_dir=base, baseline_dir=None, **common)
    summary = evaluate_policy(
        round_index=1, policy=str(run_dir), out_dir=args.work / f"{method}-eval", baseline_dir=base, **common
    )
    start = read_json(base / "summary.json")
    return {
        **{k: summary[k] for k in ("gold", "proxy", "kl", "length", "distinct2", "win_rate")},
        "start_gold": start["gold"],
    }


def training_points(run_dir: Path) -> list[tuple[float, float]]:
    """(KL, gold mean of the rollout) per step, from the run's metrics and its logged rollouts."""
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.data.records import prompt_text
    from rlhfkit.eval.gold import resolve_gold

    gold = resolve_gold("sentiment")
    if not (run_dir / "samples.jsonl").exists():  # DPO samples nothing while it trains
        return []
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    kl = {r["step"]: r.get("ppo/kl", r.get("rl/kl")) for r in rows if "ppo/kl" in r or "rl/kl" in r}
    by_step: dict[int, list[float]] = {}
    for line in (run_dir / "samples.jsonl").read_text().splitlines():
        s = json.loads(line)
        by_step.setdefault(s["step"], []).append(float(gold(prompt_text(s["prompt"]), s["response"])))
    return [(float(kl[step]), sum(g) / len(g)) for step, g in sorted(by_step.items()) if step in kl]


def job_report(args: argparse.Namespace) -> None:
    race = read_json(args.work / "race.json")
    methods = [m for m in METHODS if m in race]
    body, curves = [], {}
    for m in methods:
        final, run = race[m]["final"], ChildRun(**race[m]["run"])
        gold_win = final["win_rate"].get("gold", {})
        win = gold_win.get("win_rate")
        ci = [gold_win.get("ci_low"), gold_win.get("ci_high")]
        body.append([
            m,
            f"{final['gold']:.3f}",
            f"{final['kl']:.2f}",
            "-" if win is None else f"{100 * win:.0f}%" + ("" if ci[0] is None else f" ({100 * ci[0]:.0f}-{100 * ci[1]:.0f}%)"),
            f"{final['proxy']:.2f}",
            f"{final['length']:.1f}",
            f"{run.wall_s / 60:.1f}",
        ])  # fmt: skip
        curves[m] = training_points(args.work / m)
    start_gold = race[methods[0]]["final"]["start_gold"] if methods else None
    lines = [
        "# The race: PPO, GRPO, RLOO, REINFORCE++ on the demo's task",
        "",
        __doc__.split("\n\n", 2)[2].strip(),
        "",
        f"Machine: {race['cpu']}. Starting policy's held-out gold: {start_gold:.3f}." if start_gold is not None else "",
        "",
        markdown_table(
            [
                "method",
                "held-out gold",
                "KL to start (nats)",
                "gold win rate vs start (95% CI)",
                "proxy",
                "tokens",
                "minutes",
            ],
            body,
        ),
        "",
        "![gold against KL](algorithms.svg)",
        "",
        "Along training (every 4th step: KL, gold of the step's rollout):",
        "",
        markdown_table(
            ["method", *[f"step {i + 1}" for i in range(0, 20, 4)]],
            [[m, *[f"{kl:.2f}, {g:.3f}" for kl, g in pts[::4]]] for m, pts in curves.items() if pts],
        ),
        "",
    ]
    runs = {m: ChildRun(**race[m]["run"]) for m in methods}
    warning = busy_warning(runs, os.cpu_count() or 1)
    if warning:
        lines += [f"> {warning}", ""]
    RESULTS_DIR.mkdir(parents=True, exist_ok=True)
    (RESULTS_DIR / "algorithms.md").write_text("\n".join(lines))
    plot(curves, {m: race[m]["final"] for m in methods}, RESULTS_DIR / "algorithms.svg")
    print(RESULTS_DIR / "algorithms.md")


def plot(curves: dict[str, list[tuple[float, float]]], finals: dict[str, dict[str, Any]], path: Path) -> None:
    import matplotlib

    matplotlib.use("svg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7, 4.5))
    for i, (m, pts) in enumerate(curves.items()):
        color = f"C{i}"
        ax.plot(  # nothing for DPO: no rollouts while it trains
            [k for k, _ in pts], [g for _, g in pts], "-o", ms=3, lw=1, color=color, alpha=0.6, label=f"{m} (training)"
        )
        ax.plot([finals[m]["kl"]], [finals[m]["gold"]], "*", ms=14, color=color, label=f"{m} (held-out, end)")
    ax.set_xlabel("KL to the starting policy (nats per response)")
    ax.set_ylabel("gold (VADER sentiment - degeneracy)")
    ax.set_title("Gold reward against KL, 640 samples per method")
    ax.grid(alpha=0.3)
    ax.legend(fontsize=7, ncol=2)
    fig.tight_layout()
    fig.savefig(path)


JOBS = {"run": job_run, "report": job_report}

if __name__ == "__main__":
    ns = parse_args(sys.argv[1:])
    JOBS[ns.job](ns)
