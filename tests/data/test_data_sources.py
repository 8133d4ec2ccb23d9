"""Sources (JSONL, gzip, JSON, CSV, save_to_disk, hf:) and writing, reporting and limits."""

from __future__ import annotations

import csv
import gzip
import json
import socket
import time

import pytest

from rlhfkit.data import (
    Comparison,
    DataError,
    Demonstration,
    Prompt,
    Rating,
    iter_jsonl,
    load_records,
    sources,
    write_jsonl,
)

PAIR = {"prompt": "p", "chosen": "a", "rejected": "b"}
USER = {"role": "user", "content": "Hi"}


# ---- JSONL, gzip, JSON ---------------------------------------------------------------------------


def test_jsonl_blank_lines_are_ignored_but_counted(write_rows):
    path = write_rows(["", PAIR, "   ", PAIR])
    records = load_records(path, "pairs").records
    assert [r.source.line for r in records] == [2, 4]
    assert str(records[0].source) == f"{path}:2"


def test_jsonl_gz(tmp_path):
    path = tmp_path / "pairs.jsonl.gz"
    with gzip.open(path, "wt", encoding="utf-8") as handle:
        handle.write(json.dumps(PAIR) + "\n\n" + json.dumps({"prompt": "q", "chosen": "c", "rejected": "d"}) + "\n")
    records = load_records(path, "pairs").records
    assert records == [Comparison("p", "a", "b"), Comparison("q", "c", "d")]
    assert [r.source.line for r in records] == [1, 3]


def test_json_list_items_are_located_at_their_lines(tmp_path):
    path = tmp_path / "demos.json"
    path.write_text(
        '[\n  {"prompt": "a", "response": "x"},\n'
        '  {"prompt": "b",\n   "response": "y"},\n'
        '  {"prompt": "c", "response": ""}\n]\n',
        encoding="utf-8",
    )
    with pytest.raises(DataError) as err:
        load_records(path, "demos")
    assert (err.value.line, err.value.field) == (5, "response")
    result = load_records(path, "demos", skip_invalid=True)
    assert [r.source.line for r in result.records] == [2, 3]


