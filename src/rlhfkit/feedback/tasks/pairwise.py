"""Pairwise A/B: which of exactly two responses is better, or a tie, or both bad.

Payload ``{"choice": id | "tie" | "both_bad"}``. The form sends ``choice`` (the value of the pressed
button). Exports pairs (the winner; a tie -> ``tie: true``; "both bad" is dropped) and 2-way rankings
(ties and "both bad" dropped). Quality control compares the choice as a nominal category.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.data.records import Comparison, Ranking, Record, prompt_text
from rlhfkit.feedback.aggregate import Aggregator
from rlhfkit.feedback.tasks.base import (
    ItemAnswers,
    ShownTask,
    SimulatedAnnotator,
    TaskContext,
    TaskType,
    as_object,
    by_id,
    common_answer,
    form_text,
    remap_common,
    response_ref,
)

PAIRWISE_OUTCOMES = ("tie", "both_bad")
"""Pairwise answers that name no winner."""


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    choice = payload.get("choice")
    if choice in PAIRWISE_OUTCOMES:
        return {"choice": choice, **common_answer(payload, ctx)}
    return {"choice": response_ref(choice, ctx, "choice"), **common_answer(payload, ctx)}


def read_form(form: FormData, _task: ShownTask) -> dict[str, Any]:
    return {"choice": form_text(form, "choice")}


def units(payload: dict[str, Any], refs: tuple[int, ...]) -> dict[str, Any]:
    """The choice as a category shared by all items: "first"/"second" (canonical order), "tie",
    "both_bad" -- response ids differ per item and would make chance agreement look like zero."""
    choice = payload["choice"]
    if choice in PAIRWISE_OUTCOMES:
        return {"choice": choice}
    return {"choice": ("first", "second")[refs.index(choice)]}


def remap(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    choice = payload["choice"]
    return {**remap_common(payload, mapping), "choice": choice if choice in PAIRWISE_OUTCOMES else mapping[choice]}


def pairs(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """The aggregated winner over the loser; a tie keeps the canonical order; "both bad" or a split: none."""
    outcome = agg.pairwise(item.payloads(), item.refs)
    first, second = item.refs
    if outcome.label == "tie":
        return [Comparison(item.prompt, item.texts[first], item.texts[second], tie=True)]
    if outcome.label not in item.refs:
        return []
    loser = second if outcome.label == first else first
    return [Comparison(item.prompt, item.texts[outcome.label], item.texts[loser], margin=outcome.margin)]


def rankings(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """The winning pair as a 2-way ranking (ties name no order and are left out)."""
    return [
        Ranking(c.prompt, (c.chosen, c.rejected)) for c in pairs(item, agg) if isinstance(c, Comparison) and not c.tie
    ]


def simulate(annotator: SimulatedAnnotator, task: ShownTask, who: str) -> dict[str, Any]:
    """``{"choice": id | "tie"}`` from `SimulatedAnnotator.judge_pair` on the canonical order."""
    a, b = by_id(task)
    choice = annotator.judge_pair(prompt_text(task.prompt), a.text, b.text, who)
    return {"choice": "tie" if choice == "tie" else (a.id if choice == "a" else b.id)}


PAIRWISE = TaskType(
    name="pairwise",
    title="Pairwise A/B",
    normalize=normalize,
    read_form=read_form,
    template="task_pairwise.html",
    shortcuts_template="_shortcuts_pairwise.html",
    min_responses=2,
    max_responses=2,
    builders={"pairs": pairs, "rankings": rankings},
    simulate=simulate,
    agreement_units=units,
    alpha_units=units,
    alpha_metrics=("nominal",),
    remap=remap,
)
