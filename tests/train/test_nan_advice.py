"""A NaN names where to look (issue 24): at step 1 the weights or data, later the last checkpoint."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.train.metrics import check_finite, nan_advice
from rlhfkit.train.sft import SFTConfig, sft


def test_nan_at_step_1_points_at_the_model_not_the_learning_rate(demos_file: Path, tmp_path: Path) -> None:
    loaded = load_model("tiny:0", dtype="fp32")
    with torch.no_grad():
        loaded.model.get_output_embeddings().weight[0, 0] = float("nan")  # a broken checkpoint
    save_model_dir(loaded.model, loaded.tokenizer, tmp_path / "broken")
    cfg = SFTConfig(model=str(tmp_path / "broken"), data=str(demos_file), output=tmp_path / "run", max_steps=3)
    with pytest.raises(FloatingPointError) as caught:
        sft(cfg)
    message = str(caught.value)
    assert message.startswith("step 1: train/loss") and "became NaN or inf" in message
    assert "before any update" in message and "weights that are already NaN" in message
    assert "checkpoint is" not in message  # there is none yet: do not send the user to look for one


def test_later_nan_names_the_newest_checkpoint(tmp_path: Path) -> None:
    checkpoints = tmp_path / "checkpoints"
    assert "no checkpoint was saved yet" in nan_advice(5, checkpoints)
    for step in (10, 20):
        (checkpoints / f"step-{step:06d}").mkdir(parents=True)
    (checkpoints / ".tmp-step-000030-x").mkdir()  # an unfinished save is not a checkpoint
    with pytest.raises(FloatingPointError, match=r"step 25: train/kl became NaN.*step-000020; lower lr"):
        check_finite(25, {"train/kl": float("inf"), "train/loss": 1.0}, tmp_path)
