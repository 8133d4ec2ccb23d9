"""kill -9 at a stage, restart: the loop resumes at that stage and redoes nothing that was done."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from rlhfkit.data.fixtures import fixture_path

pytestmark = pytest.mark.slow

RUNNER = """
import logging, sys
logging.basicConfig(level=logging.INFO)
from rlhfkit.config import build_config
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.loop import run_loop
run_loop(build_config(LoopConfig, values={"output": sys.argv[1], "policy_model": "tiny", "prompts": sys.argv[2]},
                      overrides=sys.argv[3:]))
"""

TINY = [
    "candidates.prompts_per_round=8",
    "candidates.sampling.max_new_tokens=12",
    "policy.max_steps=9",
    "policy.rollout_batch_size=8",
    "policy.batch_size=8",
    "policy.sampling.max_new_tokens=12",
    "reward.max_steps=10",
    "reward.normalize_prompts=4",
    "eval.samples_per_prompt=1",
    "eval.sampling.max_new_tokens=12",
    "progress=false",
]


def _start(out: Path) -> subprocess.Popen:
    cmd = [sys.executable, "-c", RUNNER, str(out), str(fixture_path("sentiment_prompts.jsonl")), *TINY]
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    return subprocess.Popen(cmd, env=env, stdout=subprocess.PIPE, stderr=subprocess.STDOUT, text=True)


def _markers(out: Path) -> dict[str, float]:
    return {p.name: json.loads(p.read_text())["finished_at"] for p in (out / "round-01" / "stages").glob("*.done")}


def _counts(out: Path) -> tuple[int, int]:
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(f"sqlite:///{out / 'feedback.db'}", migrate=False)
    try:
        progress = store.progress("loop")
        return progress.items, progress.judgments
    finally:
        store.close()


@pytest.mark.parametrize("kill_when", ["feedback", "policy"])
def test_kill_9_then_resume_at_the_same_stage(tmp_path: Path, kill_when: str) -> None:
    out = tmp_path / "loop"
    # "feedback": killed as soon as the items are in the app (mid-feedback or just after);
    # "policy": killed once PPO has published its first checkpoint (mid-training).
    trigger = {
        "feedback": out / "round-01" / "stages" / "items.done",
        "policy": out / "round-01" / "policy" / "checkpoints" / "latest",
    }[kill_when]
    proc = _start(out)
    deadline = time.time() + 300
    while not trigger.exists():
        assert proc.poll() is None, proc.stdout.read() if proc.stdout else ""
        assert time.time() < deadline, "the loop never reached the stage"
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    before = _markers(out)
    assert "eval.done" not in before

    restarted = _start(out)
    log, _ = restarted.communicate(timeout=600)
    assert restarted.returncode == 0, log[-3000:]
    after = _markers(out)
    # Stages finished before the kill were not run again (their markers are untouched) ...
    assert all(after[name] == finished for name, finished in before.items())
    assert set(after) == {f"{s}.done" for s in ("candidates", "items", "feedback", "reward", "policy", "eval")}
    # ... the app holds each item once, each with exactly its 3 judgments ...
    items, judgments = _counts(out)
    assert judgments == 3 * items
    # ... and a killed PPO continued from its checkpoint instead of starting over.
    if kill_when == "policy":
        assert "resumed from" in log
    ppo_steps = [
        json.loads(x)["step"] for x in (out / "round-01" / "policy" / "metrics.jsonl").read_text().splitlines()
    ]
    assert ppo_steps == list(range(1, 10))  # each step logged once
    assert (out / "report.html").exists() and (out / "eval.json").exists()
