"""Readers that turn a source (file, ``save_to_disk`` directory, ``hf:NAME[:split]``) into raw rows.

Each reader yields ``(Source, row)`` where `row` is a dict, or a `DataError` for a row that could not
be read at all (an invalid JSON line): yielding instead of raising lets the loader skip it when asked.
Problems with the source as a whole (missing file, unknown type, offline hub) raise at once, line 0.
"""

from __future__ import annotations

import csv
import gzip
import json
import os
import socket
import threading
from collections.abc import Callable, Iterator
from pathlib import Path
from typing import IO, Any, cast
from urllib.parse import urlsplit

from rlhfkit.data import safejson
from rlhfkit.data.errors import DataError
from rlhfkit.data.records import Source

RawRow = tuple[Source, dict[str, Any] | DataError]

HUB_PREFIX = "hf:"
HUB_PROBE_TIMEOUT_S = 3.0
"""How long to wait for the Hub to answer before declaring it unreachable (never hang offline)."""


def _source_error(path: str, message: str, line: int = 0) -> DataError:
    return DataError(path, line, "<source>", message, reason="unreadable source")


def _open_text(path: Path, newline: str | None = None) -> IO[str]:
    # utf-8-sig drops a byte-order mark, which spreadsheet exports often add.
    if path.name.lower().endswith(".gz"):
        return gzip.open(path, "rt", encoding="utf-8-sig", newline=newline)
    return open(path, encoding="utf-8-sig", newline=newline)


def _object(src: Source, value: Any) -> dict[str, Any] | DataError:
    if isinstance(value, dict):
        return value
    message = f"expected a JSON object, got {type(value).__name__}"
    return DataError(src.path, src.line, "<json>", message, reason="wrong type")


def _open_bytes(path: Path) -> IO[bytes]:
    if path.name.lower().endswith(".gz"):
        return cast(IO[bytes], gzip.open(path, "rb"))
    return open(path, "rb")


def _json_line(src: Source, raw: bytes) -> dict[str, Any] | DataError | None:
    """One JSONL line (bytes) as an object, the DataError naming this line, or None when blank."""
    where = (src.path, src.line, "<json>")
    try:
        # Decoded line by line, not by a text stream: a stream decodes ahead in chunks, so a bad
        # byte was reported on the wrong line and took the rest of the file with it.
        text = raw.decode("utf-8-sig" if src.line == 1 else "utf-8")
    except UnicodeDecodeError as err:
        return DataError(*where, f"not UTF-8 text (byte {err.start + 1} of the line)", reason="not UTF-8")
    if not text.strip():
        return None
    try:
        return _object(src, safejson.loads(text))
    except json.JSONDecodeError as err:
        return DataError(*where, f"invalid JSON: {err.msg} (column {err.colno})", reason="invalid JSON")
    except safejson.JsonLimitError as err:
        return DataError(*where, f"JSON outside the limits: {err}", reason="JSON outside the limits")


def jsonl_rows(path: Path) -> Iterator[RawRow]:
    """One row per non-blank line; line numbers are 1-based file lines."""
    number = 0
    try:
        with _open_bytes(path) as handle:
            for number, line in enumerate(handle, 1):
                src = Source(str(path), number)
                row = _json_line(src, line) if line.strip() else None
                if row is not None:
                    yield src, row
    except (OSError, EOFError) as err:
        raise _source_error(str(path), f"cannot read the file: {err}", number + 1) from err


def json_rows(path: Path) -> Iterator[RawRow]:
    """Items of a JSON list of objects, each located at the file line where it starts."""
    try:
        with _open_text(path) as handle:
            text = handle.read()
        items = safejson.loads(text)
    except json.JSONDecodeError as err:
        message = f"invalid JSON: {err.msg}"
        raise DataError(str(path), err.lineno, "<json>", message, reason="invalid JSON") from err
    except safejson.JsonLimitError as err:
        raise DataError(
            str(path), 0, "<json>", f"JSON outside the limits: {err}", reason="JSON outside the limits"
        ) from err
    except (UnicodeDecodeError, OSError, EOFError) as err:
        raise _source_error(str(path), f"cannot read the file: {err}") from err
    if not isinstance(items, list):
        raise DataError(str(path), 1, "<json>", "expected a JSON list of objects", reason="wrong type")
    for line, value in zip(_item_lines(text), items, strict=True):
        src = Source(str(path), line)
        yield src, _object(src, value)


