"""Likert rating: every response rated 1-7 overall, and on each aspect the project switched on.

Payload ``{"ratings": {"id": {"overall": 1..7, aspect: 1..7}}}``. The form sends radio groups
``rating-ID-SCALE``. Exports ratings (overall as the rating, aspects as ``aspects``) and pairs of
responses with different overall ratings (margin = the rating gap, as Llama 2 does). Quality
control: a rating agrees when within one point of the others' median; alpha ordinal and interval.
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.data.records import Comparison, Rating, Record, prompt_text
from rlhfkit.feedback.aggregate import Aggregator
from rlhfkit.feedback.errors import Invalid
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
    remap_keys,
    response_ref,
)

LIKERT_SCALE = (1, 7)
"""Likert scale bounds (inclusive); the overall rating and every aspect use it."""

DEFAULT_ASPECTS = ("helpfulness", "harmlessness", "honesty")
"""Per-aspect scales a project can switch on (Askell et al. 2021, "HHH")."""


def _rating(value: Any, what: str) -> int:
    low, high = LIKERT_SCALE
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(f"{what} must be an integer from {low} to {high}")
    try:
        rating = int(value)
    except ValueError:
        raise Invalid(f"{what} must be an integer from {low} to {high}") from None
    if not low <= rating <= high:
        raise Invalid(f"{what} must be an integer from {low} to {high}, got {rating}")
    return rating


def _scales(key: str, per_scale: Any, scales: tuple[str, ...]) -> dict[str, int]:
    """One response's ratings: exactly the project's scales, each on the Likert scale."""
    if not isinstance(per_scale, dict):
        raise Invalid(f"ratings of response {key} must be an object {{scale: 1..7}}")
    unknown = set(per_scale) - set(scales)
    if unknown:
        raise Invalid(f"unknown rating scale(s) {sorted(unknown)}; this project uses {list(scales)}")
    missing = [s for s in scales if s not in per_scale]
    if missing:
        raise Invalid(f"response {key} is missing rating(s) {missing}")
    return {s: _rating(per_scale[s], f"rating {s} of response {key}") for s in scales}


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    ratings = payload.get("ratings")
    if not isinstance(ratings, dict):
        raise Invalid("ratings must be an object {response: {scale: 1..7}}")
    scales = ("overall", *ctx.aspects)
    out = {
        str(response_ref(key, ctx, "ratings")): _scales(key, per_scale, scales) for key, per_scale in ratings.items()
    }
    missing_refs = [r for r in ctx.response_ids if str(r) not in out]
    if missing_refs:
        raise Invalid(f"every response needs a rating; missing {missing_refs}")
    return {"ratings": out, **common_answer(payload, ctx)}


def read_form(form: FormData, task: ShownTask) -> dict[str, Any]:
    scales = ("overall", *task.aspects)
    ratings: dict[str, dict[str, str]] = {}
    for response in task.responses:
        for scale in scales:
            value = form_text(form, f"rating-{response.id}-{scale}")
            if value:
                ratings.setdefault(str(response.id), {})[scale] = value
    return {"ratings": ratings}


def units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    """One unit per (response, scale): the rating as a number."""
    return {
        f"{ref}:{scale}": float(value)
        for ref, per_scale in payload["ratings"].items()
        for scale, value in per_scale.items()
    }


def remap(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    return {**remap_common(payload, mapping), "ratings": remap_keys(payload["ratings"], mapping)}


def pairs(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """Pairs of responses with different overall ratings; margin = rating gap (Llama 2 style)."""
    overall = {ref: scales["overall"] for ref, scales in agg.likert(item.payloads(), item.refs).items()}
    out: list[Record] = []
    for a, ref_a in enumerate(item.refs):
        for ref_b in item.refs[a + 1 :]:
            gap = overall[ref_a] - overall[ref_b]
            if gap == 0:
                continue
            chosen, rejected = (ref_a, ref_b) if gap > 0 else (ref_b, ref_a)
            out.append(Comparison(item.prompt, item.texts[chosen], item.texts[rejected], margin=abs(gap)))
    return out


def ratings(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """One rating per response (canonical order): overall, with the aspects beside it."""
    out: list[Record] = []
    for ref, scales in sorted(agg.likert(item.payloads(), item.refs).items(), key=lambda kv: item.refs.index(kv[0])):
        aspects = {s: v for s, v in scales.items() if s != "overall"} or None
        out.append(
            Rating(
                item.prompt,
                item.texts[ref],
                scales["overall"],
                scale=(float(LIKERT_SCALE[0]), float(LIKERT_SCALE[1])),
                aspects=aspects,
            )
        )
    return out


def simulate(annotator: SimulatedAnnotator, task: ShownTask, who: str) -> dict[str, Any]:
    """``{"ratings": {"id": {"overall": 1..7}}}`` from `SimulatedAnnotator.rate` (aspects get the same rating)."""
    out = {}
    for r in by_id(task):
        value = annotator.rate(prompt_text(task.prompt), r.text, who)
        out[str(r.id)] = {"overall": value, **dict.fromkeys(task.aspects, value)}
    return {"ratings": out}


LIKERT = TaskType(
    name="likert",
    title="Likert rating",
    normalize=normalize,
    read_form=read_form,
    template="task_likert.html",
    shortcuts_template="_shortcuts_likert.html",
    builders={"pairs": pairs, "ratings": ratings},
    simulate=simulate,
    agreement_units=units,
    agreement_tolerance=1.0,
    alpha_units=units,
    alpha_metrics=("ordinal", "interval"),
    remap=remap,
)
