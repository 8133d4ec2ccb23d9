"""The one error type of the data layer: bad input, located to a file, a line and a field."""

from __future__ import annotations


class DataError(ValueError):
    """A row (or a whole source) that cannot be turned into records.

    `line` is 1-based for JSONL and JSON files; for CSV it is the file line where the row starts
    (the header is line 1, so the first data row is line 2); for ``datasets`` sources it is the row
    index, so that ``dataset[line]`` is the offending row. Errors about a whole source use line 0.

    `reason` is a short, stable category ("empty text", "identical chosen and rejected", ...) used to
    group skipped rows in reports; `message` is the full human-readable explanation.
    """

    def __init__(self, path: str, line: int, field: str, message: str, *, reason: str | None = None) -> None:
        super().__init__(f"{path}:{line}: field '{field}': {message}")
        self.path = path
        self.line = line
        self.field = field
        self.message = message
        self.reason = reason if reason is not None else message

    def __str__(self) -> str:
        return f"{self.path}:{self.line}: field '{self.field}': {self.message}"

    def __reduce__(self) -> tuple[object, ...]:
        # Keyword-only `reason` would be lost by the default BaseException pickling (which replays
        # `args`); errors cross process boundaries in data-loading workers, so keep them picklable.
        return (_rebuild, (self.path, self.line, self.field, self.message, self.reason))


def _rebuild(path: str, line: int, field: str, message: str, reason: str) -> DataError:
    return DataError(path, line, field, message, reason=reason)
