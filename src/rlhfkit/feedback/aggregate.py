"""Aggregating several annotators' answers on one item into one label.

Two aggregators, chosen by name (`AGGREGATORS`):

* ``majority`` -- pairwise: the strict plurality of choices; ranking: Copeland's method (order by
  pairwise majority wins, ties broken by mean position); Likert: the median rating (the value a
  majority rates at least as high and a majority at most as high).
* ``bradley-terry`` -- pairwise and ranking: a Bradley-Terry model (Bradley & Terry 1952) fitted per
  item to every pairwise preference the answers imply, by the MM algorithm of Hunter (2004, eq. 3);
  the score gap of a pair is its margin (log-odds of preferring chosen). Likert: the mean rating
  (the maximum-likelihood location under Gaussian rater noise).

Every function works on canonical payloads (see `rlhfkit.feedback.tasks`) and response ids.
"""

from __future__ import annotations

import statistics
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any, cast

import numpy as np

from rlhfkit.feedback.agreement import strict_majority

BT_PRIOR = 1.0
"""Virtual comparisons per pair (split as half a win each way): keeps unanimous pairs finite."""


def bradley_terry(wins: np.ndarray, prior: float = BT_PRIOR, max_iter: int = 10_000, tol: float = 1e-10) -> np.ndarray:
    """Log-strengths (K,) of a Bradley-Terry model, centred to mean 0.

    `wins` (K, K): ``wins[i, j]`` = how often i was preferred to j (a tie adds 0.5 to each side).
    Model: P(i beats j) = p_i / (p_i + p_j), fitted by maximum likelihood with `choix` (Maystre &
    Grossglauser 2015, iterative Luce spectral ranking, which reaches the same maximum as Hunter's
    2004 MM algorithm it replaced); `prior` adds ``prior / 2`` wins each way to every pair, so a
    unanimous pair still has a finite gap.
    """
    import choix

    wins = np.asarray(wins, dtype=float)
    size = wins.shape[0]
    if wins.shape != (size, size):
        raise ValueError(f"wins must be square (K, K), got {wins.shape}")
    if size < 2:
        return np.zeros(size)
    w = wins + (prior / 2.0) * (1.0 - np.eye(size))
    np.fill_diagonal(w, 0.0)
    if not (w + w.T)[~np.eye(size, dtype=bool)].all():  # without a prior, an unplayed pair has no MLE
        raise ValueError("every pair needs a comparison (or a prior > 0) for the Bradley-Terry fit")
    scores = np.asarray(choix.ilsr_pairwise_dense(w, max_iter=max_iter, tol=tol), dtype=float)
    return scores - scores.mean()


@dataclass(frozen=True)
class PairOutcome:
    """Aggregated pairwise label of one item."""

    label: int | str | None
    """Winning response id, "tie", "both_bad", or None when annotators split evenly."""
    margin: float | None = None
    """Bradley-Terry score gap winner - loser (None for majority voting)."""


def _pair_wins(choices: Sequence[Any], refs: Sequence[int]) -> np.ndarray:
    index = {r: i for i, r in enumerate(refs)}
    wins = np.zeros((len(refs), len(refs)))
    for choice in choices:
        if choice == "tie":
            wins += 0.5 * (1.0 - np.eye(len(refs)))
        elif choice in index:
            winner = index[choice]
            for loser in range(len(refs)):
                if loser != winner:
                    wins[winner, loser] += 1.0
    return wins


