"""Win rates, Wilson intervals and judges."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.eval import winrate as w


def test_wilson_interval_hand_derived() -> None:
    # 8 of 10, z = 1.95996: z^2 = 3.84146, denom = 1 + 0.384146 = 1.384146
    # center = (0.8 + 3.84146 / 20) / denom = 0.992073 / 1.384146 = 0.716740
    # half = z * sqrt(0.8 * 0.2 / 10 + 3.84146 / 400) / denom = 1.95996 * 0.160011 / 1.384146 = 0.226574
    low, high = w.wilson_interval(8, 10)
    assert low == pytest.approx(0.490166, abs=1e-5)
    assert high == pytest.approx(0.943314, abs=1e-5)
    # p = 0 gives [0, z^2 / (n + z^2)] = [0, 3.84146 / 13.84146 = 0.277533].
    low, high = w.wilson_interval(0, 10)
    assert low == pytest.approx(0.0, abs=1e-12) and high == pytest.approx(0.277533, abs=1e-5)


def test_wilson_interval_matches_inverted_score_test() -> None:
    # Naive reference: the Wilson interval is the set of p for which |p_hat - p| <= z sqrt(p (1 - p) / n).
    z = 1.959964
    grid = np.linspace(0.0, 1.0, 200_001)
    for successes, n in [(3, 7), (12.5, 30), (1, 50), (49, 50)]:
        inside = grid[np.abs(successes / n - grid) <= z * np.sqrt(grid * (1 - grid) / n)]
        low, high = w.wilson_interval(successes, n)
        assert low == pytest.approx(inside.min(), abs=2e-5)
        assert high == pytest.approx(inside.max(), abs=2e-5)


def test_win_rate_counts_ties_as_half() -> None:
    # Pairs: 3>1 win, 1<2 loss, 2=2 tie, 2>0 win -> (2 + 0.5) / 4 = 0.625.
    result = w.win_rate([3, 1, 2, 2], [1, 2, 2, 0])
    assert (result.wins, result.losses, result.ties, result.n) == (2, 1, 1, 4)
    assert result.win_rate == 0.625
    assert (result.ci_low, result.ci_high) == pytest.approx(w.wilson_interval(2.5, 4))
    # A tolerance of 0.5 turns 1 vs 1.4 into a tie.
    assert w.win_rate([1.0], [1.4], tie_tolerance=0.5).ties == 1
    assert w.win_rate_from_choices(["a", "a", "b", "tie"]).win_rate == 0.625


def test_bootstrap_interval_close_to_wilson_for_many_comparisons() -> None:
    rng = np.random.default_rng(0)
    outcomes = (rng.random(400) < 0.6).astype(float)
    wilson = w.win_rate_from_outcomes(outcomes)
    boot = w.win_rate_from_outcomes(outcomes, ci="bootstrap", n_boot=2000, seed=1)
    assert boot.ci_low < boot.win_rate < boot.ci_high
    assert boot.ci_low == pytest.approx(wilson.ci_low, abs=0.015)
    assert boot.ci_high == pytest.approx(wilson.ci_high, abs=0.015)
    assert boot == w.win_rate_from_outcomes(outcomes, ci="bootstrap", n_boot=2000, seed=1)


def test_win_rate_validation() -> None:
    with pytest.raises(ValueError):
        w.win_rate([1.0, 2.0], [1.0])
    with pytest.raises(ValueError):
        w.win_rate([], [])
    with pytest.raises(ValueError):
        w.win_rate([math.nan], [1.0])
    with pytest.raises(ValueError):
        w.win_rate_from_choices(["a", "left"])  # type: ignore[list-item]
    with pytest.raises(ValueError):
        w.win_rate_from_outcomes([1.0], ci="wald")


def _char_gold(prompt: str, response: str) -> float:
    return float(len(response))


def test_judges_from_gold() -> None:
    hard = w.judge_from_gold(_char_gold)
    assert (hard("p", "aaa", "a"), hard("p", "a", "aaa"), hard("p", "aa", "bb")) == (1.0, 0.0, 0.5)
    soft = w.judge_from_gold(_char_gold, temperature=1.0)
    # sigmoid(3 - 1) = 1 / (1 + e^-2) = 0.880797
    assert soft("p", "aaa", "a") == pytest.approx(0.880797, abs=1e-6)


def test_score_win_rate_is_batched_and_agrees_with_judge() -> None:
    calls: list[int] = []

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        calls.append(len(responses))
        return [float(len(r)) for r in responses]

    prompts = ["p1", "p2", "p3", "p4"]
    policy = ["long answer", "x", "same", "longer one"]
    baseline = ["short", "xyz", "same", "tiny"]
    by_scores = w.score_win_rate(prompts, policy, baseline, score)
    assert calls == [4, 4]  # two batched calls, not one per pair
    by_judge = w.judge_win_rate(prompts, policy, baseline, w.judge_from_scores(score))
    assert by_scores == by_judge
    assert (by_scores.wins, by_scores.losses, by_scores.ties) == (2, 1, 1)
    via_gold = w.score_win_rate(prompts, policy, baseline, w.score_fn_from_gold(_char_gold))
    assert via_gold == by_scores
