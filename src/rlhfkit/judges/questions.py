"""The questions: a pair in both orders, K responses in both orders, one response rated.

Each function renders the question from the templates, asks it through an `Asker` (cache, budget,
readout) and returns the combined verdict in the responses' canonical order. An answer that names
no option counts as undecided (P = 1/2 for a pair, uniform for K responses), so it can never decide
a label on its own.
"""

from __future__ import annotations

from collections.abc import Sequence

from rlhfkit.judges.base import Asker
from rlhfkit.judges.combine import FlipRule, PairVerdict, RankVerdict, combine_pair, combine_ranking
from rlhfkit.judges.templates import QuestionKind, Templates
from rlhfkit.judges.verdicts import expected_rating


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
