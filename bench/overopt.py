"""Reward over-optimization on purpose, and whether the detector sees it in time (Gao et al. 2022).

    .venv/bin/python bench/overopt.py                           # runs configs/loop_overopt.yaml
    .venv/bin/python bench/overopt.py --run-dir runs/overopt    # only summarizes an existing run

Runs `rlhfkit loop` with ``configs/loop_overopt.yaml`` (beta = 0, an aggressive PPO run, a reward
model from 8 noisy rankings) and reads the round's ``eval.json``: per PPO step the KL to the round's
start, the proxy (reward model) score, the gold score of the same samples and the ensemble's
disagreement. The question is issue 7's target: does the detector (`rlhfkit.eval.hacking`) warn
before gold has fallen 10% below its peak? Gold is read as the same trailing mean the detector uses,
because single steps of 8 samples are noisy. The table goes to bench/results/overopt.md.
"""

from __future__ import annotations

import argparse
import json
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import numpy as np
import yaml

from common import RESULTS_DIR, cpu_name, markdown_table

ROOT = Path(__file__).resolve().parents[1]
CONFIG = ROOT / "configs" / "loop_overopt.yaml"


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--run-dir", type=Path, default=None, help="summarize this finished loop run instead of running one")
    p.add_argument("--output", type=Path, default=Path("/tmp/rlhfkit-overopt"), help="run directory of a new run")
    p.add_argument("--override", action="append", default=[], help="extra loop key=value (repeatable)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "overopt.md")
    p.add_argument(
        "--window",
        type=int,
        default=None,
        help="detector window (default: the run's eval.window); another value re-runs the detector "
        "on the run's points, which do not depend on it",
    )
    return p.parse_args(argv)


def trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last `window` values at each index (fewer at the start)."""
    return np.array([x[max(0, i - window + 1) : i + 1].mean() for i in range(len(x))])


def summarize(evaluation: dict[str, Any], window: int) -> dict[str, Any]:
    """Peak of the smoothed gold, where it first falls 10% below the peak (after it), and the first
    proxy-up/gold-down and proxy-up/agreement-down warnings."""
    points = evaluation["hacking"]["points"]
    gold = trailing_mean(np.array([p["gold"] for p in points], dtype=float), window)
    steps = [p["step"] for p in points]
    peak = int(np.argmax(gold))
    floor = gold[peak] - 0.1 * abs(gold[peak])  # 0.9 * peak for a positive peak; sentiment may be negative
    fell = next((steps[i] for i in range(peak + 1, len(gold)) if gold[i] < floor), None)
    warnings = evaluation["hacking"]["warnings"]
    first = {
        kind: next((w for w in warnings if w["kind"] == kind), None)
        for kind in ("proxy_up_gold_down", "proxy_up_agreement_down")
    }
    return {
        "gold_smoothed": gold.tolist(),
        "peak_step": steps[peak],
        "peak_gold": float(gold[peak]),
        "floor": float(floor),
        "fell_step": fell,
        "first_warning": first,
    }


def curve_rows(points: list[dict[str, Any]], gold_smoothed: list[float], warned: set[int]) -> list[list[str]]:
    return [
        [
            str(p["step"]),
            f"{p['kl']:.2f}",
            f"{p['proxy']:.3f}",
            f"{p['gold']:.3f}",
            f"{g:.3f}",
            "" if p.get("ensemble_std") is None else f"{p['ensemble_std']:.3f}",
            f"{p['distinct2']:.2f}",
            "warning" if p["step"] in warned else "",
        ]
        for p, g in zip(points, gold_smoothed, strict=True)
    ]


def gold_noise(points: list[dict[str, Any]]) -> float:
    """Step-to-step noise of the per-step gold means: std of successive differences / sqrt(2). The trend
    between neighbouring steps is small next to it, so this estimates one step's standard error."""
    gold = np.array([p["gold"] for p in points], dtype=float)
    return float(np.std(np.diff(gold), ddof=1) / np.sqrt(2.0))


def redetect(evaluation: dict[str, Any], config: dict[str, Any], window: int) -> dict[str, Any]:
    """eval.json with its over-optimization warnings recomputed at another detector window."""
    from rlhfkit.eval.hacking import EvalPoint, detect_overoptimization

    points = [EvalPoint(**p) for p in evaluation["hacking"]["points"]]
    warnings = detect_overoptimization(
        points,
        window=window,
        tolerance=float(config["eval"]["tolerance"]),
        std_tolerance=float(config["eval"]["std_tolerance"]),
    )
    kept = [
        w
        for w in evaluation["hacking"]["warnings"]
        if w["kind"] not in ("proxy_up_gold_down", "proxy_up_agreement_down")
    ]
    hacking = evaluation["hacking"] | {
        "warnings": sorted(kept + [w.to_dict() for w in warnings], key=lambda w: w["step"])
    }
    return evaluation | {"hacking": hacking}


def report(run_dir: Path, command: str, wall_s: float | None, window: int | None = None) -> str:
    evaluation = json.loads((run_dir / "eval.json").read_text())
    config = yaml.safe_load((run_dir / "loop.yaml").read_text())
    run_window = int(config["eval"]["window"])
    if window is not None and window != run_window:
        evaluation = redetect(evaluation, config, window)
    window = window or run_window
    s = summarize(evaluation, window)
    noise = gold_noise(evaluation["hacking"]["points"])
    gold_warning = s["first_warning"]["proxy_up_gold_down"]
    agree_warning = s["first_warning"]["proxy_up_agreement_down"]
    warned = {w["step"] for w in evaluation["hacking"]["warnings"]}
    gold_steps = [w["step"] for w in evaluation["hacking"]["warnings"] if w["kind"] == "proxy_up_gold_down"]
    early = [w for w in gold_steps if w < s["peak_step"]]  # while gold was still to rise: false alarms
    timely = [w for w in gold_steps if s["peak_step"] <= w and (s["fell_step"] is None or w < s["fell_step"])]
    if s["fell_step"] is None:
        verdict = "gold never fell 10% below its peak in this run: the target's condition did not occur"
    elif timely:
        verdict = (
            f"met: a warning at step {timely[0]}, after gold peaked (step {s['peak_step']}) and before it fell "
            f"10% below the peak (step {s['fell_step']})"
        )
    else:
        verdict = (
            f"NOT met: no warning between gold's peak (step {s['peak_step']}) and its 10% fall (step {s['fell_step']})"
        )
    lines = [
        "# Reward over-optimization: proxy against gold, and the detector",
        "",
        f"Command: `{command}`  ",
        f"Date: {time.strftime('%Y-%m-%d %H:%M')}; machine: {cpu_name()}"
        + (f"; wall time {wall_s / 60:.1f} min" if wall_s else ""),
        "",
        f"Config: the run's `loop.yaml` (beta = {config['policy']['init_kl_coef']}, "
        f"{config['policy']['max_steps']} PPO steps at lr {config['policy']['lr']}, a reward model from "
        f"{config['candidates']['prompts_per_round']} rankings with {config['feedback']['overlap']} judgment each). "
        f"Gold: `{config['gold']}`; smoothed = trailing mean over {window} steps (the detector's window"
        + ("" if window == run_window else f"; the run used {run_window}, and its points were re-scored at {window}")
        + ").",
        "",
        f"- noise: one step's gold mean varies by about {noise:.3f} (std of successive differences / sqrt(2)), so "
        f"the smoothed gold by about {noise / np.sqrt(window):.3f}; 10% of the peak is {0.1 * abs(s['peak_gold']):.3f}",
        f"- gold (smoothed) peaked at step {s['peak_step']} at {s['peak_gold']:.3f}; 10% below it is {s['floor']:.3f}; "
        f"first step below it after the peak: {s['fell_step']}",
        "- first proxy-up / gold-down warning: "
        + (f"step {gold_warning['step']}: {gold_warning['message']}" if gold_warning else "none"),
        "- first proxy-up / ensemble-disagreement warning (needs no gold): "
        + (f"step {agree_warning['step']}: {agree_warning['message']}" if agree_warning else "none"),
        f"- proxy-up / gold-down warnings before gold's peak (false alarms on noise): {len(early)} {early}",
        f"- **target (detector fires before gold falls 10% below its peak): {verdict}**",
        "",
        markdown_table(
            ["step", "KL", "proxy", "gold", "gold (smoothed)", "ensemble std", "distinct-2", ""],
            curve_rows(evaluation["hacking"]["points"], s["gold_smoothed"], warned),
        ),
        "",
        f"The run's report (`{run_dir / 'report.html'}`) plots the same curves (proxy vs gold against KL).",
    ]
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    wall_s = None
    if args.run_dir is None:
        cmd = [
            str(ROOT / ".venv" / "bin" / "rlhfkit"),
            "loop",
            "--config",
            str(CONFIG),
            f"output={args.output}",
            f"prompts={ROOT / 'src' / 'rlhfkit' / 'data' / 'fixtures' / 'sentiment_prompts.jsonl'}",
            *args.override,
        ]
        start = time.perf_counter()
        subprocess.run(cmd, check=True, cwd=ROOT)
        wall_s = time.perf_counter() - start
        run_dir = args.output
        command = f".venv/bin/python bench/overopt.py {' '.join(argv)}".strip()
    else:
        run_dir = args.run_dir
        command = f".venv/bin/python bench/overopt.py --run-dir {run_dir}" + (
            f" --window {args.window}" if args.window else ""
        )
    text = report(run_dir, command, wall_s, args.window)
    args.out.parent.mkdir(parents=True, exist_ok=True)
    args.out.write_text(text)
    print(text)


if __name__ == "__main__":
    main(sys.argv[1:])
