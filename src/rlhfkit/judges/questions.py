"""The questions: a pair or K responses compared (in both orders, or by scoring each alone), a rating.

Each function renders the question from the templates, asks it through an `Asker` (cache, budget,
readout) and returns the combined verdict in the responses' canonical order. An answer that names
no option counts as undecided (P = 1/2 for a pair, uniform for K responses), so it can never decide
a label on its own.

Two ways to compare, one function each behind `PAIR_QUESTIONS` / `RANKING_QUESTIONS`:

* ``both_orders``: the responses side by side, asked in one order and in the reverse (Zheng et al.
  2023, sec. 3.4); a judge that prefers a position shows it as flips.
* ``scores``: each response alone, answered with two labels (good first); its score is the judge's
  probability of the good label, and P(first is better) = sigma(logit s1 - logit s2), a Bradley-Terry
  comparison with the judge's log-odds as strengths (K responses: the Plackett-Luce P(best), a softmax
  of the log-odds). Nothing is shown beside anything else, so there is no position to prefer: this is
  the mode for a judge whose pairwise answers are all position (the bundled 135M model, measured in
  ``bench/results/aif_demo.md``), and a response met in several questions is asked about once (cache).
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal

from rlhfkit.judges.base import Asker
from rlhfkit.judges.combine import FlipRule, PairVerdict, RankVerdict, combine_pair, combine_ranking
from rlhfkit.judges.templates import SCORE_LABELS, QuestionKind, Templates
from rlhfkit.judges.verdicts import expected_rating

Comparison = Literal["both_orders", "scores"]
"""How pairs and rankings are judged: side by side in both orders, or each response scored alone."""


@dataclass(frozen=True)
class Asking:
    """How a comparison is put to the judge (from `JudgeSettings.asking`)."""

    compare: Comparison = "both_orders"
    """Side by side in both orders, or each response scored alone."""
    on_flip: FlipRule = "tie"
    """both_orders: what a pair whose orders disagree becomes."""
    labels: tuple[str, str] = SCORE_LABELS
    """scores: the answer labels, good first."""


def _p_best(asker: Asker, templates: Templates, prompt: str, shown: Sequence[str], principle: str) -> list[float]:
    """P(best) of each response in the order shown (uniform when the answer is unreadable)."""
    kind: QuestionKind = "pairwise" if len(shown) == 2 else "ranking"
    messages, options = templates.messages(kind, prompt, shown, principle)
    probs = asker.ask(messages, options)
    if probs is None:
        return [1 / len(shown)] * len(shown)
    return [probs[o] for o in options]


def judge_pair(
    asker: Asker, templates: Templates, prompt: str, first: str, second: str, *, on_flip: FlipRule, principle: str = ""
) -> PairVerdict:
    """Which of two responses is better, asked as (first, second) and as (second, first)."""
    forward = _p_best(asker, templates, prompt, [first, second], principle)[0]
    reverse = _p_best(asker, templates, prompt, [second, first], principle)[1]
    return combine_pair(forward, reverse, on_flip)


def judge_ranking(
    asker: Asker, templates: Templates, prompt: str, responses: Sequence[str], principle: str = ""
) -> RankVerdict:
    """An order of K responses from P(best), asked in the canonical and the reversed order."""
    k = len(responses)
    forward = _p_best(asker, templates, prompt, list(responses), principle)
    reverse_shown = _p_best(asker, templates, prompt, list(reversed(responses)), principle)
    reverse = [reverse_shown[k - 1 - i] for i in range(k)]  # back to canonical order
    return combine_ranking(forward, reverse)


def judge_rating(asker: Asker, templates: Templates, prompt: str, response: str, principle: str = "") -> int | None:
    """A 1..7 rating: the expected rating under the option probabilities, rounded (None: unreadable)."""
    messages, options = templates.messages("rating", prompt, [response], principle)
    probs = asker.ask(messages, options)
    return None if probs is None else min(7, max(1, round(expected_rating(probs))))


def score_response(
    asker: Asker, templates: Templates, prompt: str, response: str, labels: tuple[str, str], principle: str = ""
) -> float:
    """The judge's probability of the good label about `response` alone (1/2 when unreadable)."""
    messages, options = templates.messages("score", prompt, [response], principle, labels)
    probs = asker.ask(messages, options)
    return 0.5 if probs is None else probs[options[0]]