def pairwise_majority(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> PairOutcome:
    label = strict_majority([p["choice"] for p in payloads])  # choices are response ids or outcome words
    return PairOutcome(label=cast("int | str | None", label))


def pairwise_bradley_terry(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> PairOutcome:
    """BT over the choices; "both bad" says nothing about which is better and is left out."""
    choices = [p["choice"] for p in payloads if p["choice"] != "both_bad"]
    if not choices:
        return PairOutcome(label="both_bad" if payloads else None)
    scores = bradley_terry(_pair_wins(choices, refs))
    gap = float(scores[0] - scores[1])
    if abs(gap) < 1e-9:
        return PairOutcome(label="tie", margin=0.0)
    winner = 0 if gap > 0 else 1
    return PairOutcome(label=refs[winner], margin=abs(gap))


def _ranking_wins(rankings: Sequence[Sequence[int]], refs: Sequence[int]) -> np.ndarray:
    index = {r: i for i, r in enumerate(refs)}
    wins = np.zeros((len(refs), len(refs)))
    for ranking in rankings:
        for a, better in enumerate(ranking):
            for worse in ranking[a + 1 :]:
                wins[index[better], index[worse]] += 1.0
    return wins


@dataclass(frozen=True)
class RankOutcome:
    """Aggregated ranking of one item."""

    order: tuple[int, ...]
    """Response ids, best first."""
    scores: dict[int, float] | None = None
    """Bradley-Terry log-strength per response (None for majority voting)."""


def ranking_majority(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> RankOutcome:
    """Copeland: +1 per opponent beaten by a majority of annotators, +0.5 per even split."""
    rankings = [p["ranking"] for p in payloads]
    wins = _ranking_wins(rankings, refs)
    copeland = (wins > wins.T).sum(axis=1) + 0.5 * ((wins == wins.T).sum(axis=1) - 1)
    mean_position = {r: statistics.mean(rk.index(r) for rk in rankings) for r in refs}
    order = sorted(range(len(refs)), key=lambda i: (-copeland[i], mean_position[refs[i]], i))
    return RankOutcome(order=tuple(refs[i] for i in order))


def ranking_bradley_terry(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> RankOutcome:
    scores = bradley_terry(_ranking_wins([p["ranking"] for p in payloads], refs))
    order = sorted(range(len(refs)), key=lambda i: (-scores[i], i))
    return RankOutcome(
        order=tuple(refs[i] for i in order), scores={refs[i]: float(scores[i]) for i in range(len(refs))}
    )


def _rating_table(payloads: Sequence[dict[str, Any]]) -> dict[str, dict[str, list[int]]]:
    table: dict[str, dict[str, list[int]]] = {}
    for p in payloads:
        for ref, per_scale in p["ratings"].items():
            for scale, value in per_scale.items():
                table.setdefault(ref, {}).setdefault(scale, []).append(value)
    return table


def likert_median(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per response and scale: the median rating."""
    return {
        int(ref): {s: float(statistics.median(v)) for s, v in scales.items()}
        for ref, scales in _rating_table(payloads).items()
    }


def likert_mean(payloads: Sequence[dict[str, Any]], refs: Sequence[int]) -> dict[int, dict[str, float]]:
    """Per response and scale: the mean rating."""
    return {
        int(ref): {s: float(statistics.fmean(v)) for s, v in scales.items()}
        for ref, scales in _rating_table(payloads).items()
    }


@dataclass(frozen=True)
class Aggregator:
    """One aggregation method per kind of answer."""

    pairwise: Callable[[Sequence[dict[str, Any]], Sequence[int]], PairOutcome]
    """(payloads, refs) -> PairOutcome."""
    ranking: Callable[[Sequence[dict[str, Any]], Sequence[int]], RankOutcome]
    """(payloads, refs) -> RankOutcome."""
    likert: Callable[[Sequence[dict[str, Any]], Sequence[int]], dict[int, dict[str, float]]]
    """(payloads, refs) -> {response id: {scale: value}}."""


AGGREGATORS: dict[str, Aggregator] = {
    "majority": Aggregator(pairwise_majority, ranking_majority, likert_median),
    "bradley-terry": Aggregator(pairwise_bradley_terry, ranking_bradley_terry, likert_mean),
}
"""Aggregation name -> methods. ``raw`` (one record per judgment) is handled by the exporter."""
