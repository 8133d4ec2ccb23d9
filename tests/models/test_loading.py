"""Model loading, dtype choice, which parameters train, saving."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch

from rlhfkit.models import loading
from rlhfkit.models.adapters import LoRAConfig, apply_lora, count_parameters, decoder_layers, freeze_bottom_layers
from rlhfkit.models.dtype import resolve_dtype
from rlhfkit.models.loading import ModelLoadError, load_model, resolve_model_dir
from rlhfkit.models.saving import save_model_dir


def test_tiny_models_are_deterministic_per_seed() -> None:
    a, b, c = load_model("tiny:1").model, load_model("tiny:1").model, load_model("tiny:2").model
    ids = torch.tensor([[1, 2, 3]])
    torch.testing.assert_close(a(ids).logits, b(ids).logits)
    assert not torch.allclose(a(ids).logits, c(ids).logits)


def test_saved_model_dir_loads_back_identically(tmp_path: Path) -> None:
    loaded = load_model("tiny:3", dtype="fp32")
    save_model_dir(loaded.model, loaded.tokenizer, tmp_path / "m")
    again = load_model(tmp_path / "m", dtype="fp32")
    ids = torch.tensor([[10, 20, 30, 40]])
    torch.testing.assert_close(loaded.model(ids).logits, again.model(ids).logits)
    assert again.tokenizer.eos_token == "<|im_end|>"
    assert not list((tmp_path / "m").glob(".model-*")), "temporary directory left behind"


def test_hub_id_fails_fast_offline(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HF_HUB_OFFLINE", "1")
    import huggingface_hub

    def no_network(*args: object, **kwargs: object) -> None:
        if not kwargs.get("local_files_only"):
            raise AssertionError("an offline lookup tried the network")
        raise huggingface_hub.errors.LocalEntryNotFoundError("not cached")

    monkeypatch.setattr(huggingface_hub, "snapshot_download", no_network)
    with pytest.raises(ModelLoadError, match="not a bundled model"):
        resolve_model_dir("someone/some-model-that-is-not-here")


def test_missing_local_path_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ModelLoadError, match="does not exist"):
        resolve_model_dir(str(tmp_path / "nope"))
    (tmp_path / "empty").mkdir()
    with pytest.raises(ModelLoadError, match="no config.json"):
        resolve_model_dir(str(tmp_path / "empty"))


def test_fp16_on_cpu_is_refused_and_auto_picks_bf16_or_fp32() -> None:
    with pytest.raises(ValueError, match="fp16 on a CPU"):
        resolve_dtype("fp16", "cpu")
    assert resolve_dtype("auto", "cpu") in (torch.bfloat16, torch.float32)
    assert resolve_dtype("bf16", "cpu") == torch.bfloat16


def test_freeze_bottom_layers_stops_gradients_below() -> None:
    model = load_model("tiny:0", dtype="fp32").model
    freeze_bottom_layers(model, 1)
    layers = decoder_layers(model)
    assert all(not p.requires_grad for p in layers[0].parameters())
    assert all(p.requires_grad for p in layers[1].parameters())
    trainable, total = count_parameters(model)
    assert 0 < trainable < total


def test_lora_trains_only_adapters() -> None:
    model = apply_lora(load_model("tiny:0", dtype="fp32").model, LoRAConfig(r=2))
    names = [n for n, p in model.named_parameters() if p.requires_grad]
    assert names and all("lora_" in n for n in names)


@pytest.mark.skipif(
    not (Path.home() / ".cache/rlhfkit/models/smollm2/config.json").exists(),
    reason="the bundled model has not been cached on this machine",
)
def test_bundled_smollm2_loads_from_cache_without_dequantizing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("RLHFKIT_CACHE", str(Path.home() / ".cache/rlhfkit"))

    def no_dequantize(*args: object) -> None:
        raise AssertionError("a cached bundled model was dequantized again")

    monkeypatch.setattr(loading, "_dequantize_gguf", no_dequantize)
    loaded = load_model("smollm2", dtype="fp32")
    assert loaded.model.config.num_hidden_layers == 30
    assert not getattr(loaded.model.config, "quantization_config", None)
