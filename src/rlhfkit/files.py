"""Files that survive ``kill -9`` at any moment: every write in rlhfkit that must not tear goes here.

A file is written under a temporary name in its own directory, flushed to disk, renamed over the
target (``os.replace`` is atomic on POSIX) and the directory entry is flushed too; a crash therefore
leaves the old file or the complete new one, never a truncated one. A directory (a checkpoint, a
model) is staged the same way and moved into place whole (`staged_dir`).

Append-only logs (``metrics.jsonl``, ``samples.jsonl``) are appended line by line; a run resumed from
step N first drops what a killed run wrote past N (`truncate_jsonl_after`), so no step is logged twice.
"""

from __future__ import annotations

import contextlib
import gzip
import io
import json
import os
import secrets
import shutil
import tempfile
from collections.abc import Callable, Iterable, Iterator, Mapping
from pathlib import Path
from typing import Any


def cache_dir() -> Path:
    """rlhfkit's cache: ``$RLHFKIT_CACHE``, else ``$XDG_CACHE_HOME/rlhfkit``, else ``~/.cache/rlhfkit``."""
    if env := os.environ.get("RLHFKIT_CACHE"):
        return Path(env)
    base = os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache"
    return Path(base) / "rlhfkit"


def fsync_dir(directory: Path) -> None:
    """Make a rename inside `directory` durable (POSIX; a no-op where directories cannot be opened)."""
    try:
        fd = os.open(directory, os.O_RDONLY)
    except OSError:
        return
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


def fsync_tree(path: Path) -> None:
    """Flush every file below `path` to disk, so a rename after it publishes complete files."""
    for root, _, files in os.walk(path):
        for name in files:
            with open(os.path.join(root, name), "rb") as f:
                os.fsync(f.fileno())


def _temp_name(path: Path) -> Path:
    # A fresh name opened with "x" gets the usual umask permissions (mkstemp would force 0600).
    return path.with_name(f".{path.name}.{os.getpid()}.{secrets.token_hex(4)}.tmp")


def write_atomic(path: str | Path, write: Callable[[Path], object]) -> None:
    """Let `write(tmp)` fill a temporary file beside `path`, then flush it and rename it over `path`.

    `write` may be any writer that takes a path (``safetensors.torch.save_file``, ``Path.write_text``).
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = _temp_name(path)
    try:
        write(tmp)
        with open(tmp, "rb") as f:
            os.fsync(f.fileno())
        os.replace(tmp, path)
    except BaseException:
        tmp.unlink(missing_ok=True)
        raise
    fsync_dir(path.parent)


def write_text_atomic(path: str | Path, text: str) -> None:
    """Replace `path` with `text` (UTF-8), atomically."""
    write_atomic(path, lambda tmp: tmp.write_text(text, encoding="utf-8"))


def write_json_atomic(path: str | Path, data: Any) -> None:
    """Replace `path` with `data` as indented JSON, atomically."""
    write_text_atomic(path, json.dumps(data, indent=2, ensure_ascii=False) + "\n")


def write_jsonl_atomic(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> int:
    """Replace `path` with one JSON object per line, atomically; returns the number of rows.

    ``.gz`` paths are gzip-compressed (with a fixed mtime, so equal rows give equal bytes). NaN and
    infinity are refused: they are not JSON, and other tools would fail to read the file.
    """
    count = 0

    def write(tmp: Path) -> None:
        nonlocal count
        with open(tmp, "xb") as raw:
            sink: io.BufferedIOBase = (
                gzip.GzipFile(fileobj=raw, mode="wb", mtime=0) if str(path).endswith(".gz") else raw
            )
            for row in rows:
                sink.write(json.dumps(row, ensure_ascii=False, allow_nan=False).encode("utf-8") + b"\n")
                count += 1
            if sink is not raw:
                sink.close()

    write_atomic(path, write)
    return count


def append_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any]]) -> None:
    """Append rows to a JSONL log (a line torn by a crash is skipped by `truncate_jsonl_after`)."""
    with open(path, "a", encoding="utf-8") as f:
        for row in rows:
            f.write(json.dumps(row, ensure_ascii=False) + "\n")


def truncate_jsonl_after(path: str | Path, step: int, key: str = "step") -> None:
    """Drop the lines of a JSONL log whose `key` exceeds `step` (atomically).

    A run resumed from the checkpoint of step N logs steps N+1... again; what a killed run wrote past
    N would otherwise appear twice. Lines torn by the crash (not JSON, or without `key`) go too.
    """
    path = Path(path)
    if not path.exists():
        return
    kept = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            if int(json.loads(line)[key]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue
    write_text_atomic(path, "".join(k + "\n" for k in kept))


def publish_dir(staged: Path, target: Path) -> None:
    """Move the finished directory `staged` to `target` (same file system), replacing an older one.

    The old directory is first renamed aside, so `target` is at every moment either the old or the new
    complete directory, or (for an instant between the two renames) absent.
    """
    fsync_tree(staged)
    if target.exists():
        old = target.with_name(f".{target.name}.old-{os.getpid()}")
        os.replace(target, old)
        os.replace(staged, target)
        shutil.rmtree(old, ignore_errors=True)
    else:
        os.replace(staged, target)
    fsync_dir(target.parent)


@contextlib.contextmanager
def staged_dir(target: Path, prefix: str | None = None) -> Iterator[Path]:
    """Yield an empty directory beside `target`; when the block ends without an error it becomes
    `target` (`publish_dir`), otherwise it is deleted. `prefix` names the staging directory, so a
    caller can sweep the ones a killed process left behind."""
    target.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=prefix or f".{target.name}.", dir=target.parent))
    try:
        yield tmp
        publish_dir(tmp, target)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)
