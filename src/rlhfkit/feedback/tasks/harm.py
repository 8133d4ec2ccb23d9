"""Harm flags: say which responses are harmful, and how (`HARM_LABELS`).

Payload ``{"flags": {"id": [label, ...]}}``; an empty object means no response is harmful (the key
is required, so "nothing flagged" is an answer and not a forgotten field). The form's checkboxes
``flag-ID`` are the harm panel every task type has, so this type reads nothing of its own and does
not show that panel twice. No training records; quality control: one binary unit per
(response, label), nominal alpha.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tasks.base import HARM_LABELS, ShownTask, TaskContext, TaskType, as_object, common_answer


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    if "flags" not in payload:
        raise Invalid("flags is required (an empty object means no response is harmful)")
    out = common_answer(payload, ctx)
    out.setdefault("flags", {})
    return out


def read_form(_form: FormData, _task: ShownTask) -> dict[str, Any]:
    return {"flags": {}}  # the harm panel's checkboxes fill it; an empty object means "nothing harmful"


def units(payload: dict[str, Any], refs: tuple[int, ...]) -> dict[str, Any]:
    """Binary unit per (response, label); `refs` says which responses were shown but not flagged."""
    flags = payload.get("flags", {})
    return {f"{ref}:{label}": int(label in flags.get(str(ref), [])) for ref in refs for label in HARM_LABELS}


HARM = TaskType(
    name="harm",
    title="Harm flags",
    normalize=normalize,
    read_form=read_form,
    template="task_harm.html",
    shortcuts_template="_shortcuts_harm.html",
    agreement_units=units,
    alpha_units=units,
    alpha_metrics=("nominal",),
    flags_panel=False,
)
