"""JSON from untrusted text with limits: no numbers thousands of digits long, no NaN, bounded depth.

The standard library parses a 5000-digit integer by raising a bare ValueError (CPython's 4300-digit
guard), turns ``1e400`` into ``inf``, accepts ``NaN``, and answers very deep nesting with a
RecursionError: each of those used to escape as a traceback (a 500 in the app). `loads` turns them
all into `JsonLimitError`, a ValueError with a message a person can act on.
"""

from __future__ import annotations

import json
import math
from typing import Any

MAX_NUMBER_CHARS = 100
"""Longest number literal accepted (a float64 needs at most 24 characters)."""

MAX_DEPTH = 64
"""Deepest nesting of lists and objects accepted (every format rlhfkit reads needs less than 8)."""


class JsonLimitError(ValueError):
    """Valid JSON outside the limits above."""


def _int(literal: str) -> int:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonLimitError(f"a number with {len(literal)} digits (at most {MAX_NUMBER_CHARS})")
    return int(literal)


def _float(literal: str) -> float:
    if len(literal) > MAX_NUMBER_CHARS:
        raise JsonLimitError(f"a number with {len(literal)} characters (at most {MAX_NUMBER_CHARS})")
    value = float(literal)
    if not math.isfinite(value):
        raise JsonLimitError(f"the number {literal} is out of range")
    return value


def _constant(name: str) -> float:
    raise JsonLimitError(f"{name} is not a JSON number")


def depth(value: Any) -> int:
    """Nesting depth of lists and dicts (a scalar is 0), walked without recursion."""
    deepest, stack = 0, [(value, 1)]
    while stack:
        node, level = stack.pop()
        children = node.values() if isinstance(node, dict) else node if isinstance(node, list) else None
        if children is None:
            continue
        deepest = max(deepest, level)
        if deepest > MAX_DEPTH:
            break
        stack.extend((child, level + 1) for child in children)
    return deepest


def check_depth(value: Any) -> Any:
    """`value` unchanged, or JsonLimitError when it nests deeper than `MAX_DEPTH`."""
    if depth(value) > MAX_DEPTH:
        raise JsonLimitError(f"nested more than {MAX_DEPTH} levels deep")
    return value


def loads(text: str | bytes) -> Any:
    """`json.loads` within the limits; json.JSONDecodeError for bad syntax, JsonLimitError otherwise."""
    try:
        value = json.loads(text, parse_int=_int, parse_float=_float, parse_constant=_constant)
    except RecursionError:
        raise JsonLimitError(f"nested more than {MAX_DEPTH} levels deep") from None
    return check_depth(value)
