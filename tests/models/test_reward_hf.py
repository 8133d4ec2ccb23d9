"""Reward models load in plain transformers as sequence classifiers and score as rlhfkit does."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from transformers import AutoModelForSequenceClassification, AutoTokenizer

from rlhfkit.models.reward import Normalization, build_reward_model, load_reward_model, save_reward_model
from rlhfkit.models.reward_hf import distinct_pad_id, folded_mean_head

PROMPTS = ["How do I boil pasta?", [{"role": "user", "content": "Name a fish."}], "Say hi."]
RESPONSES = ["Bring salted water to a boil, add the pasta and stir.", "Bubbles.", "Hi!"]


def transformers_scores(directory: Path, ids: list[list[int]]) -> torch.Tensor:
    """Score rlhfkit's token ids with nothing but transformers: right-padded with the saved pad token."""
    tokenizer = AutoTokenizer.from_pretrained(directory)
    model = AutoModelForSequenceClassification.from_pretrained(directory, dtype=torch.float32).eval()
    width = max(len(r) for r in ids)
    input_ids = torch.tensor([r + [tokenizer.pad_token_id] * (width - len(r)) for r in ids])
    mask = torch.tensor([[1] * len(r) + [0] * (width - len(r)) for r in ids])
    with torch.no_grad():
        return model(input_ids=input_ids, attention_mask=mask).logits[:, 0]


def test_folded_mean_head_matches_the_mean_of_normalized_heads() -> None:
    w = torch.tensor([[1.0, 2.0], [3.0, -1.0]])
    b, gain, offset = torch.tensor([0.5, -1.0]), torch.tensor([2.0, 0.5]), torch.tensor([1.0, 0.0])
    folded, c = folded_mean_head(w, b, gain, offset)
    # head 0: 2*(h.(1,2) + 0.5) + 1 = h.(2,4) + 2; head 1: 0.5*(h.(3,-1) - 1) = h.(1.5,-0.5) - 0.5
    assert folded.tolist() == [[1.75, 1.75]] and c == pytest.approx(0.75)


@pytest.mark.parametrize("n_heads", [1, 3])
def test_plain_transformers_scores_like_rlhfkit(tmp_path: Path, n_heads: int) -> None:
    model = build_reward_model("tiny", n_heads=n_heads, max_length=128, seed=3)
    with torch.no_grad():
        model.head.bias.copy_(torch.linspace(-0.5, 0.5, n_heads))
    model.set_normalization(Normalization((2.0,) * n_heads, (0.25,) * n_heads, "ref", 10))
    save_reward_model(model, tmp_path / "rm")
    expected = model.score(PROMPTS, RESPONSES).mean
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    offset = config["rlhfkit_score_offset"]
    assert offset == pytest.approx(2.0 * torch.linspace(-0.5, 0.5, n_heads).mean().item() + 0.25)
    got = transformers_scores(tmp_path / "rm", model.encode(PROMPTS, RESPONSES)) + offset
    torch.testing.assert_close(got, expected, atol=1e-5, rtol=0)
    # rlhfkit still reads its own files (all K heads) from the same directory
    torch.testing.assert_close(load_reward_model(tmp_path / "rm").score(PROMPTS, RESPONSES).mean, expected)


def test_a_pairwise_model_without_normalization_needs_no_offset(tmp_path: Path) -> None:
    model = build_reward_model("tiny", max_length=128, seed=1)  # bias 0, identity normalization
    save_reward_model(model, tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["rlhfkit_score_offset"] == 0.0
    got = transformers_scores(tmp_path / "rm", model.encode(PROMPTS, RESPONSES))
    torch.testing.assert_close(got, model.score(PROMPTS, RESPONSES).mean, atol=1e-5, rtol=0)


def test_a_pad_equal_to_eos_is_replaced_so_transformers_reads_the_eos(tmp_path: Path) -> None:
    model = build_reward_model("tiny", max_length=128, seed=2)
    model.tokenizer.pad_token = model.tokenizer.eos_token  # as load_tokenizer does for a model without pad
    assert distinct_pad_id(model.tokenizer) == 256  # <|endoftext|>
    save_reward_model(model, tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / "config.json").read_text())["pad_token_id"] == 256
    assert AutoTokenizer.from_pretrained(tmp_path / "rm").pad_token == "<|endoftext|>"
    assert model.tokenizer.pad_token == "<|im_end|>"  # the live model's tokenizer is left alone
    got = transformers_scores(tmp_path / "rm", model.encode(PROMPTS, RESPONSES))
    torch.testing.assert_close(got, model.score(PROMPTS, RESPONSES).mean, atol=1e-5, rtol=0)


def test_mean_pooling_writes_no_score_head_and_says_why(tmp_path: Path) -> None:
    save_reward_model(build_reward_model("tiny", max_length=128, pooling="mean"), tmp_path / "rm")
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    assert "no transformers equivalent" in config["rlhfkit_score_head"]


def test_reward_models_written_before_the_score_head_still_load(tmp_path: Path) -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=128, seed=4)
    save_reward_model(model, tmp_path / "rm")
    # the old layout: the trunk as a plain causal LM, without score.weight and the classifier keys
    from safetensors.torch import load_file, save_file

    weights = load_file(str(tmp_path / "rm" / "model.safetensors"))
    del weights["score.weight"]
    save_file(weights, str(tmp_path / "rm" / "model.safetensors"), metadata={"format": "pt"})
    config = json.loads((tmp_path / "rm" / "config.json").read_text())
    for key in ("id2label", "label2id", "rlhfkit_score_offset", "normalize_reward", "mean", "std"):
        config.pop(key)
    (tmp_path / "rm" / "config.json").write_text(json.dumps(config))
    loaded = load_reward_model(tmp_path / "rm")
    torch.testing.assert_close(loaded.score(PROMPTS, RESPONSES).mean, model.score(PROMPTS, RESPONSES).mean)
