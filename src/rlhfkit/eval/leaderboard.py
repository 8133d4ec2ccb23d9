"""A leaderboard of checkpoints from pairwise battles: Bradley-Terry MLE or online Elo, bootstrap CIs.

This follows Chatbot Arena (Chiang et al. 2024, "Chatbot Arena: An Open Platform for Evaluating LLMs
by Human Preference", Sec. 4 and App.): the Bradley-Terry model

    P(a beats b) = 1 / (1 + base^((R_b - R_a) / scale))

is fitted by logistic regression without intercept on a design matrix with +1 in model a's column
and -1 in model b's; a tie counts as half a win for each side. Ratings are put on the Elo scale
(``scale = 400``, ``base = 10``, mean ``1000``). A tiny L2 penalty (as sklearn's default C = 1e6 in
Arena's notebook) picks the mean-zero solution among the shift-equivalent ones and keeps the ratings
finite when a model won every battle. Confidence intervals are percentiles of ratings refitted on
battles resampled with replacement.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from typing import Any, TypeAlias

import numpy as np

from rlhfkit.data.records import Choice
from rlhfkit.eval.outcomes import CHOICE_OUTCOME


@dataclass(frozen=True)
class Battle:
    """One pairwise comparison between two models (checkpoints) on one prompt."""

    model_a: str
    """Name of the first model."""
    model_b: str
    """Name of the second model."""
    winner: Choice
    """"a", "b" or "tie"."""

    def __post_init__(self) -> None:
        if self.model_a == self.model_b:
            raise ValueError(f"a battle needs two different models, got {self.model_a!r} twice")
        if self.winner not in CHOICE_OUTCOME:
            raise ValueError(f"winner must be 'a', 'b' or 'tie', got {self.winner!r}")


@dataclass(frozen=True)
class LeaderboardRow:
    """One model's rating with its bootstrap confidence interval."""

    name: str
    """Model (checkpoint) name."""
    rating: float
    """Rating fitted on all battles (Elo scale)."""
    ci_low: float
    """Lower bootstrap percentile of the rating."""
    ci_high: float
    """Upper bootstrap percentile of the rating."""
    n_battles: int
    """Battles the model took part in."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``eval.json`` and the report."""
        return asdict(self)


@dataclass(frozen=True)
class _Encoded:
    """Battles as index arrays, in battle order."""

    names: list[str]
    """Model names; indices below point into this list."""
    a: np.ndarray
    """``(N,)`` index of model a of each battle."""
    b: np.ndarray
    """``(N,)`` index of model b of each battle."""
    y: np.ndarray
    """``(N,)`` outcome for a: 1 win, 1/2 tie, 0 loss."""


@dataclass(frozen=True)
class _Pairs:
    """Battles grouped by ordered pair (a, b): the likelihood only depends on these sums."""

    a: np.ndarray
    """``(P,)`` index of model a of each distinct pair."""
    b: np.ndarray
    """``(P,)`` index of model b."""
    count: np.ndarray
    """``(P,)`` battles between a and b (in that order)."""
    score: np.ndarray
    """``(P,)`` sum of a's outcomes (wins plus half the ties)."""


def _encode(battles: Sequence[Battle], names: list[str] | None = None) -> _Encoded:
    if names is None:
        names = sorted({m for bt in battles for m in (bt.model_a, bt.model_b)})
    index = {name: i for i, name in enumerate(names)}
    a = np.array([index[bt.model_a] for bt in battles], dtype=int)
    b = np.array([index[bt.model_b] for bt in battles], dtype=int)
    y = np.array([CHOICE_OUTCOME[bt.winner] for bt in battles], dtype=float)
    return _Encoded(names, a, b, y)


