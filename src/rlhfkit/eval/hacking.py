"""Reward-hacking signals over a run's evaluation points: over-optimization, disagreement, drift.

Optimizing a learned reward (the *proxy*) past a point lowers the true (*gold*) reward while the
proxy keeps rising: the over-optimization curve of Gao et al. 2022 ("Scaling Laws for Reward Model
Overoptimization"), where gold, as a function of ``d = sqrt(KL(pi || pi_init))``, follows

    R_bon(d) = d (alpha - beta d)          (best-of-n, their eq. 1)
    R_rl(d)  = d (alpha - beta log d)      (RL, their eq. 2)

Without gold, disagreement of a reward-model ensemble on the policy's samples is the proxy's own
warning light (Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization"); their
conservative "worst-case / uncertainty-weighted" objective motivates ``proxy - k * std`` below.
Length and repetition drift are the two classic cheap hacks of text reward models.

Everything here is a pure function of a list of :class:`EvalPoint`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypedDict

import numpy as np


@dataclass(frozen=True)
class EvalPoint:
    """Evaluation of one policy checkpoint on a fixed prompt set (means over its samples)."""

    step: int
    """Training step of the checkpoint."""
    kl: float
    """KL(policy || initial policy), nats per sequence."""
    proxy: float
    """Mean reward-model score (the quantity being optimized)."""
    gold: float | None = None
    """Mean gold score, when a gold scorer exists."""
    ensemble_std: float | None = None
    """Mean over samples of the std of a reward-model ensemble's scores (disagreement)."""
    length: float | None = None
    """Mean response length in words."""
    distinct2: float | None = None
    """Mean distinct-2 of the responses (1 = no repeated bigram)."""

    def __post_init__(self) -> None:
        for name in ("kl", "proxy", "gold", "ensemble_std", "length", "distinct2"):
            value = getattr(self, name)
            if value is not None and not math.isfinite(value):
                raise ValueError(f"EvalPoint.{name} must be finite, got {value} at step {self.step}")
        if self.ensemble_std is not None and self.ensemble_std < 0:
            raise ValueError(f"EvalPoint.ensemble_std must be >= 0, got {self.ensemble_std}")

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in ``eval.json``."""
        return asdict(self)


@dataclass(frozen=True)
class HackingWarning:
    """A reward-hacking warning raised at the step where its condition first became true."""

    step: int
    """Step at which the condition started to hold."""
    kind: str
    """"proxy_up_gold_down", "proxy_up_agreement_down", "length_drift" or "repetition_drift"."""
    message: str
    """Human-readable explanation with the numbers."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used in ``eval.json``."""
        return asdict(self)


def _trailing_mean(x: np.ndarray, window: int) -> np.ndarray:
    """Mean of the last ``window`` values at each index (fewer at the start): ``(N,) -> (N,)``."""
    csum = np.concatenate([[0.0], np.cumsum(x)])
    idx = np.arange(len(x))
    start = np.maximum(0, idx + 1 - window)
    return (csum[idx + 1] - csum[start]) / (idx + 1 - start)


def _onsets(condition: np.ndarray) -> list[int]:
    """Indices where a boolean series turns from False to True (or starts True)."""
    previous = np.concatenate([[False], condition[:-1]])
    return [int(i) for i in np.flatnonzero(condition & ~previous)]


def _rising(values: np.ndarray, window: int) -> np.ndarray:
    """True where the mean of the last ``window`` values exceeds the mean of the ``window`` before."""
    smooth = _trailing_mean(values, window)
    out = np.zeros(len(values), dtype=bool)
    out[window:] = smooth[window:] > smooth[:-window]
    return out