def _log_odds(p: float) -> float:
    p = min(max(p, 1e-6), 1 - 1e-6)  # a judge certain of both responses still yields a finite gap
    return math.log(p / (1 - p))


def score_pair(
    asker: Asker,
    templates: Templates,
    prompt: str,
    first: str,
    second: str,
    *,
    labels: tuple[str, str],
    principle: str = "",
) -> PairVerdict:
    """Each response scored alone; P(first better) = sigma(logit s1 - logit s2). Never a flip."""
    gap = _log_odds(score_response(asker, templates, prompt, first, labels, principle)) - _log_odds(
        score_response(asker, templates, prompt, second, labels, principle)
    )
    p = 1 / (1 + math.exp(-gap))
    return combine_pair(p, p, "tie")


def score_ranking(
    asker: Asker,
    templates: Templates,
    prompt: str,
    responses: Sequence[str],
    *,
    labels: tuple[str, str],
    principle: str = "",
) -> RankVerdict:
    """K responses scored alone; P(best) is the softmax of their log-odds (Plackett-Luce). Never a flip."""
    odds = [_log_odds(score_response(asker, templates, prompt, r, labels, principle)) for r in responses]
    top = max(odds)
    weights = [math.exp(o - top) for o in odds]
    p_best = [w / sum(weights) for w in weights]
    return combine_ranking(p_best, p_best)


def _pair_both_orders(
    asker: Asker, t: Templates, prompt: str, a: str, b: str, how: Asking, principle: str
) -> PairVerdict:
    return judge_pair(asker, t, prompt, a, b, on_flip=how.on_flip, principle=principle)


def _pair_scores(asker: Asker, t: Templates, prompt: str, a: str, b: str, how: Asking, principle: str) -> PairVerdict:
    return score_pair(asker, t, prompt, a, b, labels=how.labels, principle=principle)


def _ranking_both_orders(
    asker: Asker, t: Templates, prompt: str, rs: Sequence[str], how: Asking, principle: str
) -> RankVerdict:
    return judge_ranking(asker, t, prompt, rs, principle)


def _ranking_scores(
    asker: Asker, t: Templates, prompt: str, rs: Sequence[str], how: Asking, principle: str
) -> RankVerdict:
    return score_ranking(asker, t, prompt, rs, labels=how.labels, principle=principle)


PAIR_QUESTIONS: dict[str, Callable[[Asker, Templates, str, str, str, Asking, str], PairVerdict]] = {
    "both_orders": _pair_both_orders,
    "scores": _pair_scores,
}
"""Comparison -> ``fn(asker, templates, prompt, first, second, how, principle)``."""

RANKING_QUESTIONS: dict[str, Callable[[Asker, Templates, str, Sequence[str], Asking, str], RankVerdict]] = {
    "both_orders": _ranking_both_orders,
    "scores": _ranking_scores,
}
"""Comparison -> ``fn(asker, templates, prompt, responses, how, principle)``."""


def compare_pair(
    asker: Asker, templates: Templates, prompt: str, first: str, second: str, how: Asking, principle: str = ""
) -> PairVerdict:
    """Which of two responses is better, asked as `how` says."""
    return PAIR_QUESTIONS[how.compare](asker, templates, prompt, first, second, how, principle)


def compare_ranking(
    asker: Asker, templates: Templates, prompt: str, responses: Sequence[str], how: Asking, principle: str = ""
) -> RankVerdict:
    """An order of K responses, asked as `how` says."""
    return RANKING_QUESTIONS[how.compare](asker, templates, prompt, responses, how, principle)