def _group(enc: _Encoded) -> _Pairs:
    """Sum outcomes per ordered pair, so each Newton step costs O(pairs), not O(battles)."""
    m = len(enc.names)
    keys, inverse = np.unique(enc.a * m + enc.b, return_inverse=True)
    count = np.bincount(inverse, minlength=len(keys)).astype(float)
    score = np.bincount(inverse, weights=enc.y, minlength=len(keys))
    return _Pairs(keys // m, keys % m, count, score)


def win_probability(rating_a: float, rating_b: float, *, scale: float = 400.0, base: float = 10.0) -> float:
    """P(a beats b) under Bradley-Terry on the Elo scale: ``1 / (1 + base^((R_b - R_a) / scale))``."""
    return 1.0 / (1.0 + base ** ((rating_b - rating_a) / scale))


def _bt_objective(beta: np.ndarray, pairs: _Pairs, c: float, l2: float) -> float:
    """Negative log-likelihood plus ``l2/2 |beta|^2``; ``c = ln(base)`` turns beta into log-odds."""
    margin = c * (beta[pairs.a] - beta[pairs.b])
    # -log sigmoid(m) = logaddexp(0, -m): stable for large |m| (a model that always wins).
    nll = pairs.score * np.logaddexp(0.0, -margin) + (pairs.count - pairs.score) * np.logaddexp(0.0, margin)
    return float(nll.sum() + 0.5 * l2 * beta @ beta)


def _bt_beta(pairs: _Pairs, m: int, *, base: float, l2: float, max_iter: int, tol: float) -> np.ndarray:
    """Newton's method with backtracking on the (strictly convex, thanks to ``l2``) objective.

    Per pair k with n_k battles and score s_k: gradient ``c * sum_k (n_k p_k - s_k)(e_a - e_b)
    + l2 beta``; Hessian ``c^2 * sum_k n_k p_k (1 - p_k)(e_a - e_b)(e_a - e_b)^T + l2 I``.
    """
    c = math.log(base)
    beta = np.zeros(m)
    objective = _bt_objective(beta, pairs, c, l2)
    for _ in range(max_iter):
        p = 0.5 * (1.0 + np.tanh(0.5 * c * (beta[pairs.a] - beta[pairs.b])))
        r = c * (pairs.count * p - pairs.score)
        grad = np.bincount(pairs.a, r, m) - np.bincount(pairs.b, r, m) + l2 * beta
        w = c * c * pairs.count * p * (1.0 - p)
        hess = l2 * np.eye(m)
        np.add.at(hess, (pairs.a, pairs.a), w)
        np.add.at(hess, (pairs.b, pairs.b), w)
        np.add.at(hess, (pairs.a, pairs.b), -w)
        np.add.at(hess, (pairs.b, pairs.a), -w)
        step = np.linalg.solve(hess, grad)
        decrement = float(grad @ step)
        if decrement / 2.0 <= tol:
            break
        t = 1.0
        while t > 1e-12:
            candidate = beta - t * step
            value = _bt_objective(candidate, pairs, c, l2)
            if value <= objective - 0.25 * t * decrement:  # Armijo condition
                break
            t *= 0.5
        beta, objective = candidate, value
    return beta


def fit_bradley_terry(
    battles: Sequence[Battle],
    *,
    names: list[str] | None = None,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
    l2: float = 1e-6,
    max_iter: int = 200,
    tol: float = 1e-12,
) -> dict[str, float]:
    """Bradley-Terry maximum-likelihood ratings on the Elo scale (mean ``init_rating``).

    Ratings are ``init_rating + scale * beta`` where ``beta`` maximizes
    ``sum_k y_k log p_k + (1 - y_k) log(1 - p_k)`` with ``p_k = sigmoid(ln(base) (beta_a - beta_b))``
    and ``y_k`` = 1, 1/2, 0 for a win of a, a tie, a win of b.

    Hand-written (a damped Newton method), not `choix` as in `rlhfkit.feedback.aggregate`: the ratings
    carry a ridge penalty ``l2 ||beta||^2`` on the Elo scale, which keeps an unbeaten model finite
    without inventing battles, and choix regularizes by pseudo-comparisons instead; the two give
    different ratings whenever a model is unbeaten.
    """
    if not battles:
        raise ValueError("fit_bradley_terry needs at least one battle")
    enc = _encode(battles, names)
    beta = _bt_beta(_group(enc), len(enc.names), base=base, l2=l2, max_iter=max_iter, tol=tol)
    return {name: init_rating + scale * float(x) for name, x in zip(enc.names, beta, strict=True)}


def online_elo(
    battles: Sequence[Battle],
    *,
    names: list[str] | None = None,
    k: float = 4.0,
    scale: float = 400.0,
    base: float = 10.0,
    init_rating: float = 1000.0,
) -> dict[str, float]:
    """Sequential Elo: after each battle ``R_a += k (y - E_a)``, ``R_b -= k (y - E_a)``.

    ``E_a`` is :func:`win_probability`. The result depends on battle order; ``k = 4`` is Chatbot
    Arena's choice for many small updates. Prefer :func:`fit_bradley_terry` for a static set.
    """
    if not battles:
        raise ValueError("online_elo needs at least one battle")
    enc = _encode(battles, names)
    ratings = np.full(len(enc.names), init_rating)
    for a, b, y in zip(enc.a, enc.b, enc.y, strict=True):
        delta = k * (y - win_probability(ratings[a], ratings[b], scale=scale, base=base))
        ratings[a] += delta
        ratings[b] -= delta
    return {name: float(x) for name, x in zip(enc.names, ratings, strict=True)}


RatingFn: TypeAlias = Callable[..., dict[str, float]]

RATING_METHODS: dict[str, RatingFn] = {"bt": fit_bradley_terry, "elo": online_elo}
"""Rating methods for :func:`leaderboard` by name."""


def bootstrap_ratings(
    battles: Sequence[Battle],
    *,
    method: str = "bt",
    n_boot: int = 200,
    seed: int = 0,
    **fit_kwargs: Any,
) -> tuple[list[str], np.ndarray]:
    """Ratings refitted on ``n_boot`` resamples (with replacement) of the battles.

    Returns:
        ``(names, ratings)`` with ratings ``(n_boot, M)``; NaN where a model is absent from a
        resample (its rating would only reflect the L2 prior, not data).
    """
    if method not in RATING_METHODS:
        raise ValueError(f"unknown rating method {method!r}; known: {', '.join(RATING_METHODS)}")
    if n_boot < 1:
        raise ValueError(f"n_boot must be >= 1, got {n_boot}")
    fit = RATING_METHODS[method]
    names = sorted({m for bt in battles for m in (bt.model_a, bt.model_b)})
    rng = np.random.default_rng(seed)
    out = np.full((n_boot, len(names)), np.nan)
    for i in range(n_boot):
        sample = [battles[j] for j in rng.integers(0, len(battles), size=len(battles))]
        present = {m for bt in sample for m in (bt.model_a, bt.model_b)}
        ratings = fit(sample, names=names, **fit_kwargs)
        out[i] = [ratings[n] if n in present else np.nan for n in names]
    return names, out


def leaderboard(
    battles: Sequence[Battle],
    *,
    method: str = "bt",
    n_boot: int = 200,
    confidence: float = 0.95,
    seed: int = 0,
    **fit_kwargs: Any,
) -> list[LeaderboardRow]:
    """Ratings with percentile bootstrap intervals (2.5 / 97.5 at 95 %), best first."""
    if method not in RATING_METHODS:
        raise ValueError(f"unknown rating method {method!r}; known: {', '.join(RATING_METHODS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    if not battles:
        raise ValueError("leaderboard needs at least one battle")
    ratings = RATING_METHODS[method](battles, **fit_kwargs)
    names, boot = bootstrap_ratings(battles, method=method, n_boot=n_boot, seed=seed, **fit_kwargs)
    tail = (1.0 - confidence) / 2.0 * 100.0
    low = np.nanpercentile(boot, tail, axis=0)
    high = np.nanpercentile(boot, 100.0 - tail, axis=0)
    counts = dict.fromkeys(names, 0)
    for bt in battles:
        counts[bt.model_a] += 1
        counts[bt.model_b] += 1
    rows = [
        LeaderboardRow(name, ratings[name], float(lo), float(hi), counts[name])
        for name, lo, hi in zip(names, low, high, strict=True)
    ]
    return sorted(rows, key=lambda row: row.rating, reverse=True)
