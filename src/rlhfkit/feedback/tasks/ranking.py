"""Ranking: order every response of an item, best first.

Payload ``{"ranking": [id_best, ..., id_worst]}`` (all K responses, each once). The form sends
``ranking`` = ``"ID,ID,..."`` (kept up to date by app.js). Exports rankings and every ordered pair
(with Bradley-Terry margins when aggregated that way). Quality control compares each pair's order
(agreement) and each response's rank (Krippendorff's alpha, ordinal and interval).
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

from starlette.datastructures import FormData

from rlhfkit.data.records import Comparison, Ranking, Record, prompt_text
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
    response_ref,
)


def normalize(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = as_object(payload)
    ranking = payload.get("ranking")
    if not isinstance(ranking, list):
        raise Invalid("ranking must be a list of responses, best first")
    refs = [response_ref(r, ctx, "ranking") for r in ranking]
    if sorted(refs) != sorted(ctx.response_ids):
        raise Invalid("ranking must order every response of the task exactly once")
    return {"ranking": refs, **common_answer(payload, ctx)}


def read_form(form: FormData, _task: ShownTask) -> dict[str, Any]:
    raw = form_text(form, "ranking")
    try:
        return {"ranking": [int(part) for part in raw.split(",") if part.strip()]}
    except ValueError:
        raise Invalid("ranking must list response ids separated by commas") from None


def position_units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    """Rank of each response (1 = best): ordinal data for Krippendorff's alpha."""
    return {f"rank:{ref}": float(i + 1) for i, ref in enumerate(payload["ranking"])}


def order_units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    """For each pair (a < b by id): 1 when a is ranked above b -- agreement is counted per pair."""
    position = {ref: i for i, ref in enumerate(payload["ranking"])}
    refs = sorted(position)
    return {f"pair:{a}:{b}": int(position[a] < position[b]) for i, a in enumerate(refs) for b in refs[i + 1 :]}


def remap(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    return {**remap_common(payload, mapping), "ranking": [mapping[r] for r in payload["ranking"]]}


def pairs(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """Every ordered pair of the aggregated ranking; margin = score gap when the aggregator scores."""
    outcome = agg.ranking(item.payloads(), item.refs)
    out: list[Record] = []
    for a, better in enumerate(outcome.order):
        for worse in outcome.order[a + 1 :]:
            margin = None if outcome.scores is None else outcome.scores[better] - outcome.scores[worse]
            out.append(Comparison(item.prompt, item.texts[better], item.texts[worse], margin=margin))
    return out


def rankings(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    outcome = agg.ranking(item.payloads(), item.refs)
    return [Ranking(item.prompt, tuple(item.texts[r] for r in outcome.order))]


def simulate(annotator: SimulatedAnnotator, task: ShownTask, who: str) -> dict[str, Any]:
    """``{"ranking": [id_best, ..., id_worst]}`` from `SimulatedAnnotator.rank` on the canonical order."""
    responses = by_id(task)
    order = annotator.rank(prompt_text(task.prompt), [r.text for r in responses], who)
    return {"ranking": [responses[i].id for i in order]}


RANKING = TaskType(
    name="ranking",
    title="Ranking",
    normalize=normalize,
    read_form=read_form,
    template="task_ranking.html",
    shortcuts_template="_shortcuts_ranking.html",
    min_responses=2,
    builders={"pairs": pairs, "rankings": rankings},
    simulate=simulate,
    agreement_units=order_units,
    alpha_units=position_units,
    alpha_metrics=("ordinal", "interval"),
    remap=remap,
)
