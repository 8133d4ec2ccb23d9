"""The reward model: head init, last-token reading, normalization, scoring, save/load."""

from __future__ import annotations

import json
import math
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

from rlhfkit.models.loading import ModelLoadError
from rlhfkit.models.reward import (
    Normalization,
    RewardHead,
    build_reward_model,
    last_token,
    load_reward_model,
    mean_tokens,
    normalization_from_raw,
    save_reward_model,
    scores_from_heads,
)

PROMPTS = ["How do I boil pasta?", [{"role": "user", "content": "Name a fish."}], "Say hi."]
RESPONSES = ["Bring salted water to a boil, add the pasta and stir.", "Bubbles.", "Hi!"]


def test_last_token_reads_the_last_real_position_with_either_padding() -> None:
    hidden = torch.arange(8.0).reshape(2, 4, 1)  # row 0: 0,1,2,3; row 1: 4,5,6,7
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert last_token(hidden, right).flatten().tolist() == [2.0, 7.0]  # positions 2 and 3
    assert last_token(hidden, left).flatten().tolist() == [3.0, 7.0]  # left padding: always the end


def test_mean_tokens_averages_the_real_positions_with_either_padding() -> None:
    hidden = torch.arange(8.0).reshape(2, 4, 1)  # row 0: 0,1,2,3; row 1: 4,5,6,7
    right = torch.tensor([[1, 1, 1, 0], [1, 1, 1, 1]])
    left = torch.tensor([[0, 1, 1, 1], [0, 0, 1, 1]])
    assert mean_tokens(hidden, right).flatten().tolist() == [1.0, 5.5]  # (0+1+2)/3, (4+5+6+7)/4
    assert mean_tokens(hidden, left).flatten().tolist() == [2.0, 6.5]  # (1+2+3)/3, (6+7)/2


def test_mean_pooling_reads_each_rows_own_tokens_and_survives_save_and_load(tmp_path: Path) -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=128, pooling="mean")
    ids = model.encode(PROMPTS, RESPONSES)
    features = model.batched_features(ids, batch_size=3)  # padded together
    for row, feature in zip(ids, features, strict=True):  # naive reference: each row alone, its states averaged
        alone = model.trunk_hidden(torch.tensor([row]), torch.ones(1, len(row), dtype=torch.long))[0]
        torch.testing.assert_close(feature, alone.mean(dim=0), atol=1e-5, rtol=1e-5)
    last = build_reward_model("tiny", n_heads=2, max_length=128)
    assert not torch.allclose(last.batched_features(ids), features, atol=1e-3)
    save_reward_model(model, tmp_path / "rm")
    assert json.loads((tmp_path / "rm" / "reward.json").read_text())["pooling"] == "mean"
    loaded = load_reward_model(tmp_path / "rm")
    assert loaded.meta.pooling == "mean"
    torch.testing.assert_close(loaded.raw_scores(ids), model.raw_scores(ids), atol=0, rtol=0)
    with pytest.raises(ValueError, match="unknown pooling 'max'"):
        build_reward_model("tiny", pooling="max")


def test_a_reward_json_from_before_pooling_reads_the_last_token(tmp_path: Path) -> None:
    save_reward_model(build_reward_model("tiny", max_length=64), tmp_path / "rm")
    meta = json.loads((tmp_path / "rm" / "reward.json").read_text())
    del meta["pooling"]
    (tmp_path / "rm" / "reward.json").write_text(json.dumps(meta))
    assert load_reward_model(tmp_path / "rm").meta.pooling == "last"


def test_head_init_std_is_one_over_sqrt_hidden_plus_one() -> None:
    head = RewardHead(hidden_size=4095, n_heads=8, generator=torch.Generator().manual_seed(0))
    # 1 / sqrt(4095 + 1) = 1/64 = 0.015625; 32760 draws estimate it to well under 2%
    assert head.weight.std().item() == pytest.approx(1 / 64, rel=0.02)
    assert head.bias.tolist() == [0.0] * 8
    assert sorted(n for n, _ in head.named_parameters()) == ["bias", "weight"]


