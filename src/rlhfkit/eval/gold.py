"""Gold scorers: the known "true" preference that simulated annotators and evaluations judge by.

A gold scorer is a plain function ``fn(prompt, response) -> float`` (higher is better). With a known
gold, an RLHF run can be checked end to end: the reward model is only a *proxy* fitted to noisy
labels of the gold, so the gap between proxy and gold measures reward hacking (Gao et al. 2022,
"Scaling Laws for Reward Model Overoptimization").

The name table :data:`GOLD_SCORERS` holds ready-made scorers; :func:`resolve_gold` also accepts
``"python:module:function"`` for any importable function with the same signature.

Degeneracy penalty (used by the demo's "sentiment" gold so that "great great great" is not a win)::

    D(x) = min(1, (1 - distinct2(x)) + clip((run(x) - 2) / 3, 0, 1) + clip((3 - n(x)) / 3, 0, 1))

where n is the number of word tokens, distinct2 the share of distinct word bigrams (Li et al. 2016,
"A Diversity-Promoting Objective Function for Neural Conversation Models") and run the longest run of
one word repeated back to back. Every term is 0 for ordinary prose: bigram loops cost up to 1, a word
repeated 5 or more times in a row costs 1, an empty response costs 1 and a 1-word response 2/3.
"""

from __future__ import annotations

import math
import re
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from functools import partial
from typing import TYPE_CHECKING, TypeAlias

if TYPE_CHECKING:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

GoldScorer: TypeAlias = Callable[[str, str], float]
"""``fn(prompt, response) -> float``: higher is better."""

MIN_WORDS = 3
"""Responses shorter than this many words are penalized (an empty answer must not be a safe bet)."""

RUN_FREE = 2
"""A word may repeat this many times in a row for free ("very very good" is still prose)."""

RUN_SPAN = 3
"""Extra repeats beyond :data:`RUN_FREE` over which the run penalty grows from 0 to 1."""

MAX_PENALTY = 1.0
"""Cap of the degeneracy penalty, so a penalized gold stays in ``[-1 - MAX_PENALTY, 1]``."""

_WORD = re.compile(r"\w+(?:'\w+)*")

_vader: SentimentIntensityAnalyzer | None = None


def tokenize(text: str) -> list[str]:
    """Lower-cased word tokens (punctuation dropped): the unit of every repetition statistic."""
    return _WORD.findall(text.lower())


def distinct_n(tokens: list[str], n: int) -> float:
    """Share of distinct n-grams among all n-grams (Li et al. 2016, distinct-n).

    A text with no n-gram at all (fewer than ``n`` tokens) repeats nothing and gets 1.0.
    """
    if n < 1:
        raise ValueError(f"n must be >= 1, got {n}")
    grams = [tuple(tokens[i : i + n]) for i in range(len(tokens) - n + 1)]
    if not grams:
        return 1.0
    return len(set(grams)) / len(grams)


def longest_run(tokens: list[str]) -> int:
    """Length of the longest run of one token repeated back to back (0 for no tokens)."""
    best = 0
    current = 0
    previous: str | None = None
    for token in tokens:
        current = current + 1 if token == previous else 1
        previous = token
        best = max(best, current)
    return best


def repetition_stats(text: str) -> dict[str, float]:
    """Repetition statistics of one text.

    Returns:
        ``{"n_tokens", "distinct1", "distinct2", "longest_run"}`` (see :func:`distinct_n` and
        :func:`longest_run`); the reward-hacking signals average these over a policy's samples.
    """
    tokens = tokenize(text)
    return {
        "n_tokens": float(len(tokens)),
        "distinct1": distinct_n(tokens, 1),
        "distinct2": distinct_n(tokens, 2),
        "longest_run": float(longest_run(tokens)),
    }


def _clip01(x: float) -> float:
    return min(1.0, max(0.0, x))


def degeneracy_penalty(text: str) -> float:
    """The penalty D(x) in ``[0, MAX_PENALTY]`` of the module docstring (0 for ordinary prose)."""
    stats = repetition_stats(text)
    loops = 1.0 - stats["distinct2"]
    run = _clip01((stats["longest_run"] - RUN_FREE) / RUN_SPAN)
    short = _clip01((MIN_WORDS - stats["n_tokens"]) / MIN_WORDS)
    return min(MAX_PENALTY, loops + run + short)


def _analyzer() -> SentimentIntensityAnalyzer:
    """The VADER analyzer, built once: it parses its lexicon file on construction (~50 ms)."""
    global _vader
    if _vader is None:
        from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

        _vader = SentimentIntensityAnalyzer()
    return _vader


def vader_compound(text: str) -> float:
    """VADER's compound sentiment in ``[-1, 1]`` (Hutto and Gilbert 2014)."""
    return float(_analyzer().polarity_scores(text)["compound"])