def _gold_signal(points: list[EvalPoint], window: int, tolerance: float) -> list[HackingWarning]:
    """Proxy rising while smoothed gold sits more than ``tolerance`` below its running peak.

    The drop is measured as a share of ``max(|peak|, peak - lowest so far)`` so the test works for
    golds of any sign. Firing on a small drop of the *smoothed* gold (default 3 %) is what makes
    the warning come before gold loses 10 % of its peak.
    """
    pts = [p for p in points if p.gold is not None]
    if len(pts) <= window:
        return []
    proxy = np.array([p.proxy for p in pts])
    gold = _trailing_mean(np.array([p.gold for p in pts], dtype=float), window)
    peak = np.maximum.accumulate(gold)
    scale = np.maximum(np.maximum(np.abs(peak), peak - np.minimum.accumulate(gold)), 1e-12)
    drop = (peak - gold) / scale
    fire = _rising(proxy, window) & (drop > tolerance)
    return [
        HackingWarning(
            pts[i].step,
            "proxy_up_gold_down",
            f"proxy still rising ({proxy[i]:.3f}) while gold fell {100 * drop[i]:.1f}% below its "
            f"peak ({gold[i]:.3f} vs {peak[i]:.3f}, {window}-point means) at KL {pts[i].kl:.2f}",
        )
        for i in _onsets(fire)
    ]


def _agreement_signal(points: list[EvalPoint], window: int, std_tolerance: float) -> list[HackingWarning]:
    """Proxy rising while smoothed ensemble std grew ``std_tolerance`` (relative) above its minimum."""
    pts = [p for p in points if p.ensemble_std is not None]
    if len(pts) <= window:
        return []
    proxy = np.array([p.proxy for p in pts])
    std = _trailing_mean(np.array([p.ensemble_std for p in pts], dtype=float), window)
    floor = np.minimum.accumulate(std)
    rise = (std - floor) / np.maximum(floor, 1e-12)
    fire = _rising(proxy, window) & (rise > std_tolerance)
    return [
        HackingWarning(
            pts[i].step,
            "proxy_up_agreement_down",
            f"proxy still rising ({proxy[i]:.3f}) while reward-model ensemble disagreement rose "
            f"{100 * rise[i]:.0f}% above its minimum (std {std[i]:.3f} vs {floor[i]:.3f})",
        )
        for i in _onsets(fire)
    ]


def detect_overoptimization(
    points: Sequence[EvalPoint],
    *,
    window: int = 5,
    tolerance: float = 0.03,
    std_tolerance: float = 0.25,
) -> list[HackingWarning]:
    """Warnings where the proxy keeps rising while gold (or ensemble agreement) falls.

    Args:
        points: evaluation points, any order (sorted by step here).
        window: points per moving average; the proxy counts as rising when the mean of the last
            ``window`` points exceeds the mean of the ``window`` before.
        tolerance: gold drop below its smoothed running peak that fires, as a share of the peak.
        std_tolerance: relative rise of the smoothed ensemble std above its minimum that fires.
    """
    if window < 1:
        raise ValueError(f"window must be >= 1, got {window}")
    if tolerance < 0 or std_tolerance < 0:
        raise ValueError("tolerance and std_tolerance must be >= 0")
    ordered = sorted(points, key=lambda p: p.step)
    warnings = _gold_signal(ordered, window, tolerance) + _agreement_signal(ordered, window, std_tolerance)
    return sorted(warnings, key=lambda w: w.step)


class DriftSignal(TypedDict):
    """One evaluation point's drift relative to the first (see `drift_signals`)."""

    step: int
    length_ratio: float | None
    distinct2_change: float | None


def drift_signals(points: Sequence[EvalPoint]) -> list[DriftSignal]:
    """Per point: length ratio and distinct-2 change relative to the first point (None if unknown)."""
    ordered = sorted(points, key=lambda p: p.step)
    if not ordered:
        return []
    first = ordered[0]
    out: list[DriftSignal] = []
    for p in ordered:
        ratio = (
            p.length / first.length if p.length is not None and first.length is not None and first.length > 0 else None
        )
        change = p.distinct2 - first.distinct2 if p.distinct2 is not None and first.distinct2 is not None else None
        out.append({"step": p.step, "length_ratio": ratio, "distinct2_change": change})
    return out


