"""Demonstration: write the response yourself (candidate responses are optional context).

Payload ``{"text": demonstration}``. The form sends ``text``. Exports demonstrations, one per
answer (free text is never aggregated); no agreement statistics; given back by the simulated panel.
"""

from __future__ import annotations

from typing import Any

from starlette.datastructures import FormData

from rlhfkit.feedback.tasks.base import (
    ShownTask,
    TaskContext,
    TaskType,
    answer_text,
    as_object,
    common_answer,
    form_text,
    texts_as_demos,
)


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    return {"text": answer_text(payload.get("text"), ctx, "demonstration"), **common_answer(payload, ctx)}


def read_form(form: FormData, _task: ShownTask) -> dict[str, Any]:
    return {"text": form_text(form, "text")}


DEMO = TaskType(
    name="demo",
    title="Demonstration",
    normalize=normalize,
    read_form=read_form,
    template="task_demo.html",
    shortcuts_template="_shortcuts_demo.html",
    min_responses=0,
    builders={"demos": texts_as_demos},
)
