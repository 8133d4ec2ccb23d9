"""Critique: written criticism of one or more responses.

Payload ``{"critiques": {"id": text}}`` (at least one non-empty). The form sends ``critique-ID``.
Free text: no training records, no agreement statistics, and the simulated panel gives it back.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tasks.base import (
    ShownTask,
    TaskContext,
    TaskType,
    answer_text,
    as_object,
    common_answer,
    form_text,
    remap_common,
    remap_keys,
    response_ref,
)


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    critiques = payload.get("critiques")
    if not isinstance(critiques, dict):
        raise Invalid("critiques must be an object {response: text}")
    out = {
        str(response_ref(k, ctx, "critiques")): answer_text(v, ctx, f"critique of response {k}", allow_empty=True)
        for k, v in critiques.items()
    }
    out = {k: v for k, v in out.items() if v.strip()}
    if not out:
        raise Invalid("write a critique of at least one response")
    return {"critiques": out, **common_answer(payload, ctx)}


def read_form(form: FormData, task: ShownTask) -> dict[str, Any]:
    return {"critiques": {str(r.id): form_text(form, f"critique-{r.id}") for r in task.responses}}


def remap(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    return {**remap_common(payload, mapping), "critiques": remap_keys(payload["critiques"], mapping)}


CRITIQUE = TaskType(
    name="critique",
    title="Critique",
    normalize=normalize,
    read_form=read_form,
    template="task_critique.html",
    shortcuts_template="_shortcuts_critique.html",
    remap=remap,
)