def _item_lines(text: str) -> Iterator[int]:
    """1-based line of each item of the (already validated) top-level JSON list in `text`."""
    decoder = json.JSONDecoder()
    pos, line = text.index("[") + 1, 1 + text.count("\n", 0, text.index("["))
    while True:
        start = _skip(text, pos, " \t\r\n,")
        if text[start] == "]":
            return
        line += text.count("\n", pos, start)
        yield line
        _, end = decoder.raw_decode(text, start)
        line += text.count("\n", start, end)
        pos = end


def _skip(text: str, pos: int, chars: str) -> int:
    while text[pos] in chars:
        pos += 1
    return pos


# ---- CSV --------------------------------------------------------------------------------------


def _json_cell(cell: str) -> Any:
    try:
        return safejson.loads(cell)
    except (json.JSONDecodeError, safejson.JsonLimitError):
        return cell  # left as text: the field's validation names the wrong type


def _number_cell(cell: str) -> Any:
    try:
        return float(cell)
    except ValueError:
        return cell


def _bool_cell(cell: str) -> Any:
    return {"true": True, "false": False, "1": True, "0": False}.get(cell.strip().lower(), cell)


def _text_cell(cell: str) -> Any:
    # A conversation in a CSV cell is written as a JSON list of messages; any other text stays text
    # (a prompt may well start with "[").
    if cell.lstrip().startswith("["):
        value = _json_cell(cell)
        if isinstance(value, list) and value and all(isinstance(m, dict) for m in value):
            return value
    return cell


_CSV_CELLS: dict[str, Callable[[str], Any]] = {
    "rating": _number_cell,
    "margin": _number_cell,
    "tie": _bool_cell,
    "scale": _json_cell,
    "aspects": _json_cell,
    "responses": _json_cell,
}
"""Column name -> how to decode its text cells; other columns hold text or JSON conversations."""


def _csv_row(header: list[str], cells: list[str]) -> dict[str, Any]:
    # An empty cell is an absent value (an optional column left blank), except in text columns,
    # where it is an empty text that validation reports as such.
    return {
        name: _CSV_CELLS.get(name, _text_cell)(cell)
        for name, cell in zip(header, cells, strict=False)
        if cell != "" or name not in _CSV_CELLS
    }


def csv_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a CSV file with a header; a row's line is the file line where it starts (header = 1)."""
    try:
        with _open_text(path, newline="") as handle:
            reader = csv.reader(handle)
            header = next(reader, None)
            if header is None:
                return
            start = reader.line_num + 1
            for cells in reader:
                src, start = Source(str(path), start), reader.line_num + 1
                if not cells:
                    continue
                if len(cells) > len(header):
                    message = f"{len(cells)} cells but the header has {len(header)} columns"
                    yield src, DataError(str(path), src.line, "<csv>", message, reason="invalid CSV")
                    continue
                yield src, _csv_row(header, cells)
    except (UnicodeDecodeError, OSError, EOFError, csv.Error) as err:
        raise _source_error(str(path), f"cannot read the file: {err}") from err


# ---- datasets ---------------------------------------------------------------------------------


def _dataset_rows(dataset: Any, name: str) -> Iterator[RawRow]:
    for index, row in enumerate(dataset):
        yield Source(name, index), row


def dataset_dir_rows(path: Path) -> Iterator[RawRow]:
    """Rows of a directory written by ``datasets.Dataset.save_to_disk``; lines are row indices."""
    import datasets  # lazy: importing it costs seconds and most loads never need it

    try:
        dataset = datasets.load_from_disk(str(path))
    except (FileNotFoundError, ValueError, OSError) as err:
        raise _source_error(str(path), f"not a directory written by datasets save_to_disk: {err}") from err
    if isinstance(dataset, datasets.DatasetDict):
        splits = list(dataset)
        raise _source_error(
            str(path), f"holds several splits {splits}; pass one split's directory, e.g. {path / splits[0]}"
        )
    return _dataset_rows(dataset, str(path))


