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

from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.entities import TaskView
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


def duration_from_form(form: FormData) -> int | None:
    """Client-measured time on the task, in ms (None when absent or garbled)."""
    raw = form_text(form, "duration_ms")
    return int(raw) if raw.isdigit() and len(raw) < 12 else None
