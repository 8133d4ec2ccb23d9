"""From judgments to training records: rlhfkit/TRL pairs, rankings, ratings and demonstrations.

Per item, the answers of its annotators are aggregated (``majority`` or ``bradley-terry``, see
`rlhfkit.feedback.aggregate`) or kept one record per judgment (``raw``, rows then carry an
``"annotator"`` key). Which task types feed which kind of record:

==========  =========================================================================
pairs       pairwise (winner; "tie" -> ``tie: true``; "both bad" dropped), ranking (every
            ordered pair), likert (pairs with different overall ratings, margin = rating gap),
            rewrite (chosen = the rewrite, rejected = the original)
rankings    ranking, pairwise (a 2-way ranking, ties and "both bad" dropped)
ratings     likert (overall rating, aspects as ``aspects``, scale [1, 7])
demos       demo (the written response), rewrite (the rewrite)
critiques   critique: ``{"prompt", "response", "critique"}``, one row per written critique (free
            text, never aggregated)
harm        every task type's harm flags as per-response labels: ``{"prompt", "response",
            "labels": [...], "harmful": bool}``; aggregated, a label holds when a strict majority
            of the item's annotators gave it (``annotators`` says how many judged; Bradley-Terry
            has nothing to fit on flags, so it counts the same way); raw, one row per annotator
            and response, an unflagged response included (its labels are empty)
==========  =========================================================================

Critiques and harm labels are not training records of a trainer (no trainer reads them); they are
exported for critique models, safety classifiers and audits. An export that finds nothing to write
raises `Invalid` saying why (`why_empty`), so ``rlhfkit export`` exits non-zero instead of writing
an empty file.

Each task type's module under `rlhfkit.feedback.tasks` holds its builders (`TaskType.builders`).
Gold items are quality-control instruments and are never exported. Free-text answers (rewrites,
demonstrations) are never aggregated: every one is a record.

Training commands read a project through `rlhfkit.feedback.source` (``--data DBURL#PROJECT``); this
module only turns loaded answers into records and writes them, so it never opens a store.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any, get_args

from sqlalchemy import select
from sqlalchemy.orm import Session

from rlhfkit.data.projects import Aggregation
from rlhfkit.data.records import Record, RecordKind, to_json
from rlhfkit.feedback.aggregate import AGGREGATORS
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tables import Item, Judgment, Response, User
from rlhfkit.feedback.tasks import TASK_TYPES
from rlhfkit.feedback.tasks.base import ItemAnswers
from rlhfkit.files import staged_dir, write_jsonl_atomic

TRAINING_KINDS: tuple[RecordKind, ...] = ("pairs", "rankings", "ratings", "demos")
"""Training record kinds a project exports (built by the task types' builders)."""

EXPORT_KINDS: tuple[str, ...] = (*TRAINING_KINDS, "critiques", "harm")
"""Everything a project exports: training records, then critiques and harm labels (`JUDGMENT_EXPORTS`)."""

AGGREGATIONS: tuple[Aggregation, ...] = get_args(Aggregation)
"""Aggregation choices: two aggregators, or one record per judgment."""


@dataclass(frozen=True)
class JudgmentRow:
    """A judgment about one response that is not a training record: a critique or its harm labels."""

    prompt: Any
    """Prompt text or conversation."""
    response: str
    """The response judged."""
    fields: dict[str, Any]
    """What was said of it: ``{"critique": text}`` or ``{"labels": [...], "harmful": bool, ...}``."""

    def to_json(self) -> dict[str, Any]:
        return {"prompt": self.prompt, "response": self.response, **self.fields}


@dataclass(frozen=True)
class ExportRow:
    """A record, and for raw exports the annotator who gave it."""

    record: Record | JudgmentRow
    """The training record (or, for critiques and harm, the judgment row)."""
    annotator: str | None = None
    """Who judged (raw exports and critiques)."""

    def to_json(self) -> dict[str, Any]:
        out = self.record.to_json() if isinstance(self.record, JudgmentRow) else to_json(self.record)
        if self.annotator is not None:
            out["annotator"] = self.annotator
        return out


def load_answers(session: Session, project_id: int) -> list[ItemAnswers]:
    """Every non-gold item of a project with its judgments (items without any are left out)."""
    rows = session.execute(
        select(Judgment.item_id, User.name, Judgment.payload)
        .join(Item, Item.id == Judgment.item_id)
        .join(User, User.id == Judgment.user_id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False))
        .order_by(Judgment.item_id, Judgment.id)
    ).all()
    answers: dict[int, list[tuple[str, dict[str, Any]]]] = {}
    for item_id, name, payload in rows:
        answers.setdefault(item_id, []).append((name, payload))
    if not answers:
        return []
    items = {
        i.id: i
        for i in session.scalars(select(Item).where(Item.project_id == project_id, Item.is_gold.is_(False)))
        if i.id in answers
    }
    responses: dict[int, list[Response]] = {}
    for r in session.scalars(
        select(Response)
        .join(Item, Item.id == Response.item_id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False))
        .order_by(Response.item_id, Response.position)
    ):
        responses.setdefault(r.item_id, []).append(r)
    return [
        ItemAnswers(
            item_id=item_id,
            task_type=items[item_id].task_type,
            prompt=items[item_id].prompt,
            refs=tuple(r.id for r in responses.get(item_id, [])),
            texts={r.id: r.text for r in responses.get(item_id, [])},
            answers=tuple(answers[item_id]),
        )
        for item_id in sorted(answers)
    ]


