"""Shipped fixtures and the deterministic train/holdout split."""

from __future__ import annotations

import pytest

from rlhfkit.data import Comparison, Prompt, load_records, split_records
from rlhfkit.data.fixtures import fixture_names, fixture_path

FIXTURES = {
    "sentiment_prompts.jsonl": ("prompts", 64),
    "arithmetic_train.jsonl": ("prompts", 522),
    "arithmetic_test.jsonl": ("prompts", 150),
    "demos_small.jsonl": ("demos", 64),
    "pairs_small.jsonl": ("pairs", 32),
    "rankings_small.jsonl": ("rankings", 16),
    "ratings_small.jsonl": ("ratings", 32),
}


def test_fixture_names():
    assert fixture_names() == sorted(FIXTURES)


@pytest.mark.parametrize("name, kind, count", [(n, k, c) for n, (k, c) in FIXTURES.items()])
def test_fixtures_load_strictly(name, kind, count):
    records = load_records(fixture_path(name), kind).records
    assert len(records) == count
    assert len({str(r.prompt) for r in records}) == len(records) or kind == "ratings"


def test_fixture_contents():
    rankings = load_records(fixture_path("rankings_small.jsonl"), "rankings").records
    assert {len(r.responses) for r in rankings} == {3, 4}
    ratings = load_records(fixture_path("ratings_small.jsonl"), "ratings").records
    assert all(r.scale == (1.0, 7.0) and 1 <= r.rating <= 7 for r in ratings)
    prompts = load_records(fixture_path("sentiment_prompts.jsonl"), "prompts").records
    assert all(isinstance(p.prompt, str) and len(p.prompt) < 100 for p in prompts)


def test_unknown_fixture():
    with pytest.raises(FileNotFoundError, match="pairs_small.jsonl"):
        fixture_path("nope.jsonl")


def test_split_unique_prompts_is_exact_and_deterministic():
    records = [Prompt(f"p{i}") for i in range(10)]
    train, holdout = split_records(records, 0.3, seed=1)
    assert len(holdout) == 3 and len(train) == 7  # round(0.3 * 10) = 3
    assert sorted(train + holdout, key=records.index) == records
    assert [r for r in records if r in holdout] == holdout  # input order kept
    assert split_records(records, 0.3, seed=1) == (train, holdout)
    other_seeds = {tuple(r.prompt for r in split_records(records, 0.3, seed=s)[1]) for s in range(10)}
    assert len(other_seeds) > 1


def test_split_keeps_a_prompt_on_one_side():
    # 4 prompts x 3 comparisons; target round(0.25 * 12) = 3 = exactly one prompt group.
    records = [Comparison(f"p{i}", f"a{j}", f"b{j}") for i in range(4) for j in range(3)]
    for seed in range(5):
        train, holdout = split_records(records, 0.25, seed)
        assert len(holdout) == 3 and len({r.prompt for r in holdout}) == 1
        assert not {r.prompt for r in train} & {r.prompt for r in holdout}


def test_split_edges():
    records = [Prompt("a"), Prompt("b")]
    assert split_records(records, 0.0, 0) == (records, [])
    assert split_records(records, 1.0, 0) == ([], records)
    with pytest.raises(ValueError):
        split_records(records, 1.5, 0)
