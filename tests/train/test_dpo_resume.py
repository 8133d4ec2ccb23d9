"""DPO survives kill -9: a resumed run logs the very losses of an uninterrupted one."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

# The run as a child process, configured like `rlhfkit dpo --model tiny --data D --output O key=value ...`.
RUNNER = (
    "import sys\n"
    "from rlhfkit.config import build_config\n"
    "from rlhfkit.train.dpo import DPOConfig, dpo\n"
    "dpo(build_config(DPOConfig, values={'model': 'tiny', 'data': sys.argv[1], 'output': sys.argv[2]},"
    " overrides=sys.argv[3:]))\n"
)
OVERRIDES = [
    "max_steps=30",
    "lr=2e-3",
    "batch_size=4",
    "save_every=3",
    "eval_every=10",
    "progress=false",
    "kl_prompts=2",
    "kl_max_new_tokens=4",
    "eval_fraction=0.2",
]


def _cmd(data: Path, out: Path) -> list[str]:
    return [sys.executable, "-c", RUNNER, str(data), str(out), *OVERRIDES]


def _metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


@pytest.mark.slow
def test_kill_9_midway_then_resume_gives_the_same_losses(tmp_path: Path) -> None:
    rows = [
        {"prompt": f"Question {i}?", "chosen": f"A careful answer to {i}.", "rejected": f"meh {i}"} for i in range(40)
    ]
    data = tmp_path / "pairs.jsonl"
    data.write_text("".join(json.dumps(r) + "\n" for r in rows))
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cmd(data, straight), check=True, env=env, capture_output=True)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_cmd(data, crashed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as a mid-run checkpoint is published
        latest = crashed / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-000012":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "model.safetensors").exists(), "the run finished before it could be killed"
    cache = crashed / "reference_logps.safetensors"
    assert cache.exists()
    cached_at = cache.stat().st_mtime_ns
    subprocess.run(_cmd(data, crashed), check=True, env=env, capture_output=True)
    assert cache.stat().st_mtime_ns == cached_at  # the resumed run read the reference, it did not recompute it

    a, b = _metrics(straight), _metrics(crashed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert set(ra) == set(rb)
        for key in ra:
            if key.startswith(("train/", "eval/")):
                assert ra[key] == pytest.approx(rb[key], rel=1e-5, abs=1e-6), (ra["step"], key)
