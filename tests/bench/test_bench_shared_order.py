"""bench/common.shared_order: the batches both sides of a comparison train on (an unbiased draw, grouped by length)."""

from __future__ import annotations

import sys
from pathlib import Path

import pytest

BENCH = Path(__file__).resolve().parents[2] / "bench"


@pytest.fixture(scope="module")
def common():
    sys.path.insert(0, str(BENCH))  # common.py is imported by name, as the harnesses do
    try:
        import common as module
    finally:
        sys.path.remove(str(BENCH))
    return module


def test_shared_order_draws_distinct_pairs_reproducibly(common) -> None:
    lengths = list(range(100))
    order = common.shared_order(lengths, steps=5, batch_size=4, seed=3, group_by_length=True)
    assert len(order) == 20 and len(set(order)) == 20
    assert order == common.shared_order(lengths, steps=5, batch_size=4, seed=3, group_by_length=True)
    assert order != common.shared_order(lengths, steps=5, batch_size=4, seed=4, group_by_length=True)


def test_shared_order_groups_by_length_longest_batch_first(common) -> None:
    lengths = [7, 3, 9, 1, 8, 2, 6, 4, 5, 0]
    order = common.shared_order(lengths, steps=5, batch_size=2, seed=0, group_by_length=True)
    batches = [order[i : i + 2] for i in range(0, 10, 2)]
    # Every pair is drawn (5 steps x 2 = all 10); sorted by length they pair up as
    # (9, 8), (7, 6), (5, 4), (3, 2), (1, 0): each batch holds two neighbours, the longest batch comes first.
    assert sorted(sorted(lengths[i] for i in b) for b in batches) == [[0, 1], [2, 3], [4, 5], [6, 7], [8, 9]]
    assert sorted(lengths[i] for i in batches[0]) == [8, 9]


def test_shared_order_is_an_unbiased_draw_not_the_longest_pairs(common) -> None:
    # HF's LengthGroupedSampler reads a sorted mega-batch from its top, so a short run trains on the
    # longest pairs of its sample; the shared order must draw lengths like the whole set does.
    lengths = list(range(1000))
    means = [sum(lengths[i] for i in common.shared_order(lengths, 30, 8, seed, True)) / 240 for seed in range(20)]
    assert abs(sum(means) / len(means) - 499.5) < 25  # the set's mean; the longest 75% of a sample would be ~620


def test_shared_order_without_grouping_is_the_plain_draw(common) -> None:
    order = common.shared_order([5] * 50, steps=3, batch_size=4, seed=1, group_by_length=False)
    assert len(order) == 12 and len(set(order)) == 12
