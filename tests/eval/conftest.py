"""Synthetic run directories for the report tests (HTML and browser)."""

from __future__ import annotations

import json
import math
from pathlib import Path

import numpy as np
import pytest

from rlhfkit.eval.hacking import EvalPoint, hacking_summary
from rlhfkit.eval.leaderboard import Battle, leaderboard
from rlhfkit.eval.report import write_report
from rlhfkit.eval.winrate import win_rate

NASTY = '<script>alert("pwned")</script> & <b>bold</b>'
"""A response that must appear escaped, never as markup."""

PROMPTS = ["The movie was", "I went to the cinema and", "My review: " + NASTY]


def gao_points(n: int = 60, seed: int = 0) -> list[EvalPoint]:
    """An over-optimizing run: proxy = sqrt(KL) keeps rising, gold = sqrt(KL) - 0.1 KL peaks at KL 25."""
    rng = np.random.default_rng(seed)
    points = []
    for i in range(n):
        kl = 0.8 * i
        d = math.sqrt(kl)
        points.append(
            EvalPoint(
                step=10 * i,
                kl=kl,
                proxy=d + float(rng.normal(0, 0.05)),
                gold=d - 0.1 * kl + float(rng.normal(0, 0.03)),
                ensemble_std=0.1 + 0.01 * kl,
                length=20.0 + 0.5 * i,
                distinct2=0.95 - 0.008 * i,
            )
        )
    return points


def write_metrics(run_dir: Path, *, ppo: bool) -> None:
    lines = []
    for step in range(41):
        row: dict[str, float | int] = {"step": step, "train/loss": 2.0 * math.exp(-step / 15)}
        if step % 10 == 0:
            row["eval/loss"] = 2.1 * math.exp(-step / 15)
        if ppo:
            row |= {
                "ppo/score": math.sqrt(step),
                "ppo/kl": 0.5 * step,
                "ppo/entropy": 3.0 - 0.02 * step,
                "ppo/beta": 0.0,
                "reward/accuracy": 0.6 + 0.005 * step,
                "gold/mean": math.sqrt(step) - 0.1 * step,
            }
        lines.append(json.dumps(row))
    (run_dir / "metrics.jsonl").write_text("\n".join(lines) + "\n", encoding="utf-8")


def build_full_run(run_dir: Path) -> Path:
    """A PPO-like run with metrics, samples (including markup to escape) and eval.json."""
    run_dir.mkdir(parents=True, exist_ok=True)
    write_metrics(run_dir, ppo=True)
    samples = [
        {"step": 0, "prompt": p, "response": f"before {i}: it was fine.", "score": 0.1 * i, "gold": 0.2}
        for i, p in enumerate(PROMPTS)
    ] + [
        {"step": 40, "prompt": p, "response": "great great great great" if i < 2 else NASTY, "score": 3.0, "gold": -0.1}
        for i, p in enumerate(PROMPTS)
    ]
    (run_dir / "samples.jsonl").write_text("\n".join(json.dumps(s) for s in samples) + "\n", encoding="utf-8")
    battles = [Battle("step-0", "step-200", "b")] * 6 + [Battle("step-0", "step-200", "a")] * 2
    battles += [Battle("step-200", "step-400", "tie")] * 3 + [Battle("step-400", "step-0", "a")] * 4
    evaluation = {
        "win_rate": win_rate([1.0, 2.0, 3.0, 0.5, 2.0], [0.5, 2.5, 1.0, 0.2, 2.0]).to_dict(),
        "leaderboard": [row.to_dict() for row in leaderboard(battles, n_boot=50)],
        "hacking": hacking_summary(gao_points()),
        "agreement": {
            "alpha": 0.62,
            "per_annotator": {
                "alice": {"majority": 0.9, "gold": 0.85},
                "sim-01": {"majority": 0.8, "gold": None},
                "<i>mallory</i>": {"majority": 0.5, "gold": 0.5},
            },
        },
    }
    (run_dir / "eval.json").write_text(json.dumps(evaluation), encoding="utf-8")
    return run_dir


@pytest.fixture
def nasty() -> str:
    return NASTY


@pytest.fixture(scope="session")
def full_run(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A full run directory with its report written once (matplotlib makes rendering take seconds)."""
    run_dir = build_full_run(tmp_path_factory.mktemp("runs") / "ppo-run")
    write_report(run_dir)
    return run_dir


@pytest.fixture(scope="session")
def full_page(full_run: Path) -> str:
    """The HTML of the full run's report."""
    return (full_run / "report.html").read_text(encoding="utf-8")


@pytest.fixture
def sft_run(tmp_path: Path) -> Path:
    run_dir = tmp_path / "sft-run"
    run_dir.mkdir()
    write_metrics(run_dir, ppo=False)
    return run_dir
