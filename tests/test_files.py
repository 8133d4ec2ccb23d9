"""rlhfkit.files: every write that must not tear, and the JSONL logs a resumed run truncates."""

from __future__ import annotations

import gzip
import json
from pathlib import Path

import pytest

from rlhfkit.files import (
    append_jsonl,
    staged_dir,
    truncate_jsonl_after,
    write_atomic,
    write_json_atomic,
    write_jsonl_atomic,
)


def test_write_json_atomic_replaces_whole_file(tmp_path: Path) -> None:
    path = tmp_path / "a" / "x.json"
    write_json_atomic(path, {"v": 1})
    write_json_atomic(path, {"v": [2, 3]})
    assert json.loads(path.read_text()) == {"v": [2, 3]}
    assert sorted(p.name for p in path.parent.iterdir()) == ["x.json"]


def test_a_failing_writer_leaves_the_old_file_and_no_temporary(tmp_path: Path) -> None:
    path = tmp_path / "x.txt"
    path.write_text("old")

    def broken(tmp: Path) -> None:
        tmp.write_text("half")
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_atomic(path, broken)
    assert path.read_text() == "old" and [p.name for p in tmp_path.iterdir()] == ["x.txt"]


def test_jsonl_gz_and_no_nan(tmp_path: Path) -> None:
    rows = [{"a": 1}, {"b": "é"}]
    assert write_jsonl_atomic(tmp_path / "r.jsonl.gz", rows) == 2
    lines = gzip.decompress((tmp_path / "r.jsonl.gz").read_bytes()).decode().splitlines()
    assert [json.loads(x) for x in lines] == rows
    with pytest.raises(ValueError):
        write_jsonl_atomic(tmp_path / "n.jsonl", [{"x": float("nan")}])
    assert not (tmp_path / "n.jsonl").exists()


def test_truncate_after_drops_later_steps_and_torn_lines(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    append_jsonl(path, [{"step": s, "v": s * 1.5} for s in range(1, 6)])
    with open(path, "a") as f:
        f.write('{"step": 6, "v"')  # torn by a crash mid-write
    truncate_jsonl_after(path, 3)
    assert [json.loads(x)["step"] for x in path.read_text().splitlines()] == [1, 2, 3]
    truncate_jsonl_after(tmp_path / "absent.jsonl", 3)  # nothing to do


def test_staged_dir_publishes_whole_or_not_at_all(tmp_path: Path) -> None:
    target = tmp_path / "ckpt"
    with staged_dir(target) as tmp:
        (tmp / "a").write_text("1")
    assert (target / "a").read_text() == "1"
    with pytest.raises(RuntimeError), staged_dir(target) as tmp:
        (tmp / "a").write_text("2")
        raise RuntimeError("killed")
    assert (target / "a").read_text() == "1" and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
    with staged_dir(target) as tmp:
        (tmp / "b").write_text("3")
    assert sorted(p.name for p in target.iterdir()) == ["b"] and sorted(p.name for p in tmp_path.iterdir()) == ["ckpt"]
