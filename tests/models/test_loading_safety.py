"""Model loading never unpickles or runs a model's own code unless asked (issue 24)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.models.loading import ALLOW_PICKLE_ENV, ModelLoadError, load_model
from rlhfkit.models.saving import save_model_dir


def _pickled_dir(tmp_path: Path) -> Path:
    """A model directory whose weights are a pickle (pytorch_model.bin), as old hub repos have."""
    loaded = load_model("tiny:3", dtype="fp32")
    where = tmp_path / "pickled"
    save_model_dir(loaded.model, loaded.tokenizer, where)
    for f in where.glob("*.safetensors"):
        f.unlink()
    torch.save(loaded.model.state_dict(), where / "pytorch_model.bin")
    assert list(where.glob("*.bin"))
    return where


def test_pickle_weights_are_refused_by_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv(ALLOW_PICKLE_ENV, raising=False)
    where = _pickled_dir(tmp_path)
    with pytest.raises(ModelLoadError, match=f"only pickle weights .* set {ALLOW_PICKLE_ENV}=1"):
        load_model(where, dtype="fp32")
    ids = torch.tensor([[5, 6, 7]])
    trusted = load_model(where, dtype="fp32", allow_pickle_weights=True).model(ids).logits
    torch.testing.assert_close(trusted, load_model("tiny:3", dtype="fp32").model(ids).logits)
    monkeypatch.setenv(ALLOW_PICKLE_ENV, "1")
    load_model(where, dtype="fp32")  # the environment's opt-in works too


def test_remote_code_is_never_run_nor_asked_for(tmp_path: Path) -> None:
    """A config naming custom classes (auto_map) is refused without a prompt on the terminal."""
    loaded = load_model("tiny:3", dtype="fp32")
    where = tmp_path / "custom"
    save_model_dir(loaded.model, loaded.tokenizer, where)
    config = json.loads((where / "config.json").read_text())
    config["model_type"] = "evil-custom"
    config["auto_map"] = {"AutoModelForCausalLM": "modeling_evil.EvilForCausalLM"}
    (where / "config.json").write_text(json.dumps(config))
    (where / "modeling_evil.py").write_text("raise SystemExit('remote code ran')\n")
    with pytest.raises(ModelLoadError):
        load_model(where, dtype="fp32")
