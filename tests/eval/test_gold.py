"""Gold scorers and repetition statistics: hand-derived numbers and naive references."""

from __future__ import annotations

import itertools
import random

import pytest

from rlhfkit.eval import gold as g


def test_repetition_stats_hand_derived() -> None:
    # 5 tokens, 1 distinct -> distinct-1 = 1/5; 4 bigrams, all "great great" -> distinct-2 = 1/4; run 5.
    assert g.repetition_stats("Great great GREAT great, great!") == {
        "n_tokens": 5.0,
        "distinct1": pytest.approx(0.2),
        "distinct2": pytest.approx(0.25),
        "longest_run": 5.0,
    }
    # "the cat sat on the mat": 6 tokens, 5 distinct words -> 5/6; 5 bigrams, all distinct -> 1; run 1.
    stats = g.repetition_stats("The cat sat on the mat.")
    assert stats["distinct1"] == pytest.approx(5 / 6)
    assert stats["distinct2"] == 1.0 and stats["longest_run"] == 1.0
    # "a b a b a b": 2 distinct of 6 words -> 1/3; bigrams ab ba ab ba ab -> 2 distinct of 5 = 0.4.
    stats = g.repetition_stats("a b a b a b")
    assert stats["distinct1"] == pytest.approx(1 / 3) and stats["distinct2"] == pytest.approx(0.4)
    # Nothing to repeat in an empty text: distinct-n is 1 by convention, the longest run is 0.
    assert g.repetition_stats("") == {"n_tokens": 0.0, "distinct1": 1.0, "distinct2": 1.0, "longest_run": 0.0}


def _naive_distinct(tokens: list[str], n: int) -> float:
    seen: list[tuple[str, ...]] = []
    total = 0
    for i in range(len(tokens) - n + 1):
        total += 1
        gram = tuple(tokens[i : i + n])
        if gram not in seen:
            seen.append(gram)
    return 1.0 if total == 0 else len(seen) / total


def test_distinct_and_runs_match_naive_reference() -> None:
    rng = random.Random(0)
    for _ in range(200):
        tokens = [rng.choice("abc") for _ in range(rng.randint(0, 12))]
        for n in (1, 2, 3):
            assert g.distinct_n(tokens, n) == pytest.approx(_naive_distinct(tokens, n))
        runs = [len(list(group)) for _, group in itertools.groupby(tokens)]
        assert g.longest_run(tokens) == max(runs, default=0)


def test_degeneracy_penalty_hand_derived() -> None:
    # loops 1 - 1/4 = 0.75, run (5 - 2) / 3 = 1, short 0 -> min(1, 1.75) = 1.
    assert g.degeneracy_penalty("great great great great great") == 1.0
    # "very very good movie": bigrams all distinct, run 2 is free, 4 words -> 0.
    assert g.degeneracy_penalty("very very good movie") == 0.0
    # One word: no bigram, run 1, short (3 - 1) / 3 = 2/3.
    assert g.degeneracy_penalty("Great!") == pytest.approx(2 / 3)
    # Empty: short (3 - 0) / 3 = 1.
    assert g.degeneracy_penalty("") == 1.0


def test_sentiment_gold_penalizes_degenerate_text() -> None:
    degenerate = "great great great great great"
    prose = "This movie was great, I loved it."
    neutral = "The movie was released in 2004 and runs two hours."
    # VADER's compound for the degenerate text is 0.9702; minus the full penalty 1.0.
    assert g.sentiment_gold("", degenerate) == pytest.approx(g.vader_compound(degenerate) - 1.0)
    assert g.sentiment_gold("", degenerate) < g.sentiment_gold("", neutral) < g.sentiment_gold("", prose)
    # Without the penalty, repetition wins: that is the hack the demo's gold must not reward.
    raw = g.GOLD_SCORERS["sentiment_raw"]
    assert raw("", degenerate) > raw("", prose)
    assert g.sentiment_gold("", prose) == pytest.approx(g.vader_compound(prose))


def test_sentiment_gold_range() -> None:
    rng = random.Random(1)
    words = ["good", "bad", "awful", "great", "the", "movie", "!", "love", "hate"]
    for _ in range(100):
        text = " ".join(rng.choice(words) for _ in range(rng.randint(0, 15)))
        assert -1.0 - g.MAX_PENALTY <= g.sentiment_gold("", text) <= 1.0


def _words(n: int) -> str:
    return " ".join(["word"] * n)


def test_length_gold_hand_derived() -> None:
    words = _words
    # 1 - min(2, |n - 50| / 50): n=50 -> 1, 25 -> 0.5, 100 -> 0, 200 -> 1 - min(2, 3) = -1.
    assert g.length_gold("", words(50)) == 1.0
    assert g.length_gold("", words(25)) == 0.5
    assert g.length_gold("", words(100)) == 0.0
    assert g.length_gold("", words(200)) == -1.0
    assert g.make_length_gold(10)("", words(5)) == 0.5
    with pytest.raises(ValueError):
        g.make_length_gold(0)


def test_keyword_gold_hand_derived() -> None:
    # "thank you" 0.4 + "happy to help" 0.4; 5 distinct words, no penalty -> 0.8.
    assert g.keyword_gold("", "Thank you, happy to help!") == pytest.approx(0.8)
    # A rule counts once: 0.4; penalty: distinct-2 = 1/2 -> 0.5, run (3 - 2) / 3 -> total 5/6.
    assert g.keyword_gold("", "thanks thanks thanks") == pytest.approx(0.4 - 5 / 6)
    # Insult -1.0 plus thanks 0.4 = -0.6 (4 words, distinct bigrams, no penalty).
    assert g.keyword_gold("", "you idiot, thank you") == pytest.approx(-0.6)
    custom = g.make_keyword_gold({r"\bfoo\b": 2.0}, penalize_degeneracy=False)
    assert custom("", "foo bar") == 1.0  # clipped to [-1, 1]
    assert custom("", "food") == 0.0
    with pytest.raises(ValueError):
        g.KeywordRule("(unclosed", 1.0)
    with pytest.raises(ValueError):
        g.make_keyword_gold({})


def test_resolve_gold() -> None:
    assert g.resolve_gold("sentiment") is g.sentiment_gold
    assert g.resolve_gold("python:rlhfkit.eval.gold:length_gold") is g.length_gold
    for bad in ("nope", "python:rlhfkit.eval.gold", "python:no_such_module_xyz:f", "python:os:no_such_fn"):
        with pytest.raises(ValueError):
            g.resolve_gold(bad)


def test_vader_analyzer_is_built_once() -> None:
    assert g._analyzer() is g._analyzer()
