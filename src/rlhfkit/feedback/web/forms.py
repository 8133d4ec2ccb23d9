"""HTML form fields -> answer payloads: each task type's own fields, plus the ones every task has.

Each task type reads its own fields (`TaskType.read_form`; the field names are documented in its
module under `rlhfkit.feedback.tasks`). Every task form also has:

==========  ====================================================================
``flag-ID`` harm flags of response ``ID`` (checkboxes, repeated; the harm panel)
comment     free text for the admins
duration_ms time on the task, measured by the browser
==========  ====================================================================

Validation happens afterwards in the task type's normalizer, exactly as for the JSON API.
"""

from __future__ import annotations

import math
import re
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.entities import TaskView
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tasks import task_type
from rlhfkit.feedback.tasks.base import form_text


def common_fields(form: FormData, task: TaskView) -> dict[str, Any]:
    """Harm flags and the comment, accepted on every task type."""
    flags = {str(r.id): [v for v in form.getlist(f"flag-{r.id}") if isinstance(v, str)] for r in task.responses}
    out: dict[str, Any] = {"flags": {k: v for k, v in flags.items() if v}}
    comment = form_text(form, "comment")
    if comment.strip():
        out["comment"] = comment
    return out


def payload_from_form(form: FormData, task: TaskView) -> dict[str, Any]:
    """The answer a task form encodes (not yet validated)."""
    return {**task_type(task.task_type).read_form(form, task), **common_fields(form, task)}


ASCII_INT = re.compile(r"[+-]?[0-9]{1,19}")
"""An integer as a form sends it. Not `str.isdigit`: '²' and '١' are digits to it but '²' is not
to `int()` (a 500 before this), and `int()` reads thousands of digits slowly or not at all."""

ASCII_FLOAT = re.compile(r"[+-]?([0-9]{1,19}(\.[0-9]{0,19})?|\.[0-9]{1,19})([eE][+-]?[0-9]{1,3})?")
"""A finite decimal number ('nan', 'inf' and '1_0' are not numbers to a person typing one)."""


def duration_from_form(form: FormData) -> int | None:
    """Client-measured time on the task, in ms (None when absent or garbled)."""
    raw = form_text(form, "duration_ms").strip()
    return int(raw) if re.fullmatch(r"[0-9]{1,11}", raw) else None


def form_int(form: FormData, key: str, default: int, lo: int, hi: int) -> int:
    """An integer field in [lo, hi] (`default` when empty); Invalid with the field's name otherwise."""
    raw = form_text(form, key).strip()
    if not raw:
        return default
    if not ASCII_INT.fullmatch(raw) or not lo <= int(raw) <= hi:
        raise Invalid(f"{key} must be a whole number from {lo} to {hi}, got {raw[:40]!r}")
    return int(raw)


def form_float(form: FormData, key: str, default: float) -> float:
    """A finite decimal field (`default` when empty; its range is the config's to check)."""
    raw = form_text(form, key).strip()
    if not raw:
        return default
    value = float(raw) if ASCII_FLOAT.fullmatch(raw) else math.nan
    if not math.isfinite(value):
        raise Invalid(f"{key} must be a finite decimal number, got {raw[:40]!r}")
    return value