def detect_drift(
    points: Sequence[EvalPoint], *, length_ratio: float = 1.5, distinct2_drop: float = 0.15
) -> list[HackingWarning]:
    """Warnings when mean length leaves ``[1/length_ratio, length_ratio]`` times the first point's,
    or mean distinct-2 falls more than ``distinct2_drop`` below it."""
    if length_ratio <= 1.0 or distinct2_drop <= 0.0:
        raise ValueError("length_ratio must be > 1 and distinct2_drop > 0")
    signals = drift_signals(points)
    steps = [int(s["step"]) for s in signals]
    ratios = np.array([s["length_ratio"] if s["length_ratio"] is not None else 1.0 for s in signals])
    changes = np.array([s["distinct2_change"] if s["distinct2_change"] is not None else 0.0 for s in signals])
    long_or_short = (ratios > length_ratio) | (ratios < 1.0 / length_ratio)
    repetitive = changes < -distinct2_drop
    warnings = [
        HackingWarning(steps[i], "length_drift", f"mean length is {ratios[i]:.2f}x the first evaluation's")
        for i in _onsets(long_or_short)
    ] + [
        HackingWarning(steps[i], "repetition_drift", f"distinct-2 fell by {-changes[i]:.2f} since the first evaluation")
        for i in _onsets(repetitive)
    ]
    return sorted(warnings, key=lambda w: w.step)


def _gold_key(p: EvalPoint, k: float) -> float:
    if p.gold is None:
        raise ValueError(f"best_checkpoint(by='gold') but step {p.step} has no gold score")
    return p.gold


def _conservative_key(p: EvalPoint, k: float) -> float:
    if p.ensemble_std is None:
        raise ValueError(f"best_checkpoint(by='conservative_proxy') but step {p.step} has no ensemble_std")
    return p.proxy - k * p.ensemble_std


def _proxy_key(p: EvalPoint, k: float) -> float:
    return p.proxy


SELECTION_KEYS: dict[str, Callable[[EvalPoint, float], float]] = {
    "gold": _gold_key,
    "conservative_proxy": _conservative_key,
    "proxy": _proxy_key,
}
"""How :func:`best_checkpoint` ranks points: by gold, by ``proxy - k * ensemble_std``, by proxy."""


def auto_selection(points: Sequence[EvalPoint]) -> str:
    """The best available criterion: gold if every point has it, else the conservative proxy if
    every point has an ensemble std, else the plain proxy."""
    if all(p.gold is not None for p in points):
        return "gold"
    if all(p.ensemble_std is not None for p in points):
        return "conservative_proxy"
    return "proxy"


def best_checkpoint(points: Sequence[EvalPoint], by: str = "auto", *, k: float = 1.0) -> EvalPoint:
    """The point with the highest score under ``by`` ("auto" or a key of :data:`SELECTION_KEYS`);
    the earliest step wins ties (less drift for the same score)."""
    if not points:
        raise ValueError("best_checkpoint needs at least one point")
    criterion = auto_selection(points) if by == "auto" else by
    if criterion not in SELECTION_KEYS:
        raise ValueError(f"unknown selection {by!r}; known: auto, {', '.join(SELECTION_KEYS)}")
    key = SELECTION_KEYS[criterion]
    return max(sorted(points, key=lambda p: p.step), key=lambda p: key(p, k))


def _rl_features(d: np.ndarray) -> np.ndarray:
    """Columns of ``d (alpha - beta log d)``: ``[d, -d log d]`` (``d log d -> 0`` at 0)."""
    d_log_d = np.where(d > 0, d * np.log(np.where(d > 0, d, 1.0)), 0.0)
    return np.stack([d, -d_log_d], axis=1)


def _bon_features(d: np.ndarray) -> np.ndarray:
    """Columns of ``d (alpha - beta d)``: ``[d, -d^2]``."""
    return np.stack([d, -d * d], axis=1)


def _rl_peak(alpha: float, beta: float) -> float:
    """argmax_d of ``d (alpha - beta log d)``: ``alpha - beta log d - beta = 0``."""
    return math.exp(alpha / beta - 1.0) if beta > 0 else math.inf


def _bon_peak(alpha: float, beta: float) -> float:
    """argmax_d of ``d (alpha - beta d)``: ``d = alpha / (2 beta)``."""
    return alpha / (2.0 * beta) if beta > 0 else math.inf


