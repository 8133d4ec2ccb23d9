"""Hostile JSONL lines (issue 24): each is a file:line DataError, and `skip_invalid` skips exactly it."""

from __future__ import annotations

import gzip
import json

import pytest

from rlhfkit.data import DataError, load_records, safejson

GOOD = json.dumps({"prompt": "p", "chosen": "a", "rejected": "b"}).encode()

HOSTILE = [
    # '{"prompt": "caf' is 15 bytes, so the Latin-1 é is byte 16
    (b'{"prompt": "caf\xe9", "chosen": "a", "rejected": "b"}', "not UTF-8 text (byte 16 of the line)"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "b", "n": ' + b"9" * 5000 + b"}", "5000 digits"),
    (b'{"prompt": ' + b"[" * 100_000 + b"]" * 100_000 + b"}", f"more than {safejson.MAX_DEPTH} levels deep"),
    (b'{"prompt": ' + b"[" * 70 + b"]" * 70 + b"}", f"more than {safejson.MAX_DEPTH} levels deep"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "b", "x": NaN}', "NaN is not a JSON number"),
    (b'{"prompt": "p", "chosen": "a", "rejected": "b", "x": 1e400}', "out of range"),
]


@pytest.mark.parametrize(("line", "message"), HOSTILE, ids=["latin-1", "digits", "deep", "depth-70", "nan", "1e400"])
@pytest.mark.parametrize("suffix", [".jsonl", ".jsonl.gz"])
def test_hostile_line_is_a_file_line_error(tmp_path, line: bytes, message: str, suffix: str) -> None:
    path = tmp_path / f"pairs{suffix}"
    data = b"\n".join([GOOD, GOOD, line, GOOD]) + b"\n"
    path.write_bytes(gzip.compress(data) if suffix.endswith(".gz") else data)
    with pytest.raises(DataError) as caught:
        load_records(path, "pairs")
    assert caught.value.line == 3 and message in str(caught.value), str(caught.value)
    result = load_records(path, "pairs", skip_invalid=True)
    assert len(result.records) == 3  # the lines after the bad one are still read
    assert [s.line for s in result.skipped] == [3]


def test_bom_on_the_first_line_only_is_dropped(tmp_path) -> None:
    path = tmp_path / "pairs.jsonl"
    path.write_bytes(b"\xef\xbb\xbf" + GOOD + b"\n\n" + GOOD + b"\n")
    assert len(load_records(path, "pairs").records) == 2


def test_safejson_depth_is_counted_without_recursion() -> None:
    assert safejson.depth(1) == 0 and safejson.depth([[], {"a": [1]}]) == 3
    assert safejson.loads('{"a": [1, 2.5, "x"]}') == {"a": [1, 2.5, "x"]}
    nested: list = []
    for _ in range(10_000):  # deeper than Python's recursion limit: the walk must not recurse
        nested = [nested]
    assert safejson.depth(nested) > safejson.MAX_DEPTH


def test_csv_json_cells_outside_the_limits_are_row_errors(tmp_path) -> None:
    deep = "[" * 70 + "]" * 70  # deeper than MAX_DEPTH (a CSV cell cannot hold 100k characters anyway)
    path = tmp_path / "rank.csv"
    path.write_text(f'prompt,responses\np,"[""a"", ""b""]"\np,{deep}\np,[{"9" * 5000}]\n')
    result = load_records(path, "rankings", skip_invalid=True)
    assert len(result.records) == 1 and [s.line for s in result.skipped] == [3, 4]
    assert all(s.field == "responses" for s in result.skipped)
