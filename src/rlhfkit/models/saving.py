"""Saving models as plain Hugging Face directories, atomically.

A finished run directory is itself a model directory: ``config.json``, ``model.safetensors`` and the
tokenizer at its top, so every rlhfkit command and plain ``transformers`` load it. A LoRA run also
keeps its adapter in ``adapter/`` (loadable with ``peft``).
"""

from __future__ import annotations

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
