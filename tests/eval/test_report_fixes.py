"""The report: proxy vs gold as a scatter with a moving average, one-point panels as a number, the
over-optimization fit in words when there is no peak, and the loop saying why gold items fall short."""

from __future__ import annotations

import math

import numpy as np
import pytest

from rlhfkit.eval import plots
from rlhfkit.eval.hacking import describe_fit, gao_fit
from rlhfkit.loop.candidates import GOLD_GAP, gold_shortfall


def test_smoothed_sorts_by_x_and_averages_neighbours() -> None:
    xs, ys = plots.smoothed([3.0, 1.0, 2.0, 0.0], [30.0, 10.0, 20.0, 0.0], window=3)
    assert xs == [0.0, 1.0, 2.0, 3.0]
    # window 3 (one each side), shrinking at the ends: (0+10)/2, (0+10+20)/3, (10+20+30)/3, (20+30)/2
    assert ys == pytest.approx([5.0, 10.0, 20.0, 25.0])


def test_proxy_vs_gold_is_a_scatter_with_a_moving_average() -> None:
    # KL does not grow with the step here: joining points in step order would draw a zigzag.
    points = [
        {"step": s, "kl": kl, "proxy": 0.1 * s, "gold": g}
        for s, kl, g in [(1, 0.5, 0.1), (2, 0.2, 0.0), (3, 1.0, 0.3), (4, 0.7, 0.2), (5, 2.0, 0.25)]
    ]
    svg = plots.proxy_gold_panel(points, salt="t")
    assert "proxy, moving average" in svg and "gold, moving average" in svg
    assert svg.count('id="PathCollection_') >= 2  # matplotlib's scatter: one collection per series


def test_a_one_point_series_is_shown_as_a_number() -> None:
    svg = plots.small_multiples({"eval/accuracy": ([40], [0.8125]), "train/loss": ([1, 2], [1.0, 0.5])}, salt="n")
    assert "0.8125" in svg and "step 40" in svg
    svg = plots.line_panel("Reward", {"eval/reward": ([7], [1.25])}, salt="r")
    assert "1.25" in svg and "step 7" in svg


def test_the_fit_says_when_there_is_no_peak() -> None:
    kl = np.linspace(0.1, 4.0, 12)
    rising = describe_fit(gao_fit(kl, np.sqrt(kl) + 0.2 * kl), float(kl.max()))  # convex in d: beta < 0
    assert rising.startswith("no peak: the fitted gold keeps rising with KL") and "inf" not in rising
    d = np.sqrt(kl)
    peaked_fit = gao_fit(kl, d * (1.0 - 0.8 * np.log(d)))  # the RL form itself: peak at d = e^(1/0.8 - 1)
    assert peaked_fit.peak_kl == pytest.approx(math.exp(2 * (1 / 0.8 - 1)), rel=1e-6)
    assert describe_fit(peaked_fit, float(kl.max())).startswith("fitted peak at KL \u2248 1.65:")
    assert "not reached yet" in describe_fit(peaked_fit, 1.0)


def test_the_loop_says_why_it_made_fewer_gold_items_than_asked() -> None:
    assert gold_shortfall(4, 4, 48) is None
    note = gold_shortfall(4, 1, 48)
    assert note is not None and note.startswith("asked for 4 gold items, made 1: only 1 of 48 candidate sets")
    assert f"GOLD_GAP={GOLD_GAP}" in note
