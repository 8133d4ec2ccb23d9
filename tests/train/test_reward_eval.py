"""Reward-model evaluation metrics (hand numbers and a naive reference) and file scoring."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.data.errors import DataError
from rlhfkit.models.reward import build_reward_model
from rlhfkit.train.reward.data import RewardData, RewardExample
from rlhfkit.train.reward.evaluation import (
    eval_pairs,
    expected_calibration_error,
    pair_metrics,
    score_file,
)


def naive_ece(probs: list[float], n_bins: int = 10) -> float:
    bins: list[list[tuple[float, float]]] = [[] for _ in range(n_bins)]
    for p in probs:
        conf = max(p, 1 - p)
        correct = 1.0 if p > 0.5 else (0.5 if p == 0.5 else 0.0)
        bins[min(n_bins - 1, int((conf - 0.5) * 2 * n_bins))].append((conf, correct))
    total = 0.0
    for members in bins:
        if members:
            acc = sum(c for _, c in members) / len(members)
            conf = sum(c for c, _ in members) / len(members)
            total += len(members) / len(probs) * abs(acc - conf)
    return total


def test_ece_hand_values() -> None:
    # confidences 0.9, 0.8, 0.7, 0.6 in four different bins; right, right, wrong (0.3 < 0.5), right
    # ECE = (|1 - 0.9| + |1 - 0.8| + |0 - 0.7| + |1 - 0.6|) / 4 = 1.4 / 4 = 0.35
    assert expected_calibration_error(torch.tensor([0.9, 0.8, 0.3, 0.6])) == pytest.approx(0.35, abs=1e-6)
    # both confidence 0.92 (bin 8 of [0.5, 1]); one right, one wrong -> |0.5 - 0.92| = 0.42
    assert expected_calibration_error(torch.tensor([0.92, 0.08])) == pytest.approx(0.42, abs=1e-5)


def test_ece_matches_naive_loop() -> None:
    probs = torch.rand(500, generator=torch.Generator().manual_seed(0))
    assert expected_calibration_error(probs) == pytest.approx(naive_ece(probs.tolist()), abs=1e-5)


def test_eval_pairs_from_every_kind() -> None:
    exs = [
        RewardExample("pairs", 0, (0, 1)),
        RewardExample("pairs", 1, (2, 3), tie=True),
        RewardExample("rankings", 2, (4, 5, 6)),
        RewardExample("ratings", 3, (7,), rating=3.0, scale=(1.0, 7.0)),
        RewardExample("ratings", 3, (8,), rating=7.0, scale=(1.0, 7.0)),
        RewardExample("ratings", 3, (9,), rating=1.0, scale=(0.0, 3.0)),  # 1/3 on a 0..1 scale, same as 3 on 1..7
        RewardExample("ratings", 4, (10,), rating=5.0, scale=(1.0, 7.0)),  # alone on its prompt: no pair
    ]
    data = RewardData([[1]] * 11, [1] * 11, exs)
    assert eval_pairs(data) == [
        (0, 1, False),
        (2, 3, True),
        (4, 5, False),
        (4, 6, False),
        (5, 6, False),
        (8, 7, False),
        (7, 9, True),
        (8, 9, False),
    ]


def test_pair_metrics_hand_values() -> None:
    raw = torch.tensor([[2.0], [0.0], [1.0], [3.0], [0.0], [0.0]])
    pairs = [(0, 1, False), (2, 3, False), (4, 5, True)]
    lengths = [10, 20, 40, 200, 5, 5]
    m = pair_metrics(raw, raw * 2.0, pairs, lengths)  # "normalized" = 2 x raw
    # deltas (normalized): 4, -4 -> accuracy 1/2, mean margin 0; tie excluded
    assert (m["accuracy"], m["n"], m["ties"], m["mean_margin"]) == (0.5, 2, 1, 0.0)
    # raw deltas 2 and -2: sigmoid 0.880797 (right) and 0.119203 (wrong), both confidence 0.880797
    # ECE = |0.5 - 0.880797| = 0.380797; BT loss = (softplus(-2) + softplus(2)) / 2 = (0.126928 + 2.126928) / 2
    assert m["ece"] == pytest.approx(0.380797, abs=1e-5)
    assert m["bt_loss"] == pytest.approx(1.126928, abs=1e-5)
    # longer responses: 20 -> bucket 0-31 (right), 200 -> bucket 128-255 (wrong)
    assert m["by_length"] == {"0-31": {"n": 1, "accuracy": 1.0}, "128-255": {"n": 1, "accuracy": 0.0}}


def test_score_file_adds_scores_per_row_kind(tmp_path: Path) -> None:
    model = build_reward_model("tiny", n_heads=2, max_length=64)
    rows = [
        {"prompt": "Hi?", "response": "Hello.", "id": 1},
        {"prompt": "Hi?", "chosen": "Hello there.", "rejected": "Go away."},
        {"prompt": "Hi?", "responses": ["Hello.", "Yo.", "Bye."]},
    ]
    src = tmp_path / "in.jsonl"
    src.write_text("".join(json.dumps(r) + "\n" for r in rows))
    assert score_file(model, src, tmp_path / "out.jsonl") == 3
    out = [json.loads(line) for line in (tmp_path / "out.jsonl").read_text().splitlines()]
    expected = model.score(["Hi?"] * 3, ["Hello.", "Hello there.", "Go away."])
    assert out[0]["id"] == 1 and out[0]["score"] == pytest.approx(float(expected.mean[0]), abs=1e-5)
    assert len(out[0]["score_per_head"]) == 2 and out[0]["score_std"] > 0
    assert out[1]["chosen_score"] == pytest.approx(float(expected.mean[1]), abs=1e-5)
    assert out[1]["rejected_score"] == pytest.approx(float(expected.mean[2]), abs=1e-5)
    assert out[2]["scores"][0] == pytest.approx(out[0]["score"], abs=1e-5) and len(out[2]["scores_std"]) == 3


def test_score_file_rejects_rows_without_a_response(tmp_path: Path) -> None:
    src = tmp_path / "in.jsonl"
    src.write_text(json.dumps({"prompt": "Hi?", "response": "Yo."}) + "\n" + json.dumps({"prompt": "Hi?"}) + "\n")
    with pytest.raises(DataError, match=r"in\.jsonl:2"):
        score_file(build_reward_model("tiny"), src, tmp_path / "out.jsonl")