def hub_unreachable(endpoint: str, timeout: float) -> str | None:
    """Why `endpoint` cannot be reached within `timeout` seconds, or None if it answers.

    The connection runs in a daemon thread because name resolution has no timeout of its own and can
    stall for tens of seconds on a machine without a network.
    """
    url = urlsplit(endpoint)
    host, port = url.hostname or "", url.port or (443 if url.scheme == "https" else 80)
    outcome: list[str | None] = []

    def probe() -> None:
        try:
            socket.create_connection((host, port), timeout=timeout).close()
            outcome.append(None)
        except OSError as err:
            outcome.append(str(err) or type(err).__name__)

    thread = threading.Thread(target=probe, daemon=True)
    thread.start()
    thread.join(timeout)
    return outcome[0] if outcome else f"no answer within {timeout:g} s"


def hub_rows(source: str) -> Iterator[RawRow]:
    """Rows of ``hf:NAME[:split]`` (split defaults to "train") through ``datasets.load_dataset``.

    In offline mode (``HF_HUB_OFFLINE=1`` when ``datasets`` was imported) only the local cache is
    used, which fails fast; otherwise the Hub is probed first so that a machine without a network gets
    a clear error in seconds instead of a hang.
    """
    name, _, split = source[len(HUB_PREFIX) :].partition(":")
    if not name:
        raise _source_error(source, "expected hf:NAME[:split], e.g. hf:trl-lib/ultrafeedback_binarized:train")
    import datasets  # lazy, see dataset_dir_rows
    from huggingface_hub import constants

    if not datasets.config.HF_HUB_OFFLINE:
        endpoint = os.environ.get("HF_ENDPOINT") or constants.ENDPOINT
        problem = hub_unreachable(endpoint, HUB_PROBE_TIMEOUT_S)
        if problem is not None:
            raise DataError(
                source,
                0,
                "<source>",
                f"cannot reach {endpoint} ({problem}); run with HF_HUB_OFFLINE=1 to use the local cache, "
                "or pass a local .jsonl/.json/.csv file or a save_to_disk directory",
                reason="offline",
            )
    try:
        dataset = datasets.load_dataset(name, split=split or "train")
    except Exception as err:  # datasets raises many types (ConnectionError, ValueError, FileNotFoundError...)
        raise _source_error(source, f"cannot load {name!r}: {type(err).__name__}: {err}") from err
    return _dataset_rows(dataset, source)


# ---- dispatch ---------------------------------------------------------------------------------

FILE_READERS: dict[str, Callable[[Path], Iterator[RawRow]]] = {
    ".jsonl": jsonl_rows,
    ".json": json_rows,
    ".csv": csv_rows,
}
"""File suffix (after removing a final ``.gz``) -> reader."""


def _suffix(path: Path) -> str:
    name = path.name.lower()
    return Path(name.removesuffix(".gz")).suffix


def check_file(path: Path) -> None:
    if not path.exists():
        raise _source_error(str(path), "no such file or directory")
    if not path.is_file():
        raise _source_error(str(path), "not a file")


def open_rows(source: str | Path) -> Iterator[RawRow]:
    """Raw rows of any supported source; source-level problems raise here or on the first row."""
    if isinstance(source, str) and source.startswith(HUB_PREFIX):
        return hub_rows(source)
    path = Path(source)
    if path.is_dir():
        return dataset_dir_rows(path)
    check_file(path)
    reader = FILE_READERS.get(_suffix(path))
    if reader is None:
        raise _source_error(
            str(path),
            f"unsupported file type {''.join(path.suffixes)!r}; expected .jsonl, .jsonl.gz, .json, .csv, "
            "a save_to_disk directory or hf:NAME[:split]",
        )
    return reader(path)
