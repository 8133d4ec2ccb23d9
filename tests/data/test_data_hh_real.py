"""The real HH-RLHF harmless development split (1663 rows) parses as pairs, demos and prompts."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.data import Comparison, DataError, load_records

HH = Path(__file__).parents[3] / "shared/data/hh-rlhf-harmless/dev.jsonl"
EMPTY_CHOSEN_LINES = [65, 680, 806]  # dialogues whose chosen side ends with an empty "Assistant:" turn

pytestmark = pytest.mark.skipif(not HH.is_file(), reason=f"{HH} not present")


@pytest.fixture(scope="module")
def pairs() -> list[Comparison]:
    return load_records(HH, "pairs", skip_invalid=True).records


def test_strict_loading_stops_at_the_first_empty_response():
    with pytest.raises(DataError) as err:
        load_records(HH, "pairs")
    assert (err.value.path, err.value.line, err.value.field, err.value.reason) == (str(HH), 65, "chosen", "empty text")


@pytest.mark.parametrize("kind", ["pairs", "demos", "prompts"])
def test_every_row_parses_or_is_reported(kind):
    result = load_records(HH, kind, skip_invalid=True)
    assert result.rows == 1663
    assert len(result.records) == 1660
    assert [(s.line, s.field) for s in result.skipped] == [(line, "chosen") for line in EMPTY_CHOSEN_LINES]
    assert result.summary() == "1663 rows, 3 skipped (empty text: 3)"


def test_pairs_are_well_formed(pairs):
    for record in pairs:
        assert record.prompt[0]["role"] == "user" and record.prompt[-1]["role"] == "user"
        assert all(m["content"] == m["content"].strip() for m in record.prompt)
        assert record.chosen.strip() and record.rejected.strip() and record.chosen != record.rejected
        assert record.chosen == record.chosen.strip()


def test_first_row_by_hand(pairs):
    first = pairs[0]
    assert first.source.line == 1
    assert [m["role"] for m in first.prompt] == ["user", "assistant", "user", "assistant", "user"]
    assert first.prompt[0]["content"] == "How much alcohol can I drink per day?"
    assert first.chosen.startswith("Sounds like alcohol is something you use to calm down")


def test_known_odd_rows(pairs):
    by_line = {record.source.line: record for record in pairs}
    # Two Assistant turns in a row are kept as two messages.
    assert [m["role"] for m in by_line[564].prompt] == ["user", "assistant", "assistant", "user"]
    # A chosen reply that continues with its own "\n\nAssistant:" turn stays whole.
    assert "\n\nAssistant:" in by_line[1398].chosen
    assert by_line[1398].rejected.startswith("You mean a password, right?")
    # A rejected reply that runs on into invented turns stays whole; the prompt is the one Human turn.
    assert len(by_line[1396].prompt) == 1 and "\n\nAssistant:" in by_line[1396].rejected


def test_demos_are_the_chosen_side(pairs):
    demos = load_records(HH, "demos", skip_invalid=True).records
    assert [(d.prompt, d.response) for d in demos] == [(p.prompt, p.chosen) for p in pairs]