# ------------------------------------------------------------------ records


def critique_rows(items: Iterable[ItemAnswers], aggregate: Aggregation) -> list[ExportRow]:
    """One row per written critique of a response (free text: never aggregated; raw rows name the annotator)."""
    rows = []
    for item in items:
        for name, payload in item.answers:
            for ref, text in payload.get("critiques", {}).items():
                row = JudgmentRow(item.prompt, item.texts[int(ref)], {"critique": text})
                rows.append(ExportRow(row, annotator=name if aggregate == "raw" else None))
    return rows


def harm_rows(items: Iterable[ItemAnswers], aggregate: Aggregation) -> list[ExportRow]:
    """Per-response harm labels: per annotator (raw), else the labels a strict majority of annotators gave."""
    rows = []
    for item in items:
        flags = [(name, payload.get("flags", {})) for name, payload in item.answers]
        for ref in item.refs:
            given = [(name, sorted(f.get(str(ref), []))) for name, f in flags]
            if aggregate == "raw":
                rows += [ExportRow(_harm(item, ref, labels, {}), annotator=name) for name, labels in given]
                continue
            counts: dict[str, int] = {}
            for _, labels in given:
                for label in labels:
                    counts[label] = counts.get(label, 0) + 1
            held = sorted(label for label, n in counts.items() if 2 * n > len(given))
            rows.append(ExportRow(_harm(item, ref, held, {"annotators": len(given)})))
    return rows


def _harm(item: ItemAnswers, ref: int, labels: list[str], extra: dict[str, Any]) -> JudgmentRow:
    return JudgmentRow(item.prompt, item.texts[ref], {"labels": labels, "harmful": bool(labels), **extra})


JUDGMENT_EXPORTS: dict[str, Callable[[Iterable[ItemAnswers], Aggregation], list[ExportRow]]] = {
    "critiques": critique_rows,
    "harm": harm_rows,
}
"""Export kind -> ``fn(items, aggregate) -> rows`` for judgments that are not training records."""


def why_empty(items: list[ItemAnswers], kind: str) -> str:
    """Why an export of `kind` found nothing to write, in one sentence for the user."""
    if not items:
        return "the project has no judgments yet (gold items are never exported)"
    types = sorted({item.task_type for item in items})
    if kind in JUDGMENT_EXPORTS:
        return f"no {kind} in its judgments (task types judged: {', '.join(types)})"
    makers = sorted(name for name, t in TASK_TYPES.items() if kind in t.builders)
    if not any(t in makers for t in types):
        return f"its task types ({', '.join(types)}) make no {kind}; {kind} come from {', '.join(makers)}"
    return f"no item's judgments give a {kind} record (e.g. every pairwise answer was 'both bad' or the votes split)"


def build_rows(items: Iterable[ItemAnswers], kind: str, aggregate: Aggregation) -> list[ExportRow]:
    """Records of one kind from every item, aggregated or raw (items whose type has no such builder: none)."""
    if kind not in EXPORT_KINDS:
        raise Invalid(f"unknown export format {kind!r}; choose one of {list(EXPORT_KINDS)}")
    if aggregate not in AGGREGATIONS:
        raise Invalid(f"unknown aggregation {aggregate!r}; choose one of {list(AGGREGATIONS)}")
    if kind in JUDGMENT_EXPORTS:
        return JUDGMENT_EXPORTS[kind](items, aggregate)
    rows: list[ExportRow] = []
    for item in items:
        builder = TASK_TYPES[item.task_type].builders.get(kind)  # type: ignore[call-overload]
        if builder is None:
            continue
        if aggregate != "raw":
            rows += [ExportRow(r) for r in builder(item, AGGREGATORS[aggregate])]
            continue
        # Raw: each judgment on its own (an aggregate of one is the answer itself, no margin).
        for name, payload in item.answers:
            single = ItemAnswers(item.item_id, item.task_type, item.prompt, item.refs, item.texts, ((name, payload),))
            rows += [ExportRow(r, annotator=name) for r in builder(single, AGGREGATORS["majority"])]
    return rows


# ------------------------------------------------------------------ files


def write_jsonl_file(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """A JSONL file, replaced atomically (`rlhfkit.files.write_jsonl_atomic`); returns the row count."""
    return write_jsonl_atomic(path, rows)


def write_hf_dataset(rows: list[dict[str, Any]], path: str | Path) -> int:
    """Save a Hugging Face `datasets.Dataset` directory (built aside, then moved into place whole)."""
    import datasets  # heavy import, only for this format

    # from_list takes its columns from the first row: give every row every key (None if absent),
    # or a "tie" or "margin" first seen on row 2 would be silently dropped.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    table = [{k: row.get(k) for k in keys} for row in rows]
    with staged_dir(Path(path)) as staging:
        datasets.Dataset.from_list(table).save_to_disk(str(staging))
    return len(rows)


WRITERS: dict[str, Callable[[list[dict[str, Any]], str | Path], int]] = {
    "jsonl": write_jsonl_file,
    "hf": write_hf_dataset,
}
"""Output container -> writer ``(rows, path) -> rows written``."""


def container_for(output: str | Path) -> str:
    """``jsonl`` for .jsonl/.json files, else ``hf`` (a dataset directory)."""
    return "jsonl" if Path(output).suffix in (".jsonl", ".json") else "hf"