def sentiment_gold(prompt: str, response: str, *, penalize_degeneracy: bool = True) -> float:
    """Positive sentiment of the response: ``compound(response) - D(response)``, in ``[-2, 1]``.

    The prompt is ignored: the task is "continue this text positively", and judging the prompt's
    sentiment would reward the prompt, not the policy.
    """
    score = vader_compound(response)
    if penalize_degeneracy:
        score -= degeneracy_penalty(response)
    return score


def length_gold(prompt: str, response: str, *, target_words: int = 50, penalize_degeneracy: bool = False) -> float:
    """Closeness to a target length: ``1 - min(2, |n - target| / target)``, in ``[-1, 1]``.

    1 at exactly ``target_words`` words, 0 at 0 or 2x the target, -1 beyond 3x.
    """
    n = len(tokenize(response))
    score = 1.0 - min(2.0, abs(n - target_words) / target_words)
    if penalize_degeneracy:
        score -= degeneracy_penalty(response)
    return score


@dataclass(frozen=True)
class KeywordRule:
    """A keyword rule: ``weight`` is added once when ``pattern`` occurs in the response."""

    pattern: str
    """Regular expression, searched case-insensitively (use ``\\b`` for whole words)."""
    weight: float
    """Added to the score if the pattern matches (negative weights penalize)."""

    def __post_init__(self) -> None:
        try:
            re.compile(self.pattern)
        except re.error as err:
            raise ValueError(f"KeywordRule.pattern {self.pattern!r} is not a regex: {err}") from err
        if not math.isfinite(self.weight):
            raise ValueError(f"KeywordRule.weight must be finite, got {self.weight}")


DEFAULT_KEYWORD_RULES: tuple[KeywordRule, ...] = (
    KeywordRule(r"\b(thanks?|thank you)\b", 0.4),
    KeywordRule(r"\bplease\b", 0.2),
    KeywordRule(r"\b(happy|glad) to help\b", 0.4),
    KeywordRule(r"\b(stupid|idiot|shut up|dumb)\b", -1.0),
)
"""A toy "polite assistant" gold: thanks and offers of help are good, insults are bad."""


def keyword_gold(
    prompt: str,
    response: str,
    *,
    rules: tuple[KeywordRule, ...] = DEFAULT_KEYWORD_RULES,
    penalize_degeneracy: bool = True,
) -> float:
    """Sum of the weights of the matching rules, clipped to ``[-1, 1]``, minus D(x) if asked.

    Each rule counts once however often it matches, so repeating a keyword earns nothing.
    """
    total = sum(rule.weight for rule in rules if re.search(rule.pattern, response, re.IGNORECASE))
    score = max(-1.0, min(1.0, total))
    if penalize_degeneracy:
        score -= degeneracy_penalty(response)
    return score


def make_length_gold(target_words: int, *, penalize_degeneracy: bool = False) -> GoldScorer:
    """A :func:`length_gold` for another target length."""
    if target_words < 1:
        raise ValueError(f"target_words must be >= 1, got {target_words}")
    return partial(length_gold, target_words=target_words, penalize_degeneracy=penalize_degeneracy)


def make_keyword_gold(
    rules: Mapping[str, float] | tuple[KeywordRule, ...], *, penalize_degeneracy: bool = True
) -> GoldScorer:
    """A :func:`keyword_gold` with other rules (``{pattern: weight}`` or :class:`KeywordRule`)."""
    parsed = tuple(KeywordRule(p, float(w)) for p, w in rules.items()) if isinstance(rules, Mapping) else tuple(rules)
    if not parsed:
        raise ValueError("make_keyword_gold needs at least one rule")
    return partial(keyword_gold, rules=parsed, penalize_degeneracy=penalize_degeneracy)


GOLD_SCORERS: dict[str, GoldScorer] = {
    "sentiment": sentiment_gold,
    "sentiment_raw": partial(sentiment_gold, penalize_degeneracy=False),
    "length": length_gold,
    "keywords": keyword_gold,
}
"""Ready-made gold scorers by name. "sentiment" is the demo's gold; "sentiment_raw" is VADER alone
(hackable by repetition, useful to show hacking)."""

PYTHON_PREFIX = "python:"


def resolve_gold(spec: str) -> GoldScorer:
    """A gold scorer from a name of :data:`GOLD_SCORERS` or ``"python:module:function"``."""
    if spec.startswith(PYTHON_PREFIX):
        from rlhfkit.rollout.rewards import import_function  # here: the named scorers need no torch

        return import_function(spec[len(PYTHON_PREFIX) :], what="gold scorer")
    if spec not in GOLD_SCORERS:
        names = ", ".join(sorted(GOLD_SCORERS))
        raise ValueError(f"unknown gold scorer {spec!r}; known: {names}, or python:module:function")
    return GOLD_SCORERS[spec]
