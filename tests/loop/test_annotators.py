"""Simulated annotator panel: Bradley-Terry / Plackett-Luce statistics, bias, carelessness, seeding."""

from __future__ import annotations

import itertools
import math

import numpy as np
import pytest

from rlhfkit.eval.gold import sentiment_gold
from rlhfkit.loop.annotators import AnnotatorProfile, SimulatedPanel, make_panel

REVIEWS = [
    "This movie was wonderful, I loved every minute of it.",
    "A decent film with a few good moments.",
    "The plot was dull and the acting was terrible.",
    "It was okay, nothing special.",
    "An absolute masterpiece, brilliant and moving.",
    "Boring, awful, a complete waste of time.",
    "great great great great great great",
    "I did not enjoy the soundtrack much.",
]


def _first_word_gold(prompt: str, response: str) -> float:
    """Gold = the number leading the response ("0.5 ..." -> 0.5): utilities chosen by the test."""
    return float(response.split()[0])


def test_noiseless_panel_agrees_with_gold() -> None:
    panel = make_panel(sentiment_gold, n_members=3, temperature=0.0, seed=0)
    for member in panel.members:
        for a, b in itertools.permutations(REVIEWS, 2):
            choice = panel.judge_pair("Review:", a, b, member)
            ga, gb = sentiment_gold("Review:", a), sentiment_gold("Review:", b)
            assert choice == ("tie" if ga == gb else "a" if ga > gb else "b")
        order = panel.rank("Review:", REVIEWS, member)
        golds = [sentiment_gold("Review:", REVIEWS[i]) for i in order]
        assert golds == sorted(golds, reverse=True)
        ratings = [panel.rate("Review:", r, member) for r in REVIEWS]
        by_gold = [rating for _, rating in sorted(zip([sentiment_gold("", r) for r in REVIEWS], ratings, strict=True))]
        assert by_gold == sorted(by_gold)  # monotone in gold


def test_careless_panel_agrees_half_the_time() -> None:
    panel = make_panel(_first_word_gold, n_members=4, careless_share=1.0, temperature=0.0, seed=1)
    assert all(m.careless for m in panel.members)
    agree = [
        panel.judge_pair(f"p{i}", f"1.0 answer {i}", f"0.0 answer {i}", panel.members[i % 4]) == "a"
        for i in range(2000)
    ]
    # Binomial(2000, 0.5): sd = sqrt(0.25 / 2000) = 0.011; +-0.05 is ~4.5 sd.
    assert abs(np.mean(agree) - 0.5) < 0.05
    ratings = [panel.rate("p", f"1.0 answer {i}", panel.members[0]) for i in range(700)]
    assert set(ratings) == set(range(1, 8))  # uniform over the scale, whatever the content


def test_pairwise_choices_follow_bradley_terry() -> None:
    member = AnnotatorProfile("m", temperature=0.5)
    panel = SimulatedPanel(_first_word_gold, (member,), seed=2)
    # Gap 0.5 at T = 0.5: P(a) = sigmoid(1) = 0.731059.
    assert panel.prob_a("p", "0.5 x", "0.0 y", member) == pytest.approx(0.731059, abs=1e-6)
    picks = [panel.judge_pair("p", "0.5 x", "0.0 y", "m", occasion=k) == "a" for k in range(3000)]
    # sd = sqrt(0.731 * 0.269 / 3000) = 0.0081; tolerance 0.035 is ~4.3 sd.
    assert np.mean(picks) == pytest.approx(0.731059, abs=0.035)


def test_rankings_follow_plackett_luce() -> None:
    member = AnnotatorProfile("m", temperature=0.5)
    panel = SimulatedPanel(_first_word_gold, (member,), seed=3)
    responses = ["0.0 a", "0.5 b", "1.0 c"]
    # P(first = i) = exp(u_i / T) / sum = (1, e, e^2) / (1 + e + e^2) = (0.0900, 0.2447, 0.6652).
    expected = np.exp([0.0, 1.0, 2.0]) / np.exp([0.0, 1.0, 2.0]).sum()
    firsts = np.bincount([panel.rank("p", responses, member, occasion=k)[0] for k in range(3000)], minlength=3)
    np.testing.assert_allclose(firsts / 3000, expected, atol=0.035)
    # Two responses: the ranking reduces to the pairwise Bradley-Terry probability.
    pair = [panel.rank("p", ["0.5 x", "0.0 y"], member, occasion=k)[0] == 0 for k in range(3000)]
    assert np.mean(pair) == pytest.approx(panel.prob_a("p", "0.5 x", "0.0 y", member), abs=0.035)


