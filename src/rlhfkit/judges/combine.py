"""Both orders: every question is asked with the responses in one order and in the reverse, and the
two verdicts are combined (Zheng et al. 2023, sec. 3.4: a judge that prefers a position rather than a
response changes its answer when the order does).

Probabilities are mapped back to the responses' canonical order and averaged. A *flip* is a change of
the preferred response between the orders; what a flip becomes is the user's choice (`FLIP_RULES`).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Literal, NamedTuple

PairLabel = Literal["first", "second", "tie"]
"""A pairwise outcome in canonical order."""


class PairVerdict(NamedTuple):
    """Both orders of one pairwise question, in canonical order (first = the item's first response)."""

    p_forward: float
    """P(first is better) when first was shown first."""
    p_reverse: float
    """P(first is better) when first was shown second."""
    p_first: float
    """The mean of the two."""
    flipped: bool
    """The orders preferred different responses."""
    label: PairLabel | None
    """The outcome; None = left unlabelled (a flip under the 'unlabelled' rule)."""


def _side(p: float) -> int:
    return (p > 0.5) - (p < 0.5)  # +1 first, -1 second, 0 undecided


def _flip_tie(p_first: float) -> PairLabel | None:
    return "tie"


def _flip_unlabelled(p_first: float) -> PairLabel | None:
    return None


FlipRule = Literal["tie", "unlabelled"]
"""What a flip becomes: a tie, or no label at all (the item is given back)."""

FLIP_RULES: dict[str, Callable[[float], PairLabel | None]] = {"tie": _flip_tie, "unlabelled": _flip_unlabelled}
"""Flip rule name -> ``fn(mean P(first)) -> label``."""


def combine_pair(p_forward: float, p_reverse: float, on_flip: FlipRule) -> PairVerdict:
    """Combine the two orders of a pairwise question.

    Both arguments are P(canonical first is better). A flip is one order above 1/2 and the other below;
    an undecided order (exactly 1/2) flips nothing. Without a flip the mean decides: above 1/2 the
    first, below the second, exactly 1/2 a tie.
    """
    mean = (p_forward + p_reverse) / 2
    flipped = _side(p_forward) * _side(p_reverse) < 0
    if flipped:
        return PairVerdict(p_forward, p_reverse, mean, True, FLIP_RULES[on_flip](mean))
    label: PairLabel = ("tie", "first", "second")[_side(mean)]
    return PairVerdict(p_forward, p_reverse, mean, False, label)


class RankVerdict(NamedTuple):
    """Both orders of a K-way question, in canonical order."""

    p_best: tuple[float, ...]
    """(K,) mean probability that each response is the best."""
    order: tuple[int, ...]
    """Canonical indices, best first (by `p_best`; ties keep the canonical order)."""
    flipped: bool
    """The two orders named different best responses."""


def combine_ranking(p_forward: Sequence[float], p_reverse: Sequence[float]) -> RankVerdict:
    """Average per-response P(best) over the two orders (both already in canonical order) and rank by it.

    One question per order reads the whole ranking from the probability mass the judge puts on each
    option label as "the best": cheaper than K(K-1) pairwise questions, and as position-balanced.
    """
    if len(p_forward) != len(p_reverse):
        raise ValueError(f"orders disagree on the number of responses: {len(p_forward)} vs {len(p_reverse)}")
    mean = tuple((a + b) / 2 for a, b in zip(p_forward, p_reverse, strict=True))
    order = tuple(sorted(range(len(mean)), key=lambda i: -mean[i]))
    best_f = max(range(len(p_forward)), key=lambda i: p_forward[i])
    best_r = max(range(len(p_reverse)), key=lambda i: p_reverse[i])
    return RankVerdict(mean, order, best_f != best_r)


def flip_rate(flips: Sequence[bool]) -> float | None:
    """Share of questions whose orders disagreed (None when none was asked)."""
    return sum(flips) / len(flips) if flips else None