GAO_FORMS: dict[str, tuple[Callable[[np.ndarray], np.ndarray], Callable[[float, float], float]]] = {
    "rl": (_rl_features, _rl_peak),
    "bon": (_bon_features, _bon_peak),
}
"""Gao et al. 2022 functional forms: (feature columns of d, argmax in d)."""


@dataclass(frozen=True)
class GaoFit:
    """Least-squares fit of ``gold = offset + R(sqrt(KL))`` for one Gao et al. form."""

    form: str
    """"rl" or "bon"."""
    alpha: float
    """Linear coefficient."""
    beta: float
    """Over-optimization coefficient (> 0 means gold eventually falls)."""
    offset: float
    """Gold at KL = 0 (Gao et al. subtract it so that R(0) = 0; here it is fitted)."""
    rmse: float
    """Root-mean-square residual of the fit."""
    peak_kl: float
    """KL at which the fitted gold peaks (inf if it never does)."""

    def predict(self, kl: Sequence[float] | np.ndarray) -> np.ndarray:
        """Fitted gold at the given KLs: ``(N,) -> (N,)``."""
        d = np.sqrt(np.maximum(np.asarray(kl, dtype=float), 0.0))
        return self.offset + GAO_FORMS[self.form][0](d) @ np.array([self.alpha, self.beta])


def gao_fit(kl: Sequence[float], gold: Sequence[float], form: str = "rl") -> GaoFit:
    """Fit a Gao et al. 2022 form to (KL, gold) pairs: linear least squares in (offset, alpha, beta),
    since both forms are linear in their coefficients once ``d = sqrt(KL)`` is fixed."""
    if form not in GAO_FORMS:
        raise ValueError(f"unknown form {form!r}; known: {', '.join(GAO_FORMS)}")
    x = np.asarray(kl, dtype=float)
    y = np.asarray(gold, dtype=float)
    if x.shape != y.shape or len(x) < 3:
        raise ValueError("gao_fit needs at least 3 (kl, gold) pairs of equal length")
    features, peak = GAO_FORMS[form]
    d = np.sqrt(np.maximum(x, 0.0))  # KL estimators can dip slightly below 0
    design = np.column_stack([np.ones_like(d), features(d)])
    coef, *_ = np.linalg.lstsq(design, y, rcond=None)
    rmse = float(np.sqrt(np.mean((design @ coef - y) ** 2)))
    offset, alpha, beta = (float(c) for c in coef)
    return GaoFit(form, alpha, beta, offset, rmse, peak(alpha, beta) ** 2)


def describe_fit(fit: GaoFit, max_kl: float) -> str:
    """What the fit says about over-optimization, in one sentence for the report (Gao et al. 2022:
    gold peaks where the fitted curve turns; beta <= 0 means it never turns)."""
    if not math.isfinite(fit.peak_kl) or fit.beta <= 0:
        return (
            f"no peak: the fitted gold keeps rising with KL (beta = {fit.beta:.3g} <= 0), so no over-optimization "
            f"is visible up to KL {max_kl:.2f}"
        )
    if fit.peak_kl > max_kl:
        return f"fitted peak at KL \u2248 {fit.peak_kl:.2f}, beyond the largest KL measured ({max_kl:.2f}): not reached yet"
    return f"fitted peak at KL \u2248 {fit.peak_kl:.2f}: past it, optimizing the proxy lowers gold"


def hacking_summary(
    points: Sequence[EvalPoint],
    *,
    window: int = 5,
    tolerance: float = 0.03,
    std_tolerance: float = 0.25,
    length_ratio: float = 1.5,
    distinct2_drop: float = 0.15,
) -> dict[str, Any]:
    """The ``"hacking"`` object of ``eval.json``: points, all warnings, and the best checkpoint."""
    warnings = detect_overoptimization(
        points, window=window, tolerance=tolerance, std_tolerance=std_tolerance
    ) + detect_drift(points, length_ratio=length_ratio, distinct2_drop=distinct2_drop)
    best = best_checkpoint(points) if points else None
    return {
        "points": [p.to_dict() for p in sorted(points, key=lambda p: p.step)],
        "warnings": [w.to_dict() for w in sorted(warnings, key=lambda w: w.step)],
        "best": None if best is None else {"step": best.step, "by": auto_selection(points)},
    }
