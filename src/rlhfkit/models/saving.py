"""Saving models as plain Hugging Face directories, atomically.

A finished run directory is itself a model directory: ``config.json``, ``model.safetensors`` and the
tokenizer at its top, so every rlhfkit command and plain ``transformers`` load it. A LoRA run also
keeps its adapter in ``adapter/`` (loadable with ``peft``).
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from pathlib import Path

import torch
from torch import nn
from transformers import PreTrainedTokenizerBase

from rlhfkit.files import fsync_dir, fsync_tree, publish_dir
from rlhfkit.models.adapters import is_peft, merged_copy

MODEL_FILES = ("config.json", "generation_config.json", "model.safetensors", "model.safetensors.index.json")


HUB_IDS = {"smollm2": "HuggingFaceTB/SmolLM2-135M-Instruct"}
"""Bundled model -> the hub id of the model it is a quantized copy of: what an adapter trained on it
records as its base, so that ``peft`` on another machine can find one (the bundled weights are the Q4_1
GGUF dequantized, so that base differs from them by the quantization error)."""


def portable_base_name(name_or_path: str) -> str:
    """The base model an adapter should name: the hub id for the bundled model's cache directory (a path
    that exists only on the machine that trained it), anything else unchanged."""
    from rlhfkit.files import cache_dir

    for bundled, hub_id in HUB_IDS.items():
        if name_or_path in (bundled, str(cache_dir() / "models" / bundled)):
            return hub_id
    return name_or_path


def portable_adapter_config(path: Path) -> None:
    """Rewrite ``base_model_name_or_path`` of a saved adapter's config with `portable_base_name`."""
    config = json.loads(path.read_text())
    base = config.get("base_model_name_or_path")
    if isinstance(base, str) and portable_base_name(base) != base:
        config["base_model_name_or_path"] = portable_base_name(base)
        path.write_text(json.dumps(config, indent=2) + "\n")  # inside the staged directory: published atomically


def save_model_dir(
    model: nn.Module,
    tokenizer: PreTrainedTokenizerBase,
    out_dir: Path,
    *,
    dtype: torch.dtype | None = None,
) -> None:
    """Write a loadable model directory into `out_dir` (merged weights; plus ``adapter/`` for LoRA).

    Files are written into a temporary directory beside `out_dir` and moved into place one by one
    with `os.replace`, so a reader never sees a half-written weights file.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    # The files are staged in one directory and published one by one (not as one directory): the run
    # directory they land in also holds the config, metrics and checkpoints, which must stay.
    tmp = Path(tempfile.mkdtemp(prefix=".model-", dir=out_dir))
    try:
        plain = merged_copy(model)
        if dtype is not None:
            import copy

            plain = copy.deepcopy(plain).to(dtype)
        plain.save_pretrained(tmp, safe_serialization=True)  # type: ignore[operator]
        tokenizer.save_pretrained(tmp)
        if is_peft(model):
            model.save_pretrained(tmp / "adapter", safe_serialization=True)  # type: ignore[operator]
            portable_adapter_config(tmp / "adapter" / "adapter_config.json")
        fsync_tree(tmp)
        for item in sorted(tmp.iterdir()):
            target = out_dir / item.name
            if item.is_dir():
                publish_dir(item, target)
            else:
                os.replace(item, target)
        fsync_dir(out_dir)
    finally:
        shutil.rmtree(tmp, ignore_errors=True)
