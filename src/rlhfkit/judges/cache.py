"""A judge's answers on disk, keyed by (judge, rendered question): a crashed or repeated run never pays twice.

One SQLite file (the standard library's ``sqlite3``: one writer, atomic commits, nothing to install)
in the run directory. The key hashes the judge's name, the rendered messages (template and item,
in the order shown) and the option labels.
"""

from __future__ import annotations

import hashlib
import json
import sqlite3
from pathlib import Path


def cache_key(judge: str, messages: list[dict[str, str]], options: tuple[str, ...]) -> str:
    """SHA-256 of the canonical JSON of (judge, messages, options)."""
    blob = json.dumps([judge, messages, list(options)], sort_keys=True, ensure_ascii=False)
    return hashlib.sha256(blob.encode("utf-8")).hexdigest()


class JudgeCache:
    """Answers by key in a SQLite file (each `put` is committed before it returns)."""

    def __init__(self, path: str | Path) -> None:
        self.path = Path(path)
        self.path.parent.mkdir(parents=True, exist_ok=True)
        self._db = sqlite3.connect(self.path, check_same_thread=False)
        self._db.execute("CREATE TABLE IF NOT EXISTS answers (key TEXT PRIMARY KEY, text TEXT, logprobs TEXT)")
        self._db.commit()

    def get(self, key: str) -> tuple[str, dict[str, float] | None] | None:
        row = self._db.execute("SELECT text, logprobs FROM answers WHERE key = ?", (key,)).fetchone()
        if row is None:
            return None
        return row[0], (None if row[1] is None else json.loads(row[1]))

    def put(self, key: str, text: str, logprobs: dict[str, float] | None) -> None:
        blob = None if logprobs is None else json.dumps(logprobs)
        with self._db:
            self._db.execute("INSERT OR REPLACE INTO answers VALUES (?, ?, ?)", (key, text, blob))

    def __len__(self) -> int:
        return int(self._db.execute("SELECT COUNT(*) FROM answers").fetchone()[0])

    def close(self) -> None:
        self._db.close()
