"""Aggregation: Bradley-Terry by MM against hand values and gradient ascent; majority rules."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.feedback.aggregate import (
    bradley_terry,
    likert_mean,
    likert_median,
    pairwise_bradley_terry,
    pairwise_majority,
    ranking_bradley_terry,
    ranking_majority,
)


def test_two_items_hand_value() -> None:
    # 0 beat 1 three times, lost once; the prior adds half a win each way:
    # p0 / p1 = (3 + 0.5) / (1 + 0.5) = 7/3, so s0 - s1 = ln(7/3) = 0.8473.
    scores = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]))
    assert scores[0] - scores[1] == pytest.approx(math.log(7 / 3), abs=1e-8)
    assert scores.sum() == pytest.approx(0.0, abs=1e-12)
    # Without prior: the MLE ratio is exactly the win ratio 3/1.
    raw = bradley_terry(np.array([[0.0, 3.0], [1.0, 0.0]]), prior=0.0)
    assert raw[0] - raw[1] == pytest.approx(math.log(3), abs=1e-8)


def test_cycle_gives_equal_strengths() -> None:
    # 0 > 1, 1 > 2, 2 > 0 once each: symmetric, so all strengths are equal.
    wins = np.array([[0, 1, 0], [0, 0, 1], [1, 0, 0]], dtype=float)
    assert bradley_terry(wins, prior=0.0) == pytest.approx([0.0, 0.0, 0.0], abs=1e-8)


def naive_bt(wins: np.ndarray, prior: float, steps: int = 20000, lr: float = 0.05) -> np.ndarray:
    """Gradient ascent on sum_ij w_ij log sigmoid(s_i - s_j), loops written out."""
    k = wins.shape[0]
    w = [[wins[i][j] + (prior / 2 if i != j else 0.0) for j in range(k)] for i in range(k)]
    s = [0.0] * k
    for _ in range(steps):
        grad = [0.0] * k
        for i in range(k):
            for j in range(k):
                if i == j:
                    continue
                p_ij = 1 / (1 + math.exp(-(s[i] - s[j])))
                grad[i] += w[i][j] * (1 - p_ij) - w[j][i] * p_ij
        s = [s[i] + lr * grad[i] for i in range(k)]
        mean = sum(s) / k
        s = [x - mean for x in s]
    return np.array(s)


@pytest.mark.parametrize("seed", [0, 1])
def test_mm_matches_gradient_ascent(seed: int) -> None:
    rng = np.random.default_rng(seed)
    wins = rng.integers(0, 5, size=(4, 4)).astype(float)
    np.fill_diagonal(wins, 0)
    assert bradley_terry(wins) == pytest.approx(naive_bt(wins, prior=1.0), abs=1e-4)


def test_pairwise_aggregation() -> None:
    refs = [10, 20]
    votes = [{"choice": 10}, {"choice": 10}, {"choice": 20}]
    assert pairwise_majority(votes, refs).label == 10
    assert pairwise_majority([{"choice": 10}, {"choice": 20}], refs).label is None  # split
    assert pairwise_majority([{"choice": "tie"}] * 2 + [{"choice": 10}], refs).label == "tie"
    bt = pairwise_bradley_terry(votes, refs)
    # 2 wins vs 1, plus half a win each: ln(2.5 / 1.5).
    assert bt.label == 10 and bt.margin == pytest.approx(math.log(2.5 / 1.5), abs=1e-8)
    # Ties count half each way; "both bad" says nothing about the order.
    tie = pairwise_bradley_terry([{"choice": "tie"}, {"choice": "both_bad"}], refs)
    assert tie.label == "tie"
    assert pairwise_bradley_terry([{"choice": "both_bad"}], refs).label == "both_bad"


def test_copeland_ranking() -> None:
    refs = [1, 2, 3]
    rankings = [{"ranking": [1, 2, 3]}, {"ranking": [2, 1, 3]}, {"ranking": [1, 3, 2]}]
    # 1 beats 2 (2 of 3), 1 beats 3 (3 of 3), 2 beats 3 (2 of 3): Copeland 2, 1, 0.
    assert ranking_majority(rankings, refs).order == (1, 2, 3)
    # An even split and equal mean positions: the canonical order decides.
    assert ranking_majority([{"ranking": [1, 2]}, {"ranking": [2, 1]}], [1, 2]).order == (1, 2)
    bt = ranking_bradley_terry(rankings, refs)
    assert bt.order == (1, 2, 3) and bt.scores is not None
    assert bt.scores[1] > bt.scores[2] > bt.scores[3]


def test_likert_median_and_mean() -> None:
    answers = [{"ratings": {"7": {"overall": r, "honesty": 7}}} for r in (2, 5, 6)]
    assert likert_median(answers, [7]) == {7: {"overall": 5.0, "honesty": 7.0}}
    assert likert_mean(answers, [7])[7]["overall"] == pytest.approx(13 / 3)


def test_bad_input_shapes() -> None:
    with pytest.raises(ValueError, match="square"):
        bradley_terry(np.zeros((2, 3)))
    assert bradley_terry(np.zeros((0, 0))).shape == (0,)
