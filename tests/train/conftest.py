"""Fixtures the RL trainers' tests share."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch


@pytest.fixture(scope="module")
def peaked_tiny(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The tiny Llama with its (tied) embeddings scaled by 4. At the default scale the logits of the
    random model can move by about 1 nat at most (RMS-normed hidden states times 0.02-std embeddings),
    so no reward could be raised much; at 4x the policy can actually learn, as a real LM can."""
    from rlhfkit.models.tiny import byte_tokenizer, tiny_model

    model = tiny_model(0)
    with torch.no_grad():
        model.get_input_embeddings().weight.mul_(4.0)
    out = tmp_path_factory.mktemp("models") / "tiny4"
    model.save_pretrained(out)
    byte_tokenizer().save_pretrained(out)
    return out
