"""Rewrite: improve one of the responses by editing it.

Payload ``{"response_id": id, "text": rewritten}``. The form sends ``response_id`` and ``text``.
Exports demonstrations (the rewrite) and pairs (the rewrite over the original, unless the text is
unchanged). Free text: never aggregated, no agreement statistics, given back by the simulated panel.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.data.records import Comparison, Record
from rlhfkit.feedback.aggregate import Aggregator
from rlhfkit.feedback.tasks.base import (
    ItemAnswers,
    ShownTask,
    TaskContext,
    TaskType,
    answer_text,
    as_object,
    common_answer,
    form_text,
    remap_common,
    response_ref,
    texts_as_demos,
)


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    ref = response_ref(payload.get("response_id"), ctx, "response_id")
    text = answer_text(payload.get("text"), ctx, "rewrite")
    return {"response_id": ref, "text": text, **common_answer(payload, ctx)}


def read_form(form: FormData, _task: ShownTask) -> dict[str, Any]:
    return {"response_id": form_text(form, "response_id"), "text": form_text(form, "text")}


def remap(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    return {**remap_common(payload, mapping), "response_id": mapping[payload["response_id"]]}


def pairs(item: ItemAnswers, _agg: Aggregator) -> list[Record]:
    """Each rewrite preferred to the response it rewrote (a rewrite that changed nothing says nothing)."""
    return [
        Comparison(item.prompt, p["text"], item.texts[p["response_id"]])
        for p in item.payloads()
        if p["text"].strip() != item.texts[p["response_id"]].strip()
    ]


REWRITE = TaskType(
    name="rewrite",
    title="Rewrite",
    normalize=normalize,
    read_form=read_form,
    template="task_rewrite.html",
    shortcuts_template="_shortcuts_rewrite.html",
    builders={"pairs": pairs, "demos": texts_as_demos},
    remap=remap,
)
