"""HTML form fields -> canonical answer payloads (one function per task type).

Field names used by the task templates (``ID`` is a response id):

==========  ====================================================================
pairwise    ``choice`` = ID | tie | both_bad (the value of the pressed button)
ranking     ``ranking`` = "ID,ID,..." best first (kept up to date by app.js)
likert      ``rating-ID-SCALE`` = 1..7 (radio groups)
critique    ``critique-ID`` = text
rewrite     ``response_id`` = ID, ``text`` = the rewrite
demo        ``text``
harm        ``flag-ID`` = label (checkboxes, repeated)
any         ``flag-ID`` (the harm panel), ``comment``, ``duration_ms``
==========  ====================================================================

Validation happens afterwards in `rlhfkit.feedback.tasktypes`, exactly as for the JSON API.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.entities import TaskView
from rlhfkit.feedback.errors import Invalid


def _text(form: FormData, key: str) -> str:
    value = form.get(key, "")
    return value if isinstance(value, str) else ""


def pairwise_fields(form: FormData, _task: TaskView) -> dict[str, Any]:
    return {"choice": _text(form, "choice")}


def ranking_fields(form: FormData, _task: TaskView) -> dict[str, Any]:
    raw = _text(form, "ranking")
    try:
        return {"ranking": [int(part) for part in raw.split(",") if part.strip()]}
    except ValueError:
        raise Invalid("ranking must list response ids separated by commas") from None


def likert_fields(form: FormData, task: TaskView) -> dict[str, Any]:
    scales = ("overall", *task.aspects)
    ratings: dict[str, dict[str, str]] = {}
    for response in task.responses:
        for scale in scales:
            value = _text(form, f"rating-{response.id}-{scale}")
            if value:
                ratings.setdefault(str(response.id), {})[scale] = value
    return {"ratings": ratings}


def critique_fields(form: FormData, task: TaskView) -> dict[str, Any]:
    return {"critiques": {str(r.id): _text(form, f"critique-{r.id}") for r in task.responses}}


def rewrite_fields(form: FormData, _task: TaskView) -> dict[str, Any]:
    return {"response_id": _text(form, "response_id"), "text": _text(form, "text")}


def demo_fields(form: FormData, _task: TaskView) -> dict[str, Any]:
    return {"text": _text(form, "text")}


def harm_fields(_form: FormData, _task: TaskView) -> dict[str, Any]:
    return {"flags": {}}  # filled by common_fields; an empty object means "nothing harmful"


FORM_READERS: dict[str, Callable[[FormData, TaskView], dict[str, Any]]] = {
    "pairwise": pairwise_fields,
    "ranking": ranking_fields,
    "likert": likert_fields,
    "critique": critique_fields,
    "rewrite": rewrite_fields,
    "demo": demo_fields,
    "harm": harm_fields,
}
"""Task type -> form reader."""


def common_fields(form: FormData, task: TaskView) -> dict[str, Any]:
    """Harm flags and the comment, accepted on every task type."""
    flags = {str(r.id): [v for v in form.getlist(f"flag-{r.id}") if isinstance(v, str)]
             for r in task.responses}
    out: dict[str, Any] = {"flags": {k: v for k, v in flags.items() if v}}
    comment = _text(form, "comment")
    if comment.strip():
        out["comment"] = comment
    return out


def payload_from_form(form: FormData, task: TaskView) -> dict[str, Any]:
    """The answer a task form encodes (not yet validated)."""
    return {**FORM_READERS[task.task_type](form, task), **common_fields(form, task)}


def duration_from_form(form: FormData) -> int | None:
    """Client-measured time on the task, in ms (None when absent or garbled)."""
    raw = _text(form, "duration_ms")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None