def test_json_that_is_not_a_list_or_not_json(tmp_path):
    bad = tmp_path / "bad.json"
    bad.write_text('{"prompt": "a"}', encoding="utf-8")
    with pytest.raises(DataError, match="list of objects"):
        load_records(bad, "prompts")
    broken = tmp_path / "broken.json"
    broken.write_text('[\n{"prompt": "a"},\n{"prompt": }\n]', encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(broken, "prompts", skip_invalid=True)  # a broken file is not a skippable row
    assert (err.value.line, err.value.field) == (3, "<json>")


def test_source_level_errors(tmp_path):
    with pytest.raises(DataError) as err:
        load_records(tmp_path / "missing.jsonl", "pairs")
    assert (err.value.line, err.value.field) == (0, "<source>")
    odd = tmp_path / "data.parquet"
    odd.write_bytes(b"x")
    with pytest.raises(DataError, match="unsupported file type"):
        load_records(odd, "pairs")
    not_a_dataset = tmp_path / "folder"
    not_a_dataset.mkdir()
    with pytest.raises(DataError, match="save_to_disk"):
        load_records(not_a_dataset, "pairs")


# ---- CSV -----------------------------------------------------------------------------------------


def write_csv(path, header, rows):
    with open(path, "w", newline="", encoding="utf-8") as handle:
        writer = csv.writer(handle)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_csv_pairs_with_header_line_numbers(tmp_path):
    path = write_csv(
        tmp_path / "pairs.csv",
        ["prompt", "chosen", "rejected", "margin"],
        [["p", "a", "b", "1.5"], ["q", "multi\nline", "d", ""], ["r", "same", "same", ""]],
    )
    result = load_records(path, "pairs", skip_invalid=True)
    assert result.records == [Comparison("p", "a", "b", margin=1.5), Comparison("q", "multi\nline", "d")]
    # Header = line 1; the second row spans lines 3-4, so the third starts on line 5.
    assert [r.source.line for r in result.records] == [2, 3]
    assert [(s.line, s.field) for s in result.skipped] == [(5, "rejected")]


def test_csv_conversation_columns_as_json_and_numbers(tmp_path):
    chosen = json.dumps([USER, {"role": "assistant", "content": "Hello!"}])
    rejected = json.dumps([USER, {"role": "assistant", "content": "Go away."}])
    pairs = write_csv(tmp_path / "chat.csv", ["chosen", "rejected"], [[chosen, rejected]])
    assert load_records(pairs, "pairs").records == [Comparison([USER], "Hello!", "Go away.")]
    ratings = write_csv(
        tmp_path / "ratings.csv",
        ["prompt", "response", "rating", "scale", "aspects"],
        [["[Verse 1] write a line", "ok", "4", "[1, 5]", '{"tone": 2}'], ["p", "r", "lots", "", ""]],
    )
    with pytest.raises(DataError) as err:
        load_records(ratings, "ratings")
    assert (err.value.line, err.value.field, err.value.reason) == (3, "rating", "wrong type")
    [record] = load_records(ratings, "ratings", skip_invalid=True).records
    # A prompt starting with "[" that is not a JSON conversation stays text.
    assert record == Rating("[Verse 1] write a line", "ok", 4.0, (1.0, 5.0), {"tone": 2.0})


def test_csv_row_with_too_many_cells(tmp_path):
    path = tmp_path / "bad.csv"
    path.write_text("prompt,response\np,r\nq,s,extra\n", encoding="utf-8")
    with pytest.raises(DataError) as err:
        load_records(path, "demos")
    assert (err.value.line, err.value.field) == (3, "<csv>")


# ---- datasets ------------------------------------------------------------------------------------


def test_save_to_disk_dataset(tmp_path):
    datasets = pytest.importorskip("datasets")
    rows = [
        {
            "prompt": [USER],
            "chosen": [{"role": "assistant", "content": "Hello!"}],
            "rejected": [{"role": "assistant", "content": "No."}],
            "margin": 2.0,
        },
        {
            "prompt": [USER],
            "chosen": [{"role": "assistant", "content": "Hey."}],
            "rejected": [{"role": "assistant", "content": "Hey."}],
            "margin": None,
        },
        {
            "prompt": [USER],
            "chosen": [{"role": "assistant", "content": "Yo."}],
            "rejected": [{"role": "assistant", "content": "..."}],
            "margin": None,
        },
    ]
    directory = tmp_path / "saved"
    datasets.Dataset.from_list(rows).save_to_disk(str(directory))
    with pytest.raises(DataError) as err:
        load_records(directory, "pairs")
    # For datasets the line is the row index: dataset[1] is the offending row.
    assert (err.value.path, err.value.line, err.value.field) == (str(directory), 1, "rejected")
    result = load_records(directory, "pairs", skip_invalid=True)
    assert result.records == [Comparison([USER], "Hello!", "No.", margin=2.0), Comparison([USER], "Yo.", "...")]
    assert result.summary() == "3 rows, 1 skipped (identical chosen and rejected: 1)"
    assert load_records(directory, "demos", skip_invalid=True).records[0] == Demonstration([USER], "Hello!")


def test_save_to_disk_dataset_dict_asks_for_a_split(tmp_path):
    datasets = pytest.importorskip("datasets")
    split = datasets.Dataset.from_list([{"prompt": "p"}])
    datasets.DatasetDict({"train": split, "test": split}).save_to_disk(str(tmp_path / "dd"))
    with pytest.raises(DataError, match="several splits"):
        load_records(tmp_path / "dd", "prompts")
    assert load_records(tmp_path / "dd" / "test", "prompts").records == [Prompt("p")]


def test_hub_source_fails_fast_when_unreachable(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", False)
    monkeypatch.setenv("HF_ENDPOINT", "http://127.0.0.1:9")  # nothing listens on the discard port
    with pytest.raises(DataError) as err:
        load_records("hf:someone/some-set:test", "pairs")
    assert (err.value.path, err.value.line, err.value.field, err.value.reason) == (
        "hf:someone/some-set:test",
        0,
        "<source>",
        "offline",
    )
    assert "HF_HUB_OFFLINE=1" in err.value.message


def test_hub_source_in_offline_mode_uses_only_the_cache(monkeypatch):
    datasets = pytest.importorskip("datasets")
    monkeypatch.setattr(datasets.config, "HF_HUB_OFFLINE", True)
    with pytest.raises(DataError) as err:
        load_records("hf:rlhfkit-tests/not-cached", "pairs")
    assert err.value.field == "<source>" and "not-cached" in err.value.message
    with pytest.raises(DataError, match="hf:NAME"):
        load_records("hf:", "pairs")


def test_hub_probe_gives_up_after_its_timeout(monkeypatch):
    def stall(*args, **kwargs):
        time.sleep(5)
        raise TimeoutError("stalled")  # as a real connect does; the daemon thread outlives the test

    monkeypatch.setattr(sources.socket, "create_connection", stall)
    assert sources.hub_unreachable("https://example.invalid", timeout=0.05) == "no answer within 0.05 s"


def test_hub_probe_succeeds_against_a_listening_socket():
    with socket.create_server(("127.0.0.1", 0)) as server:
        port = server.getsockname()[1]
        assert sources.hub_unreachable(f"http://127.0.0.1:{port}", timeout=2.0) is None


# ---- writing, iterating, reporting, limits -------------------------------------------------------


def test_write_jsonl_round_trip_of_records_and_dicts(tmp_path):
    records = [Comparison("p", "a", "b", margin=1.0), Comparison([USER], "x", "y", tie=True)]
    path = tmp_path / "out" / "pairs.jsonl"
    assert write_jsonl(path, records) == 2
    assert load_records(path, "pairs").records == records
    assert write_jsonl(path, [{"prompt": "é"}]) == 1  # replaces the old file
    assert list(iter_jsonl(path)) == [(1, {"prompt": "é"})]
    assert "é" in path.read_text(encoding="utf-8")  # written as UTF-8, not \u escapes
    assert [p.name for p in path.parent.iterdir()] == ["pairs.jsonl"]  # no temporary file left


def test_write_jsonl_gz_round_trip(tmp_path):
    path = tmp_path / "demos.jsonl.gz"
    write_jsonl(path, [Demonstration("p", "r")])
    assert load_records(path, "demos").records == [Demonstration("p", "r")]


def test_write_jsonl_failure_keeps_the_old_file(tmp_path):
    path = tmp_path / "keep.jsonl"
    write_jsonl(path, [{"prompt": "old"}])

    def rows():
        yield {"prompt": "new"}
        raise RuntimeError("generator died")

    with pytest.raises(RuntimeError):
        write_jsonl(path, rows())
    with pytest.raises(ValueError):
        write_jsonl(path, [{"rating": float("nan")}])
    assert list(iter_jsonl(path)) == [(1, {"prompt": "old"})]
    assert [p.name for p in tmp_path.iterdir()] == ["keep.jsonl"]


def test_iter_jsonl_raises_on_bad_line(write_rows):
    path = write_rows([PAIR, "", "not json"])
    rows = iter_jsonl(path)
    assert next(rows) == (1, PAIR)
    with pytest.raises(DataError) as err:
        next(rows)
    assert (err.value.line, err.value.field) == (3, "<json>")


def test_skip_invalid_reports_every_skipped_row(write_rows):
    same = {"prompt": "p", "chosen": "x", "rejected": "x"}
    path = write_rows([PAIR, same, "{oops", same, {"prompt": "p", "chosen": "a"}, PAIR])
    with pytest.raises(DataError):
        load_records(path, "pairs")
    result = load_records(path, "pairs", skip_invalid=True)
    assert len(result.records) == 2
    assert [(s.line, s.field, s.reason) for s in result.skipped] == [
        (2, "rejected", "identical chosen and rejected"),
        (3, "<json>", "invalid JSON"),
        (4, "rejected", "identical chosen and rejected"),
        (5, "rejected", "missing field"),
    ]
    assert result.summary() == (
        "6 rows, 4 skipped (identical chosen and rejected: 2, invalid JSON: 1, missing field: 1)"
    )
    assert str(result.skipped[0]) == f"{path}:2: field 'rejected': identical chosen and rejected"
    assert load_records(path, "prompts", limit=1).summary() == "1 rows, 0 skipped"


def test_limit_counts_records_not_skipped_rows(write_rows):
    path = write_rows(["{bad", PAIR, PAIR, PAIR])
    result = load_records(path, "pairs", skip_invalid=True, limit=2)
    assert len(result.records) == 2 and len(result.skipped) == 1
    assert load_records(path, "pairs", skip_invalid=True, limit=0).rows == 0
