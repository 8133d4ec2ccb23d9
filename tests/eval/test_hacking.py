"""Reward-hacking signals: the over-optimization detector on Gao-et-al-shaped curves, drift, fits."""

from __future__ import annotations

import json
import math

import numpy as np
import pytest

from rlhfkit.eval.hacking import (
    EvalPoint,
    _trailing_mean,
    best_checkpoint,
    detect_drift,
    detect_overoptimization,
    drift_signals,
    gao_fit,
    hacking_summary,
)

STEPS = np.arange(100)
KL = 0.5 * STEPS  # beta = 0: KL grows roughly linearly with training


def _gao_run(seed: int, gold_beta: float = 0.1) -> tuple[list[EvalPoint], np.ndarray]:
    """proxy = sqrt(KL) + noise keeps rising; true gold = sqrt(KL) - gold_beta * KL (Gao et al.)."""
    rng = np.random.default_rng(seed)
    d = np.sqrt(KL)
    proxy = d + rng.normal(0, 0.1, len(d))
    true_gold = d - gold_beta * KL
    gold = true_gold + rng.normal(0, 0.05, len(d))
    points = [
        EvalPoint(int(s), float(k), float(p), float(g)) for s, k, p, g in zip(STEPS, KL, proxy, gold, strict=True)
    ]
    return points, true_gold


def test_detector_fires_before_gold_loses_ten_percent() -> None:
    # True gold d - 0.1 d^2 peaks at d = 5 (KL 25, step 50) at 2.5 and falls below 0.9 * 2.5 = 2.25
    # at d = (1 + sqrt(0.1)) / 0.2 = 6.58, KL 43.3, i.e. step 87.
    for seed in range(20):
        points, true_gold = _gao_run(seed)
        peak_index = int(np.argmax(true_gold))
        fell = int(np.flatnonzero((true_gold < 0.9 * true_gold.max()) & (peak_index < STEPS))[0])
        assert fell == 87
        warnings = [w for w in detect_overoptimization(points) if w.kind == "proxy_up_gold_down"]
        assert warnings, f"seed {seed}: no warning"
        assert warnings[0].step < fell, f"seed {seed}: first warning at {warnings[0].step}"
        # ... and not while gold is still climbing steeply (true gold below 90% of its peak).
        assert true_gold[warnings[0].step] > 0.9 * true_gold.max(), f"seed {seed}: premature warning"


def test_no_warning_when_gold_keeps_improving() -> None:
    for seed in range(20):
        rng = np.random.default_rng(seed)
        d = np.sqrt(KL)
        points = [
            EvalPoint(int(s), float(k), float(x + rng.normal(0, 0.1)), float(0.5 * x + rng.normal(0, 0.05)))
            for s, k, x in zip(STEPS, KL, d, strict=True)
        ]
        assert detect_overoptimization(points) == []


def test_no_warning_when_proxy_falls_too() -> None:
    # Gold and proxy both collapse (e.g. a diverging run): bad, but not reward hacking.
    points = [EvalPoint(s, 0.1 * s, 2.0 - 0.05 * s, 1.0 - 0.05 * s) for s in range(40)]
    assert detect_overoptimization(points) == []


def test_agreement_signal_without_gold() -> None:
    # Ensemble std flat at 0.2 for 30 points, then growing 0.02 per point; proxy always rising.
    std = [0.2] * 30 + [0.2 + 0.02 * i for i in range(1, 31)]
    points = [EvalPoint(s, 0.5 * s, 0.1 * s, ensemble_std=x) for s, x in enumerate(std)]
    warnings = detect_overoptimization(points, window=5, std_tolerance=0.25)
    assert [w.kind for w in warnings] == ["proxy_up_agreement_down"]
    # Index 30 + k holds 0.2 + 0.02 (k + 1); for k >= 4 its 5-point mean is 0.2 + 0.02 (k - 1).
    # Above the floor by 25 % of 0.2 = 0.05 needs k - 1 > 2.5 -> k = 4, step 34.
    assert warnings[0].step == 34
    flat = [EvalPoint(s, 0.5 * s, 0.1 * s, ensemble_std=0.2) for s in range(60)]
    assert detect_overoptimization(flat) == []


def test_trailing_mean_matches_loop() -> None:
    x = np.random.default_rng(0).normal(size=17)
    for window in (1, 3, 5):
        expected = [np.mean(x[max(0, i - window + 1) : i + 1]) for i in range(len(x))]
        np.testing.assert_allclose(_trailing_mean(x, window), expected)


