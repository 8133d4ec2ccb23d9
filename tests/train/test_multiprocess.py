"""Multi-process training: 2 CPU processes (gloo, started by torchrun) against 1 on the same global batch.

For each trainer the per-step losses and the final weights of the two runs agree to 1e-5 in fp32:
the data is sharded by rank, the loss is normalized by the step's global count and DDP averages the
gradients, so the split of a step over processes changes only the order of floating-point sums.
Only the main process writes (a second writer crashed on the checkpoint rename before).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.data.fixtures import fixture_path

pytestmark = pytest.mark.multiprocess

TIMEOUT_S = 300


def launch(command: list[str], out: Path, processes: int) -> None:
    """`rlhfkit COMMAND` on `processes` processes: plain Python for one, torchrun for more."""
    env = {**os.environ, "OMP_NUM_THREADS": "1", "PYTHONUNBUFFERED": "1"}
    if processes == 1:
        head = [sys.executable, "-m", "rlhfkit.cli"]
    else:
        head = [sys.executable, "-m", "torch.distributed.run", "--standalone", f"--nproc_per_node={processes}"]
        head += ["-m", "rlhfkit.cli"]
    args = [*head, *command, "--output", str(out), "progress=false", "seed=3"]
    done = subprocess.run(args, env=env, capture_output=True, text=True, timeout=TIMEOUT_S)
    assert done.returncode == 0, done.stderr[-4000:]


def metric_rows(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def losses(run_dir: Path, key: str) -> list[float]:
    return [r[key] for r in metric_rows(run_dir) if key in r]


def assert_same_weights(a: Path, b: Path, name: str = "model.safetensors") -> None:
    wa, wb = load_file(str(a / name)), load_file(str(b / name))
    assert wa.keys() == wb.keys()
    for key in wa:
        torch.testing.assert_close(wa[key], wb[key], rtol=1e-5, atol=1e-5, msg=key)


def assert_same_run(one: Path, two: Path, key: str, weights: str = "model.safetensors") -> None:
    a, b = losses(one, key), losses(two, key)
    assert len(a) == len(b) > 0
    assert a == pytest.approx(b, rel=1e-5, abs=1e-6)
    assert [r["step"] for r in metric_rows(one)] == [r["step"] for r in metric_rows(two)]
    assert_same_weights(one, two, weights)
    assert not list((two / "checkpoints").glob(".tmp-*")), "a second writer left a staged checkpoint"


def test_sft_two_processes_match_one(demos_file: Path, tmp_path: Path) -> None:
    # One process: 2 micro-batches of 3; two processes: one micro-batch of 3 each. Global batch 6.
    common = ["sft", "--model", "tiny", "--data", str(demos_file), "max_steps=4", "lr=3e-3", "save_every=2"]
    common += ["eval_fraction=0.1", "batch_size=3"]
    launch([*common, "grad_accum=2"], tmp_path / "one", 1)
    launch([*common, "grad_accum=1"], tmp_path / "two", 2)
    assert_same_run(tmp_path / "one", tmp_path / "two", "train/loss")
    assert losses(tmp_path / "one", "eval/loss") == pytest.approx(losses(tmp_path / "two", "eval/loss"), rel=1e-5)


def test_reward_model_two_processes_match_one(tmp_path: Path) -> None:
    pairs = fixture_path("pairs_small.jsonl")
    common = ["reward", "train", "--model", "tiny", "--data", str(pairs), "max_steps=3", "lr=3e-3"]
    common += ["normalize=false", "save_every=2", "batch_size=4", "warmup_steps=1", "eval_fraction=0.25"]
    launch([*common, "grad_accum=2"], tmp_path / "one", 1)
    launch([*common, "grad_accum=1"], tmp_path / "two", 2)
    assert_same_run(tmp_path / "one", tmp_path / "two", "train/loss", weights="reward_head.safetensors")
    a, b = metric_rows(tmp_path / "one")[-1], metric_rows(tmp_path / "two")[-1]
    assert a["eval/accuracy"] == pytest.approx(b["eval/accuracy"], rel=1e-5)


def test_dpo_two_processes_match_one(tmp_path: Path) -> None:
    pairs = fixture_path("pairs_small.jsonl")
    common = ["dpo", "--model", "tiny", "--data", str(pairs), "max_steps=3", "lr=3e-3", "save_every=2"]
    common += ["batch_size=2", "warmup_steps=1", "eval_fraction=0.25", "kl_prompts=2", "kl_max_new_tokens=4"]
    launch([*common, "grad_accum=2"], tmp_path / "one", 1)
    launch([*common, "grad_accum=1"], tmp_path / "two", 2)
    assert_same_run(tmp_path / "one", tmp_path / "two", "train/loss")
    assert losses(tmp_path / "one", "eval/kl") == pytest.approx(losses(tmp_path / "two", "eval/kl"), rel=1e-5)