def test_normalization_from_raw_hand_values() -> None:
    raw = torch.tensor([[1.0, 5.0], [3.0, 5.0]])
    norm = normalization_from_raw(raw, "ref")
    # head 0: mean 2, sample std sqrt(2) -> gain 1/sqrt(2) = 0.707107, bias -2/sqrt(2) = -1.414214
    # head 1: no spread -> gain 1, bias -5
    assert norm.gain == pytest.approx((1 / math.sqrt(2), 1.0))
    assert norm.bias == pytest.approx((-math.sqrt(2), -5.0))
    assert (norm.reference, norm.samples) == ("ref", 2)


def test_scores_from_heads_mean_and_sample_std() -> None:
    s = scores_from_heads(torch.tensor([[1.0, 3.0], [2.0, 2.0]]))
    # row 0: mean 2, sample std sqrt(((1-2)^2 + (3-2)^2) / 1) = 1.414214; row 1: mean 2, std 0
    assert s.mean.tolist() == [2.0, 2.0]
    assert s.std.tolist() == pytest.approx([math.sqrt(2), 0.0])
    assert scores_from_heads(torch.tensor([[1.5]])).std is None


def test_a_row_scores_the_same_alone_and_in_a_padded_batch() -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=128)
    ids = model.encode(PROMPTS, RESPONSES)
    batched = model.raw_scores(ids, batch_size=3)
    alone = torch.cat([model.raw_scores([row]) for row in ids])
    assert batched.shape == (3, 2)
    torch.testing.assert_close(batched, alone, atol=1e-5, rtol=1e-5)


def test_score_applies_gain_and_bias_and_folded_head_matches() -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=128)
    raw = model.raw_scores(model.encode(PROMPTS, RESPONSES))
    model.set_normalization(Normalization((2.0, 0.5), (1.0, -1.0), "tiny", 10))
    scores = model.score(PROMPTS, RESPONSES)
    expected = raw * torch.tensor([2.0, 0.5]) + torch.tensor([1.0, -1.0])
    torch.testing.assert_close(scores.per_head, expected)
    torch.testing.assert_close(scores.mean, expected.mean(dim=1))
    assert scores.std is not None and scores.std.shape == (3,)
    ids = model.encode(PROMPTS, RESPONSES)
    w, b = model.folded_head()
    features = model.batched_features(ids)
    torch.testing.assert_close(features @ w.T + b, expected, atol=1e-5, rtol=1e-5)


def test_save_load_round_trip_gives_identical_scores(tmp_path: Path) -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=64, seed=3)
    model.set_normalization(Normalization((2.0, 0.5), (1.0, -1.0), "tiny", 10))
    save_reward_model(model, tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    a, b = model.score(PROMPTS, RESPONSES), loaded.score(PROMPTS, RESPONSES)
    torch.testing.assert_close(a.per_head, b.per_head, atol=0, rtol=0)
    meta = json.loads((tmp_path / "rm" / "reward.json").read_text())
    assert meta["n_heads"] == 2 and meta["max_length"] == 64 and meta["base_model"] == "tiny"
    assert meta["normalization"]["gain"] == [2.0, 0.5]
    head = load_file(str(tmp_path / "rm" / "reward_head.safetensors"))
    assert head["weight"].shape == (2, 64) and head["bias"].shape == (2,)
    from transformers import AutoModelForCausalLM

    AutoModelForCausalLM.from_pretrained(tmp_path / "rm")  # the trunk is a plain model directory


def test_lora_trunk_is_saved_merged(tmp_path: Path) -> None:
    from rlhfkit.models.adapters import LoRAConfig, apply_lora

    model = build_reward_model("tiny", max_length=64)
    model.backbone = apply_lora(model.backbone, LoRAConfig(r=4))
    with torch.no_grad():
        for name, p in model.backbone.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)  # a non-trivial adapter (lora_B starts at zero)
    save_reward_model(model, tmp_path / "rm")
    loaded = load_reward_model(tmp_path / "rm")
    torch.testing.assert_close(
        model.score(PROMPTS, RESPONSES).mean, loaded.score(PROMPTS, RESPONSES).mean, atol=1e-4, rtol=1e-4
    )


def test_loading_a_plain_model_dir_says_what_is_missing(tmp_path: Path) -> None:
    from rlhfkit.models.loading import load_model
    from rlhfkit.models.saving import save_model_dir

    loaded = load_model("tiny")
    save_model_dir(loaded.model, loaded.tokenizer, tmp_path / "lm")
    with pytest.raises(ModelLoadError, match="reward.json"):
        load_reward_model(tmp_path / "lm")
