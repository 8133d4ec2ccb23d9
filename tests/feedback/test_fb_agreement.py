"""Krippendorff's alpha against Krippendorff's own worked example and a naive reference."""

from __future__ import annotations

import random

import pytest

from rlhfkit.feedback.agreement import (
    krippendorff_alpha,
    strict_majority,
    unit_agrees,
    value_counts,
)

# Krippendorff (2011), "Computing Krippendorff's Alpha-Reliability", section C: 4 observers,
# 12 units, values 1..5, "." = missing. Unit 12 has a single value and is not pairable.
OBSERVERS = [
    [1, 2, 3, 3, 2, 1, 4, 1, 2, None, None, None],
    [1, 2, 3, 3, 2, 2, 4, 1, 2, 5, None, 3],
    [None, 3, 3, 3, 2, 3, 4, 2, 2, 5, 1, None],
    [1, 2, 3, 3, 2, 4, 4, 1, 2, 5, 1, None],
]
UNITS = [[row[u] for row in OBSERVERS if row[u] is not None] for u in range(12)]


def test_value_counts_of_the_worked_example() -> None:
    values, counts = value_counts(UNITS)
    assert values == [1, 2, 3, 4, 5]
    assert counts.shape == (11, 5)  # unit 12 holds one value: not pairable
    # Pairable values per value (the paper's marginals n_c): 9, 13, 10, 5, 3 -> n = 40.
    assert counts.sum(axis=0).tolist() == [9, 13, 10, 5, 3]


def test_nominal_alpha_hand_value() -> None:
    # alpha = 1 - (n - 1) * (n - sum_c o_cc) / (n^2 - sum_c n_c^2)
    #       = 1 - 39 * (40 - 32) / (1600 - (81 + 169 + 100 + 25 + 9)) = 1 - 312 / 1216 = 0.743421
    assert krippendorff_alpha(UNITS, "nominal") == pytest.approx(1 - 312 / 1216)
    assert round(krippendorff_alpha(UNITS, "nominal"), 3) == 0.743


@pytest.mark.parametrize(("metric", "published"), [("ordinal", 0.815), ("interval", 0.849), ("ratio", 0.797)])
def test_published_values_of_the_worked_example(metric: str, published: float) -> None:
    assert round(krippendorff_alpha(UNITS, metric), 3) == published


def _naive_delta2(metric: str, c: float, k: float, counts: dict[float, int]) -> float:
    if metric == "nominal":
        return float(c != k)
    if metric == "interval":
        return (c - k) ** 2
    if metric == "ratio":
        return 0.0 if c + k == 0 else ((c - k) / (c + k)) ** 2
    low, high = sorted((c, k))
    between = sum(n for g, n in counts.items() if low <= g <= high)
    return (between - (counts[c] + counts[k]) / 2) ** 2


def naive_alpha(units: list[list[float]], metric: str) -> float:
    """Definition by explicit loops: 1 - D_o / D_e over all pairs of pairable values."""
    pairable = [u for u in units if len(u) >= 2]
    values = [v for u in pairable for v in u]
    n = len(values)
    counts = {v: values.count(v) for v in set(values)}
    observed = (
        sum(
            _naive_delta2(metric, u[i], u[j], counts) / (len(u) - 1)
            for u in pairable
            for i in range(len(u))
            for j in range(len(u))
            if i != j
        )
        / n
    )
    expected = sum(
        _naive_delta2(metric, values[i], values[j], counts) for i in range(n) for j in range(n) if i != j
    ) / (n * (n - 1))
    return 1 - observed / expected


@pytest.mark.parametrize("metric", ["nominal", "ordinal", "interval", "ratio"])
@pytest.mark.parametrize("seed", [0, 1, 2])
def test_matches_naive_reference_on_random_data(metric: str, seed: int) -> None:
    rng = random.Random(seed)
    units = []
    for _ in range(25):
        truth = rng.randint(1, 7)
        units.append([min(7, max(1, truth + rng.choice([-1, 0, 0, 0, 1, 2]))) for _ in range(rng.randint(1, 5))])
    assert krippendorff_alpha(units, metric) == pytest.approx(naive_alpha(units, metric))


def test_alpha_is_one_for_perfect_agreement_and_undefined_without_variation() -> None:
    assert krippendorff_alpha([[1, 1], [2, 2, 2], [3, 3]], "ordinal") == pytest.approx(1.0)
    assert krippendorff_alpha([[4, 4], [4, 4]], "interval") is None
    assert krippendorff_alpha([[1], [2]], "nominal") is None  # nothing pairable
    assert krippendorff_alpha([["a", "b"], ["a", "a"], ["b", "b"]], "nominal") is not None


def test_alpha_below_zero_for_systematic_disagreement() -> None:
    # Two coders who always disagree on a binary code: D_o exceeds D_e.
    units = [[0, 1], [1, 0]] * 5
    assert krippendorff_alpha(units, "nominal") < 0


def test_unknown_metric_is_an_error() -> None:
    with pytest.raises(ValueError, match="unknown metric"):
        krippendorff_alpha([[1, 2]], "circular")


def test_majority_and_unit_agreement() -> None:
    assert strict_majority(["a", "b", "a"]) == "a"
    assert strict_majority(["a", "b"]) is None  # tie for first
    assert strict_majority([]) is None
    assert unit_agrees("a", ["a", "a", "b"], None) is True
    assert unit_agrees("b", ["a", "a", "b"], None) is False
    assert unit_agrees("a", ["a", "b"], None) is None  # the others split: no reference
    # Likert: 5 against others 4 and 7 -> median 5.5, |5 - 5.5| <= 1.
    assert unit_agrees(5, [4, 7], 1.0) is True
    assert unit_agrees(2, [4, 7], 1.0) is False
