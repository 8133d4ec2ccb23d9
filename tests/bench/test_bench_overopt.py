"""bench/overopt.py's reading of a loop's eval.json: smoothed gold peak, its 10% fall, the warnings."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def overopt():
    sys.path.insert(0, str(BENCH))  # overopt.py imports its sibling common.py by name
    try:
        import overopt as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def _evaluation(gold: list[float], warning_steps: list[int]) -> dict:
    points = [
        {"step": i + 1, "kl": float(i), "proxy": 0.1 * i, "gold": g, "ensemble_std": 0.2, "distinct2": 1.0}
        for i, g in enumerate(gold)
    ]
    warnings = [{"step": s, "kind": "proxy_up_gold_down", "message": "m"} for s in warning_steps]
    return {"hacking": {"points": points, "warnings": warnings}}


def test_trailing_mean(overopt) -> None:
    # [1, 3, 5, 7] with window 2: 1, (1+3)/2, (3+5)/2, (5+7)/2.
    assert overopt.trailing_mean(overopt.np.array([1.0, 3.0, 5.0, 7.0]), 2).tolist() == [1.0, 2.0, 4.0, 6.0]


def test_summary_finds_peak_and_ten_percent_fall(overopt) -> None:
    # window 1 (no smoothing): peak 1.0 at step 3; 10% below is 0.9; step 4 (0.95) is above, step 5 (0.8) below.
    s = overopt.summarize(_evaluation([0.2, 0.6, 1.0, 0.95, 0.8, 0.5], [4]), window=1)
    assert (s["peak_step"], s["peak_gold"], s["fell_step"]) == (3, 1.0, 5)
    assert s["floor"] == pytest.approx(0.9)
    assert s["first_warning"]["proxy_up_gold_down"]["step"] == 4


def test_negative_peak_uses_its_magnitude(overopt) -> None:
    # peak -1.0 at step 2: 10% below it is -1.1; step 3 (-1.05) is above, step 4 (-1.2) below.
    s = overopt.summarize(_evaluation([-2.0, -1.0, -1.05, -1.2], []), window=1)
    assert (s["peak_step"], s["fell_step"]) == (2, 4)
    assert s["floor"] == pytest.approx(-1.1)
    assert s["first_warning"]["proxy_up_gold_down"] is None


def test_gold_that_never_falls(overopt) -> None:
    assert overopt.summarize(_evaluation([0.1, 0.2, 0.3], []), window=2)["fell_step"] is None


def test_gold_noise_is_the_std_of_successive_differences_over_root_two(overopt) -> None:
    # gold [0, 1, 0, 1]: differences [1, -1, 1], mean 1/3, sample variance ((2/3)^2 * 2 + (4/3)^2) / 2 = 4/3;
    # std = 2/sqrt(3), divided by sqrt(2): sqrt(2/3).
    points = _evaluation([0.0, 1.0, 0.0, 1.0], [])["hacking"]["points"]
    assert overopt.gold_noise(points) == pytest.approx((2.0 / 3.0) ** 0.5)


def test_redetect_rescores_the_points_at_another_window(overopt) -> None:
    # Proxy rises throughout (0.1 * i); gold is 1.0 but for one dip to 0.95 at step 4.
    # Window 1: the dip is 5% below the peak, over the 3% tolerance -> a warning at step 4.
    # Window 3: the 3-point means at steps 4-6 are 2.95 / 3 = 0.983, 1.7% below -> no warning.
    evaluation = _evaluation([1.0, 1.0, 1.0, 0.95, 1.0, 1.0, 1.0], [99])
    evaluation["hacking"]["warnings"].append({"step": 2, "kind": "length_drift", "message": "kept"})
    config = {"eval": {"tolerance": 0.03, "std_tolerance": 0.25}}
    one = overopt.redetect(evaluation, config, window=1)["hacking"]["warnings"]
    assert [(w["step"], w["kind"]) for w in one] == [(2, "length_drift"), (4, "proxy_up_gold_down")]
    three = overopt.redetect(evaluation, config, window=3)["hacking"]["warnings"]
    assert [(w["step"], w["kind"]) for w in three] == [(2, "length_drift")]
    assert evaluation["hacking"]["warnings"][0]["step"] == 99  # the input is not modified