def test_drift_signals_and_warnings() -> None:
    points = [
        EvalPoint(0, 0.0, 0.0, length=20.0, distinct2=0.9),
        EvalPoint(10, 1.0, 1.0, length=25.0, distinct2=0.85),
        EvalPoint(20, 2.0, 2.0, length=32.0, distinct2=0.7),
        EvalPoint(30, 3.0, 3.0, length=40.0, distinct2=0.6),
    ]
    # Ratios 25/20 = 1.25, 32/20 = 1.6, 40/20 = 2; distinct-2 changes -0.05, -0.2, -0.3.
    signals = drift_signals(points)
    assert [s["length_ratio"] for s in signals] == pytest.approx([1.0, 1.25, 1.6, 2.0])
    assert [s["distinct2_change"] for s in signals] == pytest.approx([0.0, -0.05, -0.2, -0.3])
    warnings = detect_drift(points, length_ratio=1.5, distinct2_drop=0.15)
    assert [(w.step, w.kind) for w in warnings] == [(20, "length_drift"), (20, "repetition_drift")]
    shrinking = [EvalPoint(0, 0.0, 0.0, length=30.0), EvalPoint(1, 1.0, 1.0, length=10.0)]
    assert [w.kind for w in detect_drift(shrinking)] == ["length_drift"]


def test_best_checkpoint() -> None:
    points = [
        EvalPoint(0, 0.0, 1.0, gold=0.1, ensemble_std=0.0),
        EvalPoint(1, 1.0, 2.0, gold=0.5, ensemble_std=0.5),
        EvalPoint(2, 2.0, 3.0, gold=0.4, ensemble_std=1.8),
    ]
    assert best_checkpoint(points, "gold").step == 1
    # proxy - std: 1.0, 1.5, 1.2 -> step 1; with k = 0.5: 1.0, 1.75, 2.1 -> step 2.
    assert best_checkpoint(points, "conservative_proxy").step == 1
    assert best_checkpoint(points, "conservative_proxy", k=0.5).step == 2
    assert best_checkpoint(points, "proxy").step == 2
    no_gold = [EvalPoint(p.step, p.kl, p.proxy, ensemble_std=p.ensemble_std) for p in points]
    assert best_checkpoint(no_gold).step == 1  # auto -> conservative proxy
    with pytest.raises(ValueError):
        best_checkpoint(no_gold, "gold")
    with pytest.raises(ValueError):
        best_checkpoint(points, "vibes")


@pytest.mark.parametrize(
    ("form", "alpha", "beta", "peak_kl"),
    [
        ("bon", 1.0, 0.1, 25.0),  # d* = alpha / (2 beta) = 5 -> KL 25
        ("rl", 1.0, 0.3, math.exp(2 * (1 / 0.3 - 1))),  # d* = exp(alpha / beta - 1) = 10.31 -> KL 106.3
    ],
)
def test_gao_fit_recovers_noiseless_curves(form: str, alpha: float, beta: float, peak_kl: float) -> None:
    kl = np.linspace(0, 60, 40)
    d = np.sqrt(kl)
    shape = d * (alpha - beta * d) if form == "bon" else d * (alpha - beta * np.log(np.where(d > 0, d, 1)))
    fit = gao_fit(kl, 0.2 + shape, form=form)
    assert (fit.alpha, fit.beta, fit.offset) == pytest.approx((alpha, beta, 0.2), abs=1e-8)
    assert fit.peak_kl == pytest.approx(peak_kl)
    assert fit.rmse < 1e-8
    np.testing.assert_allclose(fit.predict(kl), 0.2 + shape, atol=1e-8)


def test_hacking_summary_is_json_ready() -> None:
    points, _ = _gao_run(0)
    summary = json.loads(json.dumps(hacking_summary(points)))
    assert len(summary["points"]) == len(points)
    assert summary["best"]["by"] == "gold"
    assert any(w["kind"] == "proxy_up_gold_down" for w in summary["warnings"])


def test_eval_point_validation() -> None:
    with pytest.raises(ValueError):
        EvalPoint(0, math.nan, 0.0)
    with pytest.raises(ValueError):
        EvalPoint(0, 0.0, 0.0, ensemble_std=-1.0)
