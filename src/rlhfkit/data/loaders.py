"""Load records from files and datasets; write JSONL atomically; split deterministically."""

from __future__ import annotations

import json
import random
from collections import Counter
from collections.abc import Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, TypeVar

from rlhfkit.data.errors import DataError
from rlhfkit.data.fields import RowContext
from rlhfkit.data.formats import KINDS, parse_row
from rlhfkit.data.records import Record, RecordKind, Source, to_json
from rlhfkit.data.sources import check_file, jsonl_rows, open_rows
from rlhfkit.files import write_jsonl_atomic

DEFAULT_RATING_SCALE: tuple[float, float] = (1.0, 7.0)
"""Scale of ratings when neither the row nor the caller declares one (7-point Likert)."""

R = TypeVar("R", bound=Record)


@dataclass(frozen=True)
class SkippedRow:
    """A row left out by ``skip_invalid=True``, with the reason it was invalid."""

    path: str
    """The file, directory or ``hf:`` name the row came from."""
    line: int
    """Line of the row, as in `DataError.line`."""
    field: str
    """The field that was wrong (``"<json>"`` for a line that is not JSON)."""
    reason: str
    """Short category used to group skipped rows, e.g. "identical chosen and rejected"."""
    message: str
    """The full explanation, as in the `DataError` that would have been raised."""

    @classmethod
    def from_error(cls, err: DataError) -> SkippedRow:
        return cls(err.path, err.line, err.field, err.reason, err.message)

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"


@dataclass
class LoadResult:
    """The records of a source and every row that was skipped (nothing is dropped silently)."""

    records: list[Record] = field(default_factory=list)
    """Records in source order, all of the requested kind."""
    skipped: list[SkippedRow] = field(default_factory=list)
    """Invalid rows left out because ``skip_invalid=True``, in source order."""

    @property
    def rows(self) -> int:
        """Rows read: every row became a record or a skipped row."""
        return len(self.records) + len(self.skipped)

    def summary(self) -> str:
        """E.g. ``"1663 rows, 2 skipped (identical chosen and rejected: 2)"``."""
        text = f"{self.rows} rows, {len(self.skipped)} skipped"
        if not self.skipped:
            return text
        counts = Counter(row.reason for row in self.skipped).most_common()
        return text + " (" + ", ".join(f"{reason}: {n}" for reason, n in counts) + ")"


def _rating_scale(rating_scale: tuple[float, float] | None) -> tuple[float, float]:
    if rating_scale is None:
        return DEFAULT_RATING_SCALE
    low, high = rating_scale
    return float(low), float(high)


def load_records(
    source: str | Path,
    kind: RecordKind,
    *,
    skip_invalid: bool = False,
    rating_scale: tuple[float, float] | None = None,
    limit: int | None = None,
) -> LoadResult:
    """Load and validate every row of `source` as records of `kind`.

    `source` is a ``.jsonl`` / ``.jsonl.gz`` / ``.json`` (list of objects) / ``.csv`` file, a directory
    written by ``datasets.Dataset.save_to_disk``, or ``"hf:NAME[:split]"`` (split defaults to
    "train"). Rows may be in any format of `rlhfkit.data.formats`, mixed within a file.

    An invalid row raises a `DataError` naming its file, line and field; with ``skip_invalid=True`` it
    is listed in `LoadResult.skipped` instead. Errors about the source as a whole always raise.
    `rating_scale` applies to ratings rows without their own ``"scale"`` (default 1..7). `limit` stops
    reading once that many records have been loaded (skipped rows do not count).
    """
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    if limit is not None and limit < 0:
        raise ValueError(f"limit must be >= 0, got {limit}")
    scale = _rating_scale(rating_scale)
    RowContext(Source(str(source), 0), scale)  # validates the scale before any reading
    rows = open_rows(source)
    result = LoadResult()
    if limit == 0:
        return result
    for src, row in rows:
        try:
            if isinstance(row, DataError):
                raise row
            result.records.append(parse_row(row, kind, RowContext(src, scale)))
        except DataError as err:
            if not skip_invalid:
                raise
            result.skipped.append(SkippedRow.from_error(err))
            continue
        if limit is not None and len(result.records) >= limit:
            break
    return result


def iter_jsonl(path: str | Path) -> Iterator[tuple[int, dict[str, Any]]]:
    """``(1-based line number, object)`` for each non-blank line; a bad line raises `DataError`."""
    path = Path(path)
    check_file(path)
    for src, row in jsonl_rows(path):
        if isinstance(row, DataError):
            raise row
        yield src.line, row


def _json_object(row: Mapping[str, Any] | Record) -> Mapping[str, Any]:
    return row if isinstance(row, Mapping) else to_json(row)


def write_jsonl(path: str | Path, rows: Iterable[Mapping[str, Any] | Record]) -> int:
    """Write one JSON object per line, atomically; returns the number of rows written.

    Rows may be dicts or records (written in their canonical form). The file is written by
    `rlhfkit.files.write_jsonl_atomic`: a crash leaves either the old file or the complete new one,
    never a truncated file; ``.gz`` paths are gzip-compressed; NaN and infinity are refused (they are
    not JSON).
    """
    return write_jsonl_atomic(path, (_json_object(row) for row in rows))


def _prompt_key(record: Record) -> str:
    return record.prompt if isinstance(record.prompt, str) else json.dumps(record.prompt, sort_keys=True)


def split_records(records: Sequence[R], holdout_fraction: float, seed: int) -> tuple[list[R], list[R]]:
    """Deterministic (train, holdout) split that keeps records sharing a prompt on the same side.

    Several comparisons often share one prompt; splitting them apart would let a reward model be
    evaluated on prompts it was trained on. Prompt groups are shuffled with ``random.Random(seed)``
    and moved to the holdout until it holds ``round(holdout_fraction * len(records))`` records (it may
    exceed that by less than one group). Both lists keep the input order.
    """
    if not 0.0 <= holdout_fraction <= 1.0:
        raise ValueError(f"holdout_fraction must be in [0, 1], got {holdout_fraction}")
    groups: dict[str, list[int]] = {}
    for index, record in enumerate(records):
        groups.setdefault(_prompt_key(record), []).append(index)
    order = list(groups)
    random.Random(seed).shuffle(order)
    target = round(holdout_fraction * len(records))
    held: set[int] = set()
    for key in order:
        if len(held) >= target:
            break
        held.update(groups[key])
    train = [r for i, r in enumerate(records) if i not in held]
    holdout = [r for i, r in enumerate(records) if i in held]
    return train, holdout


__all__ = [
    "DEFAULT_RATING_SCALE",
    "LoadResult",
    "SkippedRow",
    "iter_jsonl",
    "load_records",
    "split_records",
    "write_jsonl",
]
