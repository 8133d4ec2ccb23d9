"""Typed readers for the fields of one input row; each failure is a located `DataError`.

A row is a mapping from a JSONL line, a JSON list item, a CSV row or a ``datasets`` row. A key whose
value is ``None`` counts as absent: ``datasets`` fills columns a row does not have with ``None``.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

from rlhfkit.data.errors import DataError
from rlhfkit.data.records import Message, PromptText, Source

ROLES: tuple[str, ...] = ("system", "user", "assistant")
"""Chat roles a message may have (those of TRL's conversational datasets)."""

Row = Mapping[str, Any]


@dataclass(frozen=True)
class RowContext:
    """Where a row comes from and the settings its parsing needs."""

    source: Source
    """File (or dataset) and line of the row, for error messages and `record.source`."""
    rating_scale: tuple[float, float] = (1.0, 7.0)
    """Scale of ratings for rows that do not declare their own ``"scale"``."""

    def __post_init__(self) -> None:
        low, high = self.rating_scale
        if not (math.isfinite(low) and math.isfinite(high) and low < high):
            raise ValueError(f"rating_scale must be finite with low < high, got {self.rating_scale}")

    def error(self, field: str, message: str, reason: str) -> DataError:
        return DataError(self.source.path, self.source.line, field, message, reason=reason)


def has(row: Row, key: str) -> bool:
    """Whether `row` carries `key` with a value (``None`` counts as absent)."""
    return row.get(key) is not None


def require(row: Row, key: str, ctx: RowContext) -> Any:
    if not has(row, key):
        raise ctx.error(key, "missing field", "missing field")
    return row[key]


def _type_name(value: Any) -> str:
    return type(value).__name__


def check_text(value: Any, field: str, ctx: RowContext) -> str:
    """A non-empty string; whitespace-only counts as empty because it trains or scores nothing."""
    if not isinstance(value, str):
        raise ctx.error(field, f"expected a string, got {_type_name(value)}", "wrong type")
    if not value.strip():
        raise ctx.error(field, "empty text (whitespace only counts as empty)", "empty text")
    return value


def text(row: Row, key: str, ctx: RowContext) -> str:
    return check_text(require(row, key, ctx), key, ctx)


def check_messages(value: Any, field: str, ctx: RowContext) -> list[Message]:
    """A non-empty list of ``{"role", "content"}`` messages, reduced to those two keys.

    Other keys (``name``, ``tool_calls`` = None filled in by ``datasets``...) are not part of a record.
    Content may be empty except where it is the response (checked by the callers).
    """
    if not isinstance(value, list):
        raise ctx.error(field, f"expected a list of messages, got {_type_name(value)}", "wrong type")
    if not value:
        raise ctx.error(field, "empty conversation", "empty text")
    out: list[Message] = []
    for i, message in enumerate(value):
        where = f"{field}[{i}]"
        if not isinstance(message, Mapping):
            raise ctx.error(where, f"expected a message object, got {_type_name(message)}", "wrong type")
        role = require_in(message, "role", where, ctx)
        if role not in ROLES:
            raise ctx.error(
                f"{where}.role", f"unknown role {role!r} (expected one of {', '.join(ROLES)})", "unknown role"
            )
        content = require_in(message, "content", where, ctx)
        if not isinstance(content, str):
            raise ctx.error(f"{where}.content", f"expected a string, got {_type_name(content)}", "wrong type")
        out.append({"role": role, "content": content})
    return out


def require_in(obj: Mapping[str, Any], key: str, where: str, ctx: RowContext) -> Any:
    """`obj[key]` of a nested object at `where`, or a 'missing field' error naming ``where.key``."""
    if obj.get(key) is None:
        raise ctx.error(f"{where}.{key}", "missing field", "missing field")
    return obj[key]


def prompt(row: Row, key: str, ctx: RowContext) -> PromptText:
    """A prompt: non-empty text, or a conversation with at least one non-empty message."""
    value = require(row, key, ctx)
    if not isinstance(value, list):
        return check_text(value, key, ctx)
    messages = check_messages(value, key, ctx)
    if not any(m["content"].strip() for m in messages):
        raise ctx.error(key, "every message is empty (whitespace only counts as empty)", "empty text")
    return messages


def assistant_reply(value: Any, field: str, ctx: RowContext) -> str:
    """The text of a conversational completion: exactly one assistant message, non-empty.

    TRL's conversational completions (``completion``, ``chosen``, ``rejected`` next to a ``prompt``)
    hold only the new turn; a longer list would hide turns that are neither prompt nor response.
    """
    messages = check_messages(value, field, ctx)
    if len(messages) != 1 or messages[0]["role"] != "assistant":
        roles = ", ".join(m["role"] for m in messages)
        raise ctx.error(
            field,
            f"expected exactly one assistant message, got [{roles}] (for whole conversations drop "
            "'prompt' and use the implicit-prompt form)",
            "wrong type",
        )
    return check_text(messages[0]["content"], f"{field}[0].content", ctx)


def final_assistant(messages: list[Message], field: str, ctx: RowContext) -> tuple[list[Message], str]:
    """Split a conversation into (the messages before its last message, that assistant reply)."""
    last = len(messages) - 1
    if messages[last]["role"] != "assistant":
        raise ctx.error(
            f"{field}[{last}].role",
            f"the conversation must end with an assistant message, got {messages[last]['role']!r}",
            "wrong type",
        )
    if last == 0:
        raise ctx.error(field, "no messages before the assistant reply to use as the prompt", "empty text")
    return messages[:last], check_text(messages[last]["content"], f"{field}[{last}].content", ctx)


def check_number(value: Any, field: str, ctx: RowContext) -> float:
    # bool is an int subclass in Python; `true` is never meant as a rating or a margin.
    if isinstance(value, bool) or not isinstance(value, int | float):
        raise ctx.error(field, f"expected a number, got {_type_name(value)} {value!r}", "wrong type")
    if not math.isfinite(value):
        raise ctx.error(field, f"expected a finite number, got {value!r}", "invalid value")
    return float(value)


def optional_bool(row: Row, key: str, ctx: RowContext, default: bool) -> bool:
    if not has(row, key):
        return default
    value = row[key]
    if not isinstance(value, bool):
        raise ctx.error(key, f"expected true or false, got {_type_name(value)} {value!r}", "wrong type")
    return value


def distinct(chosen: str, rejected: str, ctx: RowContext) -> None:
    """Reject a pair whose two sides are the same text: it carries no preference signal."""
    if chosen.strip() == rejected.strip():
        raise ctx.error("rejected", "identical chosen and rejected", "identical chosen and rejected")
