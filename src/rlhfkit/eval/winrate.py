"""Win rate of a policy against a baseline, with confidence intervals, and pairwise judges.

A comparison of the policy's response with the baseline's on the same prompt is a win (1), a loss
(0) or a tie (1/2, so ties neither help nor hurt). The win rate is the mean outcome; its interval is
Wilson's score interval (Wilson 1927) or a percentile bootstrap over prompts.

Who judges is pluggable and batch-first:

* a *score function* ``score(prompts, responses) -> list[float]`` (a reward model, a gold scorer via
  :func:`score_fn_from_gold`): :func:`score_win_rate` scores both sides in two batched calls;
* a *judge* ``judge(prompt, response_a, response_b) -> P(a better)``: :func:`judge_win_rate`;
* people in the feedback app, whose choices "a" / "b" / "tie" go to :func:`win_rate_from_choices`.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import asdict, dataclass
from statistics import NormalDist
from typing import Any, Literal, TypeAlias

import numpy as np

from rlhfkit.data.records import Choice
from rlhfkit.eval.gold import GoldScorer
from rlhfkit.eval.outcomes import CHOICE_OUTCOME

ScoreFn: TypeAlias = Callable[[list[str], list[str]], list[float]]
"""``score(prompts, responses) -> scores``, one score per (prompt, response), higher is better."""

Judge: TypeAlias = Callable[[str, str, str], float]
"""``judge(prompt, response_a, response_b) -> P(a is better)`` in ``[0, 1]``; 0.5 is a tie."""


@dataclass(frozen=True)
class WinRate:
    """A win rate with its confidence interval; ``win_rate = (wins + ties / 2) / n``."""

    win_rate: float
    """Mean outcome (win 1, tie 1/2, loss 0)."""
    wins: int
    """Comparisons the policy won."""
    losses: int
    """Comparisons the policy lost."""
    ties: int
    """Comparisons judged equal."""
    n: int
    """Number of comparisons."""
    ci_low: float
    """Lower end of the confidence interval."""
    ci_high: float
    """Upper end of the confidence interval."""

    def to_dict(self) -> dict[str, Any]:
        """The JSON form used by ``eval.json`` and the report."""
        return asdict(self)


def wilson_interval(successes: float, n: int, confidence: float = 0.95) -> tuple[float, float]:
    """Wilson score interval for a proportion ``successes / n`` (Wilson 1927).

    ``(p + z^2/2n +- z sqrt(p(1-p)/n + z^2/4n^2)) / (1 + z^2/n)`` with ``z`` the two-sided normal
    quantile. Unlike the Wald interval it stays inside [0, 1] and is sensible at p = 0 or 1. Ties
    make ``successes`` a half-integer, which the formula accepts as is.

    Hand-written, not ``scipy.stats.binomtest(k, n).proportion_ci(method="wilson")``: that takes an
    integer k, and a tie counts half a win here. For whole k the two agree (tests/test_kept_libraries.py).
    """
    if n <= 0:
        raise ValueError(f"wilson_interval needs n > 0, got {n}")
    if not 0.0 <= successes <= n:
        raise ValueError(f"successes must be in [0, n={n}], got {successes}")
    z = NormalDist().inv_cdf(0.5 + confidence / 2.0)
    p = successes / n
    denom = 1.0 + z * z / n
    center = (p + z * z / (2.0 * n)) / denom
    half = z * math.sqrt(p * (1.0 - p) / n + z * z / (4.0 * n * n)) / denom
    return max(0.0, center - half), min(1.0, center + half)


def _wilson_ci(outcomes: np.ndarray, confidence: float, n_boot: int, rng: np.random.Generator) -> tuple[float, float]:
    return wilson_interval(float(outcomes.sum()), len(outcomes), confidence)


def _bootstrap_ci(
    outcomes: np.ndarray, confidence: float, n_boot: int, rng: np.random.Generator
) -> tuple[float, float]:
    """Percentile bootstrap of the mean outcome (``scipy.stats.bootstrap``, ``n_boot`` resamples)."""
    from scipy.stats import bootstrap

    if len(outcomes) < 2 or np.all(outcomes == outcomes[0]):  # nothing to resample: the interval is the point
        return float(outcomes.mean()), float(outcomes.mean())
    result = bootstrap(
        (outcomes,), np.mean, confidence_level=confidence, n_resamples=n_boot, method="percentile", rng=rng
    )
    return float(result.confidence_interval.low), float(result.confidence_interval.high)


CiMethod: TypeAlias = Literal["wilson", "bootstrap"]
"""Confidence interval methods (the keys of `CI_METHODS`), for config fields."""

CI_METHODS: dict[str, Callable[[np.ndarray, float, int, np.random.Generator], tuple[float, float]]] = {
    "wilson": _wilson_ci,
    "bootstrap": _bootstrap_ci,
}
"""Confidence-interval methods for :func:`win_rate_from_outcomes`."""


def win_rate_from_outcomes(
    outcomes: Sequence[float] | np.ndarray,
    *,
    ci: str = "wilson",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> WinRate:
    """Win rate from per-comparison outcomes, each 1 (win), 0 (loss) or 0.5 (tie)."""
    if ci not in CI_METHODS:
        raise ValueError(f"unknown ci method {ci!r}; known: {', '.join(CI_METHODS)}")
    if not 0.0 < confidence < 1.0:
        raise ValueError(f"confidence must be in (0, 1), got {confidence}")
    values = np.asarray(outcomes, dtype=float)
    if values.ndim != 1 or len(values) == 0:
        raise ValueError("win rate needs a non-empty 1-D sequence of outcomes")
    if not np.isin(values, (0.0, 0.5, 1.0)).all():
        raise ValueError("outcomes must be 1 (win), 0 (loss) or 0.5 (tie)")
    low, high = CI_METHODS[ci](values, confidence, n_boot, np.random.default_rng(seed))
    return WinRate(
        win_rate=float(values.mean()),
        wins=int((values == 1.0).sum()),
        losses=int((values == 0.0).sum()),
        ties=int((values == 0.5).sum()),
        n=len(values),
        ci_low=low,
        ci_high=high,
    )


def win_rate(
    scores_policy: Sequence[float],
    scores_baseline: Sequence[float],
    *,
    tie_tolerance: float = 0.0,
    ci: str = "wilson",
    confidence: float = 0.95,
    n_boot: int = 1000,
    seed: int = 0,
) -> WinRate:
    """Win rate of paired scores: comparison i is the policy's and the baseline's response to prompt i.

    Scores closer than ``tie_tolerance`` are a tie (a reward model's float noise is not a preference).
    """
    policy = np.asarray(scores_policy, dtype=float)
    baseline = np.asarray(scores_baseline, dtype=float)
    if policy.shape != baseline.shape:
        raise ValueError(f"{len(policy)} policy scores but {len(baseline)} baseline scores")
    if not (np.isfinite(policy).all() and np.isfinite(baseline).all()):
        raise ValueError("scores must be finite")
    if tie_tolerance < 0:
        raise ValueError(f"tie_tolerance must be >= 0, got {tie_tolerance}")
    diff = policy - baseline
    outcomes = np.where(np.abs(diff) <= tie_tolerance, 0.5, (diff > 0).astype(float))
    return win_rate_from_outcomes(outcomes, ci=ci, confidence=confidence, n_boot=n_boot, seed=seed)


def win_rate_from_choices(choices: Sequence[Choice], **kwargs: Any) -> WinRate:
    """Win rate of side "a" (the policy) from pairwise choices "a" / "b" / "tie", e.g. people's.

    Keyword arguments go to :func:`win_rate_from_outcomes`. Callers that showed the policy on a
    random side must map choices back to "a" = policy first.
    """
    unknown = {c for c in choices if c not in CHOICE_OUTCOME}
    if unknown:
        raise ValueError(f"choices must be 'a', 'b' or 'tie', got {sorted(unknown)}")
    return win_rate_from_outcomes([CHOICE_OUTCOME[c] for c in choices], **kwargs)


def score_fn_from_gold(gold: GoldScorer) -> ScoreFn:
    """A batch score function from a per-example gold scorer."""

    def score(prompts: list[str], responses: list[str]) -> list[float]:
        return [float(gold(p, r)) for p, r in zip(prompts, responses, strict=True)]

    return score


def _preference(diff: float, temperature: float) -> float:
    """P(a better) from a score difference: a hard step at temperature 0, else sigmoid(diff / T)."""
    if temperature == 0.0:
        return 0.5 if diff == 0.0 else float(diff > 0.0)
    return 0.5 * (1.0 + math.tanh(diff / (2.0 * temperature)))  # = sigmoid(diff / T), overflow-safe


def judge_from_scores(score_fn: ScoreFn, *, temperature: float = 0.0) -> Judge:
    """A judge from a score function: Bradley-Terry ``P(a) = sigmoid((s(a) - s(b)) / T)``."""
    if temperature < 0:
        raise ValueError(f"temperature must be >= 0, got {temperature}")

    def judge(prompt: str, response_a: str, response_b: str) -> float:
        s_a, s_b = score_fn([prompt, prompt], [response_a, response_b])
        return _preference(float(s_a) - float(s_b), temperature)

    return judge


def judge_from_gold(gold: GoldScorer, *, temperature: float = 0.0) -> Judge:
    """A judge from a gold scorer (see :func:`judge_from_scores`)."""
    return judge_from_scores(score_fn_from_gold(gold), temperature=temperature)


def score_win_rate(
    prompts: Sequence[str],
    policy_responses: Sequence[str],
    baseline_responses: Sequence[str],
    score_fn: ScoreFn,
    **kwargs: Any,
) -> WinRate:
    """Win rate judged by a score function, in two batched calls; ``kwargs`` go to :func:`win_rate`."""
    if not len(prompts) == len(policy_responses) == len(baseline_responses):
        raise ValueError("prompts, policy_responses and baseline_responses differ in length")
    prompts = list(prompts)
    return win_rate(score_fn(prompts, list(policy_responses)), score_fn(prompts, list(baseline_responses)), **kwargs)


def judge_win_rate(
    prompts: Sequence[str],
    policy_responses: Sequence[str],
    baseline_responses: Sequence[str],
    judge: Judge,
    *,
    tie_band: float = 0.0,
    **kwargs: Any,
) -> WinRate:
    """Win rate judged pair by pair: ``P(policy better)`` above ``0.5 + tie_band`` is a win, below
    ``0.5 - tie_band`` a loss, a tie otherwise; ``kwargs`` go to :func:`win_rate_from_outcomes`."""
    if not len(prompts) == len(policy_responses) == len(baseline_responses):
        raise ValueError("prompts, policy_responses and baseline_responses differ in length")
    if not 0.0 <= tie_band < 0.5:
        raise ValueError(f"tie_band must be in [0, 0.5), got {tie_band}")
    outcomes = []
    for prompt, a, b in zip(prompts, policy_responses, baseline_responses, strict=True):
        p = judge(prompt, a, b)
        outcomes.append(1.0 if p > 0.5 + tie_band else 0.0 if p < 0.5 - tie_band else 0.5)
    return win_rate_from_outcomes(outcomes, **kwargs)