def test_rating_hand_derived() -> None:
    panel = SimulatedPanel(_first_word_gold, (AnnotatorProfile("m", temperature=0.0),))
    # 4 + 3 u rounded half up, clipped to 1..7: 0.5 -> 5.5 -> 6; -0.5 -> 2.5 -> 3; 2 -> 10 -> 7; -0.9 -> 1.3 -> 1.
    assert [panel.rate("p", f"{u} x", "m") for u in (0.5, -0.5, 2.0, -0.9, 0.0)] == [6, 3, 7, 1, 4]
    shifted = SimulatedPanel(_first_word_gold, panel.members, rating_center=1.0, rating_scale=2.0)
    # 4 + 3 (0.5 - 1) / 2 = 3.25 -> 3.
    assert shifted.rate("p", "0.5 x", "m") == 3


def test_length_bias_shows() -> None:
    long, short = "0 " + "word " * 10, "0 hi"
    # Equal gold; utilities differ by bias * (log(1 + 11) - log(1 + 2)) = bias * 1.386.
    gap = math.log(12) - math.log(3)
    likes_long = AnnotatorProfile("long", bias=1.0, temperature=0.5)
    likes_short = AnnotatorProfile("short", bias=-1.0, temperature=0.5)
    panel = SimulatedPanel(_first_word_gold, (likes_long, likes_short), seed=4)
    assert panel.prob_a("p", long, short, likes_long) == pytest.approx(1 / (1 + math.exp(-gap / 0.5)))
    for member, expected in ((likes_long, "a"), (likes_short, "b")):
        picks = [panel.judge_pair("p", long, short, member, occasion=k) for k in range(400)]
        assert picks.count(expected) / 400 > 0.85  # sigmoid(2.77) = 0.94
    # A random panel: members with a larger bias pick the longer answer more often.
    random_panel = make_panel(_first_word_gold, n_members=6, bias_std=1.0, temperature=0.5, seed=5)
    rates = [
        np.mean([random_panel.judge_pair("p", long, short, m, occasion=k) == "a" for k in range(300)])
        for m in random_panel.members
    ]
    biases = [m.bias for m in random_panel.members]
    assert np.corrcoef(biases, rates)[0, 1] > 0.8


def test_ties_within_margin() -> None:
    panel = SimulatedPanel(_first_word_gold, (AnnotatorProfile("m", temperature=0.0),), tie_margin=0.2)
    assert panel.judge_pair("p", "0.1 a", "0.0 b", "m") == "tie"
    assert panel.judge_pair("p", "0.3 a", "0.0 b", "m") == "a"


def test_judgments_are_pure_and_seeded() -> None:
    first = make_panel(_first_word_gold, n_members=3, temperature=1.0, seed=7)
    again = make_panel(_first_word_gold, n_members=3, temperature=1.0, seed=7)
    other = make_panel(_first_word_gold, n_members=3, temperature=1.0, seed=8)
    questions = [(f"p{i}", f"0.{i} a", "0.5 b") for i in range(40)]

    def answers(panel: SimulatedPanel) -> list[str]:
        return [panel.judge_pair(p, a, b, m) for p, a, b in questions for m in panel.members]

    assert answers(first) == answers(again)
    assert answers(first) != answers(other)
    # Order of calls does not matter; the same question asked again gives the same answer...
    assert list(reversed(answers(first))) == [
        first.judge_pair(p, a, b, m) for p, a, b in reversed(questions) for m in reversed(first.members)
    ]
    # ... unless it is a new occasion.
    repeats = {first.judge_pair("p", "0.5 a", "0.5 b", "sim-01", occasion=k) for k in range(50)}
    assert repeats == {"a", "b"}


def test_make_panel_composition_and_validation() -> None:
    panel = make_panel("sentiment", n_members=5, careless_share=0.4, bias_std=0.3, seed=0)
    assert [m.name for m in panel.members] == ["sim-01", "sim-02", "sim-03", "sim-04", "sim-05"]
    assert sum(m.careless for m in panel.members) == 2  # round(5 * 0.4)
    assert panel.member("sim-03") is panel.members[2]
    with pytest.raises(ValueError):
        panel.member("nobody")
    with pytest.raises(ValueError):
        make_panel("sentiment", careless_share=1.5)
    with pytest.raises(ValueError):
        AnnotatorProfile("x", temperature=-1.0)
    with pytest.raises(ValueError):
        SimulatedPanel(sentiment_gold, (AnnotatorProfile("x"), AnnotatorProfile("x")))
    with pytest.raises(ValueError):
        panel.rank("p", ["only one"], "sim-01")
