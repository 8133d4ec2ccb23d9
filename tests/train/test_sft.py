"""SFT on a tiny model: real effects (eval loss falls, weights change), outputs, and exact resume."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhfkit.cli import run_command
from rlhfkit.config import build_config
from rlhfkit.train.sft import SFTConfig, sft


def metrics(run_dir: Path) -> list[dict]:
    return [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]


def last(rows: list[dict], key: str) -> float:
    return [r[key] for r in rows if key in r][-1]


def test_sft_lowers_eval_loss_and_writes_a_model_dir(demos_file: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM, AutoTokenizer

    from rlhfkit.models.tiny import tiny_model

    cfg = SFTConfig(
        model="tiny",
        data=str(demos_file),
        output=tmp_path / "run",
        max_steps=25,
        lr=3e-3,
        batch_size=4,
        eval_every=5,
        progress=False,
        eval_fraction=0.1,
    )
    run = run_command("sft", cfg)  # the command, so the run directory gets its report
    rows = metrics(run)
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert evals[-1] < 0.8 * evals[0]  # step-0 eval loss vs final
    # The run directory is a plain transformers model directory.
    model = AutoModelForCausalLM.from_pretrained(run)
    AutoTokenizer.from_pretrained(run)
    before = tiny_model(0).state_dict()
    changed = [k for k, v in model.state_dict().items() if not torch.equal(v, before[k])]
    assert changed
    assert (run / "report.html").exists() and (run / "config.yaml").exists()


@pytest.mark.parametrize("dtype", ["fp32", "bf16"])  # bf16: the base computes in bf16, and is saved unrounded
def test_lora_run_saves_adapter_and_merged_weights(
    demos_file: Path, tmp_path: Path, dtype: str, fresh_accelerate_state: None
) -> None:
    from peft import PeftModel
    from transformers import AutoModelForCausalLM

    from rlhfkit.models.tiny import tiny_model

    cfg = build_config(
        SFTConfig,
        values={"model": "tiny", "data": str(demos_file), "output": str(tmp_path / "r")},
        overrides=["max_steps=5", "lr=1e-2", "lora.r=4", "progress=false", f"dtype={dtype}"],
    )
    run = sft(cfg)
    merged = AutoModelForCausalLM.from_pretrained(run)
    with_adapter = PeftModel.from_pretrained(tiny_model(0), run / "adapter")
    ids = torch.tensor([[5, 6, 7, 8]])
    torch.testing.assert_close(merged(ids).logits, with_adapter(ids).logits, atol=1e-4, rtol=1e-4)
    base_logits = tiny_model(0)(ids).logits
    assert not torch.allclose(merged(ids).logits, base_logits)


def _cli(demos: Path, out: Path) -> list[str]:
    return [
        sys.executable,
        "-m",
        "rlhfkit.cli",
        "sft",
        "--model",
        "tiny",
        "--data",
        str(demos),
        "--output",
        str(out),
        "max_steps=40",
        "lr=3e-3",
        "batch_size=4",
        "save_every=4",
        "progress=false",
        "eval_every=20",
    ]


@pytest.mark.slow
def test_kill_9_midway_then_resume_gives_the_same_losses(demos_file: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(demos_file, straight), check=True, env=env, capture_output=True)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_cli(demos_file, crashed), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 120
    while time.time() < deadline:  # kill as soon as a mid-run checkpoint is published
        latest = crashed / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-000012":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "model.safetensors").exists(), "the run finished before it could be killed"
    subprocess.run(_cli(demos_file, crashed), check=True, env=env, capture_output=True)

    a, b = metrics(straight), metrics(crashed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    for ra, rb in zip(a, b, strict=True):
        assert ra["train/loss" if "train/loss" in ra else "eval/loss"] == pytest.approx(
            rb["train/loss" if "train/loss" in rb else "eval/loss"], rel=1e-5, abs=1e-6
        )
    assert last(a, "eval/loss") == pytest.approx(last(b, "eval/loss"), rel=1e-5)


def test_bf16_master_weights_train_save_fp32_and_resume_exactly(
    demos_file: Path, tmp_path: Path, fresh_accelerate_state: None
) -> None:
    """dtype=bf16 holds the model in bf16 with fp32 masters (train/precision.py): the loss still falls,
    checkpoints and the saved model are the fp32 masters, and a resumed run repeats the straight one."""
    from safetensors.torch import load_file

    def run(out: Path, steps: int) -> Path:
        return sft(
            SFTConfig(
                model="tiny",
                data=str(demos_file),
                output=out,
                max_steps=steps,
                lr=3e-3,
                batch_size=4,
                dtype="bf16",
                weights="master",
                schedule="constant",
                warmup_steps=0,
                save_every=4,
                eval_every=4,
                progress=False,
                eval_fraction=0.1,
            )
        )

    straight = run(tmp_path / "straight", 8)
    rows = metrics(straight)
    evals = [r["eval/loss"] for r in rows if "eval/loss" in r]
    assert evals[-1] < evals[0]
    saved = load_file(straight / "model.safetensors")
    assert {t.dtype for t in saved.values()} == {torch.float32}
    ckpt = load_file(straight / "checkpoints" / "step-000008" / "model.safetensors")
    assert {t.dtype for t in ckpt.values()} == {torch.float32}
    for name, value in ckpt.items():  # the saved model is exactly the final masters
        torch.testing.assert_close(saved[name], value, rtol=0, atol=0)

    run(tmp_path / "resumed", 4)
    resumed = run(tmp_path / "resumed", 8)
    a, b = metrics(straight), metrics(resumed)
    assert [r["step"] for r in a] == [r["step"] for r in b]
    assert last(a, "train/loss") == pytest.approx(last(b, "train/loss"), rel=1e-6)
    assert last(a, "eval/loss") == pytest.approx(last(b, "eval/loss"), rel=1e-6)
