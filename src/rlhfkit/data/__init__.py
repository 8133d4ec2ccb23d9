"""Data layer: typed records and the loaders that validate them.

Everything here is plain text (never tokens) and knows nothing of models or training. Load a file or
dataset of any supported format as one record kind::

    from rlhfkit.data import load_records

    result = load_records("pairs.jsonl", "pairs", skip_invalid=True)
    print(result.summary())          # "1663 rows, 3 skipped (empty text: 3)"
    comparisons = result.records     # list[Comparison]

Kinds: "prompts" (`Prompt`), "demos" (`Demonstration`), "pairs" (`Comparison`), "rankings"
(`Ranking`), "ratings" (`Rating`). Sources: .jsonl(.gz), .json, .csv, a ``save_to_disk`` directory,
``hf:NAME[:split]``. Formats (rlhfkit canonical, TRL standard and conversational, HH-RLHF) are listed
in `rlhfkit.data.formats`. Every bad input raises `DataError` with file, line and field.
"""

from __future__ import annotations

from rlhfkit.data.errors import DataError
from rlhfkit.data.loaders import LoadResult, SkippedRow, iter_jsonl, load_records, split_records, write_jsonl
from rlhfkit.data.records import (
    Comparison,
    Demonstration,
    Message,
    Prompt,
    PromptText,
    Ranking,
    Rating,
    Record,
    RecordKind,
    Source,
    prompt_text,
    to_json,
)

__all__ = [
    "Comparison",
    "DataError",
    "Demonstration",
    "LoadResult",
    "Message",
    "Prompt",
    "PromptText",
    "Ranking",
    "Rating",
    "Record",
    "RecordKind",
    "SkippedRow",
    "Source",
    "iter_jsonl",
    "load_records",
    "prompt_text",
    "split_records",
    "to_json",
    "write_jsonl",
]
