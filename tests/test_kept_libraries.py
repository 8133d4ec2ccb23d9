"""Kept libraries in place of hand-written code, each checked against the numbers of the code it
replaced (kept below, trimmed, as the reference): Krippendorff's alpha (`krippendorff`),
Bradley-Terry aggregation (`choix`), the bootstrap interval and the Wilson interval (`scipy.stats`),
learning-rate schedules (`transformers`), HTTP retries (`tenacity`)."""

from __future__ import annotations

import math
import random
from collections.abc import Hashable, Sequence

import numpy as np
import pytest
import torch

from rlhfkit.eval.winrate import wilson_interval, win_rate_from_outcomes
from rlhfkit.feedback.aggregate import bradley_terry
from rlhfkit.feedback.agreement import krippendorff_alpha
from rlhfkit.train.optim import make_schedule

# ---- the replaced implementations (from main before this change) ----------------------------------


def old_alpha(units: Sequence[Sequence[Hashable]], metric: str) -> float | None:
    """Coincidence matrix and difference functions (Krippendorff 2011), as rlhfkit computed them."""
    pairable = [u for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u})
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in pairable:
        counts = np.zeros(len(values))
        for v in unit:
            counts[index[v]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    n_c = o.sum(axis=1)
    v = np.asarray(values, dtype=float)
    if metric == "nominal":
        d2 = 1.0 - np.eye(len(values))
    elif metric == "interval":
        d2 = (v[:, None] - v[None, :]) ** 2
    elif metric == "ratio":
        d2 = ((v[:, None] - v[None, :]) / (v[:, None] + v[None, :])) ** 2
    else:  # ordinal
        cum = np.concatenate([[0.0], np.cumsum(n_c)])
        c, k = np.arange(len(v))[:, None], np.arange(len(v))[None, :]
        d2 = (cum[np.maximum(c, k) + 1] - cum[np.minimum(c, k)] - (n_c[c] + n_c[k]) / 2.0) ** 2
    expected = float((np.outer(n_c, n_c) * d2).sum())
    return None if expected == 0 else float(1.0 - (n_c.sum() - 1.0) * float((o * d2).sum()) / expected)


def old_bradley_terry(wins: np.ndarray, prior: float = 1.0) -> np.ndarray:
    """Hunter (2004) MM iterations with `prior` / 2 virtual wins each way."""
    size = wins.shape[0]
    w = wins + (prior / 2.0) * (1.0 - np.eye(size))
    np.fill_diagonal(w, 0.0)
    total, games, p = w.sum(axis=1), w + w.T, np.ones(size)
    for _ in range(10_000):
        new = total / (games / (p[:, None] + p[None, :])).sum(axis=1)
        new /= np.exp(np.log(new).mean())
        done = np.max(np.abs(np.log(new) - np.log(p))) < 1e-10
        p = new
        if done:
            break
    return np.log(p) - np.log(p).mean()


def old_schedule(name: str, step: int, warmup: int, total: int) -> float:
    """rlhfkit's LambdaLR factors: warm-up (s + 1) / (w + 1), then cosine to 10%, linear to 0, or 1."""
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return {"cosine": 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress)), "linear": max(0.0, 1.0 - progress)}.get(
        name, 1.0
    )


def old_bootstrap(outcomes: np.ndarray, confidence: float, n_boot: int, seed: int) -> tuple[float, float]:
    idx = np.random.default_rng(seed).integers(0, len(outcomes), size=(n_boot, len(outcomes)))
    tail = (1.0 - confidence) / 2.0 * 100.0
    low, high = np.percentile(outcomes[idx].mean(axis=1), [tail, 100.0 - tail])
    return float(low), float(high)


# ---- the checks ---------------------------------------------------------------------------------


@pytest.mark.parametrize("metric", ["nominal", "ordinal", "interval", "ratio"])
def test_krippendorff_package_gives_the_same_alpha(metric: str) -> None:
    rng = random.Random(0)
    for _ in range(20):
        units = [[rng.randint(1, 5) for _ in range(rng.randint(1, 4))] for _ in range(rng.randint(2, 15))]
        want = old_alpha(units, metric)
        got = krippendorff_alpha(units, metric)
        assert (got is None) == (want is None)
        if want is not None:
            assert got == pytest.approx(want, abs=1e-9)


def test_choix_gives_the_same_bradley_terry_strengths() -> None:
    rng = np.random.default_rng(0)
    for size in (2, 3, 5):
        for _ in range(10):
            wins = rng.integers(0, 6, size=(size, size)).astype(float) + 0.5 * rng.integers(0, 2, size=(size, size))
            np.fill_diagonal(wins, 0.0)
            np.testing.assert_allclose(bradley_terry(wins), old_bradley_terry(wins), atol=1e-7)


@pytest.mark.parametrize("name", ["cosine", "linear", "constant"])
@pytest.mark.parametrize(("warmup", "total"), [(0, 10), (3, 10), (10, 50), (5, 5)])
def test_transformers_schedules_give_the_same_learning_rates(name: str, warmup: int, total: int) -> None:
    opt = torch.optim.AdamW([torch.nn.Parameter(torch.zeros(2))], lr=2.0)
    sched = make_schedule(opt, name, warmup, total)
    got = []
    for _ in range(total):
        got.append(opt.param_groups[0]["lr"])
        opt.step()
        sched.step()
    assert got == pytest.approx([2.0 * old_schedule(name, s, warmup, total) for s in range(total)], abs=1e-12)


def test_scipy_bootstrap_interval_matches_the_hand_written_one_within_resampling_noise() -> None:
    outcomes = np.array([1.0] * 30 + [0.0] * 14 + [0.5] * 6)
    got = win_rate_from_outcomes(outcomes, ci="bootstrap", n_boot=4000, seed=1)
    low, high = old_bootstrap(outcomes, 0.95, 4000, seed=1)
    # Both are percentiles of 4000 resampled means (sd of the mean 0.066): they differ only in the draws.
    assert abs(got.ci_low - low) < 0.02 and abs(got.ci_high - high) < 0.02
    assert win_rate_from_outcomes([1.0] * 8, ci="bootstrap").ci_low == 1.0  # a constant sample: the point


def test_wilson_stays_hand_written_and_agrees_with_scipy_on_whole_counts() -> None:
    from scipy.stats import binomtest

    for k, n in [(0, 10), (3, 10), (7, 9), (50, 50), (12, 40)]:
        ci = binomtest(k, n).proportion_ci(confidence_level=0.95, method="wilson")
        assert wilson_interval(k, n) == pytest.approx((ci.low, ci.high), abs=1e-12)


def test_tenacity_retries_with_the_same_waits(monkeypatch: pytest.MonkeyPatch) -> None:
    import time

    from rlhfkit.rollout.rewards import HTTPReward, RewardError, TransientError

    waits: list[float] = []
    monkeypatch.setattr(time, "sleep", waits.append)  # tenacity's default sleep calls time.sleep
    source = HTTPReward("http://example.invalid", retries=3, backoff=0.5)
    calls: list[int] = []

    def failing(payload: dict) -> dict:
        calls.append(1)
        raise TransientError("HTTP 503")

    monkeypatch.setattr(source, "_attempt", failing)
    with pytest.raises(RewardError, match=r"failed after 4 attempts \(last error: HTTP 503\)"):
        source(["p"], ["r"])
    assert len(calls) == 4 and waits == [0.5, 1.0, 2.0]  # backoff * 2**(n - 1), as before
