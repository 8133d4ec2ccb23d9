"""Files you can read in one sitting, functions you can hold in your head: no source file over 400
lines, no function over 60, except the few listed here with the reason."""

from __future__ import annotations

import ast
from pathlib import Path

SRC = Path(__file__).resolve().parents[1] / "src" / "rlhfkit"

MAX_FILE_LINES = 400
MAX_FUNCTION_LINES = 60

EXCEPTIONS = {
    "feedback/migrations/versions/0001_initial.py:upgrade": "a released Alembic migration: the schema as it "
    "was created, one table after another; editing it would change what old databases were built from",
}
"""``path:function`` -> why it may be longer."""


def _functions() -> list[tuple[str, int]]:
    out = []
    for path in sorted(SRC.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, (ast.FunctionDef, ast.AsyncFunctionDef)):
                assert node.end_lineno is not None
                out.append((f"{path.relative_to(SRC)}:{node.name}", node.end_lineno - node.lineno + 1))
    return out


def test_no_source_file_is_over_400_lines() -> None:
    long = {str(p.relative_to(SRC)): n for p in SRC.rglob("*.py") if (n := len(p.read_text().splitlines())) > 400}
    assert not long, f"files over {MAX_FILE_LINES} lines: {long}"


def test_no_function_is_over_60_lines() -> None:
    long = {name: n for name, n in _functions() if n > MAX_FUNCTION_LINES and name not in EXCEPTIONS}
    assert not long, f"functions over {MAX_FUNCTION_LINES} lines: {long}"


def test_every_exception_is_still_needed() -> None:
    lengths = dict(_functions())
    assert all(lengths.get(name, 0) > MAX_FUNCTION_LINES for name in EXCEPTIONS)
