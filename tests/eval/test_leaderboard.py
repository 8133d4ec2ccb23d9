"""Bradley-Terry / Elo leaderboard: hand-checkable cases and a brute-force reference."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.eval.leaderboard import (
    Battle,
    bootstrap_ratings,
    fit_bradley_terry,
    leaderboard,
    online_elo,
    win_probability,
)


def test_two_models_p075_gives_190_85_points() -> None:
    # a wins 3 of 4: MLE P(a > b) = 0.75 -> 10^(gap / 400) = 3 -> gap = 400 log10(3) = 190.849.
    battles = [Battle("a", "b", "a")] * 3 + [Battle("a", "b", "b")]
    ratings = fit_bradley_terry(battles)
    assert ratings["a"] - ratings["b"] == pytest.approx(400 * math.log10(3), abs=1e-3)
    assert (ratings["a"] + ratings["b"]) / 2 == pytest.approx(1000.0)
    assert win_probability(ratings["a"], ratings["b"]) == pytest.approx(0.75, abs=1e-6)


def test_tie_counts_as_half_a_win() -> None:
    # One win and one tie: a scores 1 + 0.5 of 2 -> P = 0.75, the same gap as above.
    ratings = fit_bradley_terry([Battle("a", "b", "a"), Battle("b", "a", "tie")])
    assert ratings["a"] - ratings["b"] == pytest.approx(400 * math.log10(3), abs=1e-3)


def _naive_log_likelihood(battles: list[Battle], beta: dict[str, np.ndarray]) -> np.ndarray:
    """Explicit loop over battles, vectorized over a grid of candidate ratings."""
    total = np.zeros_like(next(iter(beta.values())))
    for bt in battles:
        p_a = 1.0 / (1.0 + 10.0 ** (beta[bt.model_b] - beta[bt.model_a]))
        y = {"a": 1.0, "b": 0.0, "tie": 0.5}[bt.winner]
        total += y * np.log(p_a) + (1 - y) * np.log(1 - p_a)
    return total


def test_three_models_match_brute_force_grid_search() -> None:
    battles = (
        [Battle("x", "y", "a")] * 7
        + [Battle("x", "y", "b")] * 3
        + [Battle("y", "z", "a")] * 6
        + [Battle("y", "z", "b")] * 4
        + [Battle("y", "z", "tie")] * 2
        + [Battle("z", "x", "a")] * 2
        + [Battle("z", "x", "b")] * 5
    )
    # Grid over (beta_x, beta_y) in log10 units with beta_z = -(beta_x + beta_y) (mean-zero gauge).
    step = 0.002
    axis = np.arange(-0.8, 0.8, step)
    bx, by = np.meshgrid(axis, axis, indexing="ij")
    loglik = _naive_log_likelihood(battles, {"x": bx, "y": by, "z": -(bx + by)})
    i, j = np.unravel_index(np.argmax(loglik), loglik.shape)
    expected = {"x": axis[i], "y": axis[j], "z": -(axis[i] + axis[j])}
    ratings = fit_bradley_terry(battles)
    for name, beta in expected.items():
        assert ratings[name] == pytest.approx(1000 + 400 * beta, abs=400 * step)


def test_fit_recovers_simulated_ratings() -> None:
    truth = {"strong": 1200.0, "mid": 1000.0, "weak": 800.0}
    rng = np.random.default_rng(0)
    names = list(truth)
    battles = []
    for _ in range(3000):
        a, b = rng.choice(names, size=2, replace=False)
        battles.append(Battle(a, b, "a" if rng.random() < win_probability(truth[a], truth[b]) else "b"))
    rows = leaderboard(battles, n_boot=50, seed=0)
    assert [r.name for r in rows] == ["strong", "mid", "weak"]
    for row in rows:
        assert row.rating == pytest.approx(truth[row.name], abs=30)
        assert row.ci_low < row.rating < row.ci_high
        assert row.ci_low < truth[row.name] < row.ci_high
    assert sum(r.n_battles for r in rows) == 2 * len(battles)


def test_online_elo_hand_derived() -> None:
    # Equal start: E_a = 0.5, a wins -> +4 * 0.5 = +2 -> 1002 / 998.
    assert online_elo([Battle("a", "b", "a")]) == {"a": 1002.0, "b": 998.0}
    # Second win: E_a = 1 / (1 + 10^(-4/400)) = 0.505756 -> +4 * 0.494244 = +1.976976.
    ratings = online_elo([Battle("a", "b", "a")] * 2)
    assert ratings["a"] == pytest.approx(1003.976976, abs=1e-5)
    assert ratings["a"] + ratings["b"] == pytest.approx(2000.0)
    # A tie between equals changes nothing.
    assert online_elo([Battle("a", "b", "tie")]) == {"a": 1000.0, "b": 1000.0}


def test_bootstrap_is_seeded_and_marks_absent_models() -> None:
    battles = [Battle("a", "b", "a"), Battle("b", "c", "b"), Battle("a", "c", "a")] * 2
    names, first = bootstrap_ratings(battles, n_boot=30, seed=3)
    _, second = bootstrap_ratings(battles, n_boot=30, seed=3)
    assert names == ["a", "b", "c"] and first.shape == (30, 3)
    np.testing.assert_array_equal(first, second)
    rows = leaderboard(battles, method="elo", n_boot=30)
    assert all(r.ci_low <= r.ci_high for r in rows)
    # A resample can miss a model entirely; it is NaN there, never a made-up 1000.
    _, tiny = bootstrap_ratings([Battle("a", "b", "a"), Battle("c", "d", "a")], n_boot=50, seed=0)
    assert np.isnan(tiny).any()


def test_validation() -> None:
    with pytest.raises(ValueError):
        Battle("a", "a", "a")
    with pytest.raises(ValueError):
        Battle("a", "b", "left")  # type: ignore[arg-type]
    with pytest.raises(ValueError):
        leaderboard([])
    with pytest.raises(ValueError):
        leaderboard([Battle("a", "b", "a")], method="trueskill")
