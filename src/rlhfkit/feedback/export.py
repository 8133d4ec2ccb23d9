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
==========  =========================================================================

Gold items are quality-control instruments and are never exported. Free-text answers (rewrites,
demonstrations) are never aggregated: every one is a record.

`load_project_records` is what the training commands call for ``--data DBURL#PROJECT``.
"""

from __future__ import annotations

import json
import os
import shutil
import tempfile
from collections.abc import Callable, Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rlhfkit.data.records import Comparison, Demonstration, Ranking, Rating, Record, RecordKind, to_json
from rlhfkit.feedback.aggregate import AGGREGATORS, Aggregator
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tables import Item, Judgment, Response, User
from rlhfkit.feedback.tasktypes import LIKERT_SCALE

EXPORT_KINDS: tuple[RecordKind, ...] = ("pairs", "rankings", "ratings", "demos")
"""Record kinds a project exports."""

AGGREGATIONS = ("majority", "bradley-terry", "raw")
"""Aggregation choices: two aggregators, or one record per judgment."""


@dataclass(frozen=True)
class ItemAnswers:
    """An item with the answers given to it (canonical payloads)."""

    item_id: int
    """Database id."""
    task_type: str
    """Task type of the item."""
    prompt: Any
    """Prompt text or conversation."""
    refs: tuple[int, ...]
    """Response ids in canonical order."""
    texts: dict[int, str]
    """Response id -> text."""
    answers: tuple[tuple[str, dict[str, Any]], ...]
    """(annotator name, payload) per judgment, oldest first."""


@dataclass(frozen=True)
class ExportRow:
    """A record, and for raw exports the annotator who gave it."""

    record: Record
    """The training record."""
    annotator: str | None = None
    """Who judged (raw exports only)."""

    def to_json(self) -> dict[str, Any]:
        out = to_json(self.record)
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
    items = {i.id: i for i in session.scalars(
        select(Item).where(Item.project_id == project_id, Item.is_gold.is_(False))
    ) if i.id in answers}
    responses: dict[int, list[Response]] = {}
    for r in session.scalars(
        select(Response).join(Item, Item.id == Response.item_id)
        .where(Item.project_id == project_id, Item.is_gold.is_(False))
        .order_by(Response.item_id, Response.position)
    ):
        responses.setdefault(r.item_id, []).append(r)
    return [
        ItemAnswers(item_id=item_id, task_type=items[item_id].task_type,
                    prompt=items[item_id].prompt,
                    refs=tuple(r.id for r in responses.get(item_id, [])),
                    texts={r.id: r.text for r in responses.get(item_id, [])},
                    answers=tuple(answers[item_id]))
        for item_id in sorted(answers)
    ]


# ------------------------------------------------------------------ per task type, per kind

Builder = Callable[[ItemAnswers, Aggregator], list[Record]]


def _payloads(item: ItemAnswers) -> list[dict[str, Any]]:
    return [payload for _, payload in item.answers]


def pairs_from_pairwise(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    outcome = agg.pairwise(_payloads(item), item.refs)
    first, second = item.refs
    if outcome.label == "tie":
        return [Comparison(item.prompt, item.texts[first], item.texts[second], tie=True)]
    if outcome.label not in item.refs:
        return []
    loser = second if outcome.label == first else first
    return [Comparison(item.prompt, item.texts[outcome.label], item.texts[loser], margin=outcome.margin)]


def pairs_from_ranking(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    outcome = agg.ranking(_payloads(item), item.refs)
    out: list[Record] = []
    for a, better in enumerate(outcome.order):
        for worse in outcome.order[a + 1:]:
            margin = None if outcome.scores is None else outcome.scores[better] - outcome.scores[worse]
            out.append(Comparison(item.prompt, item.texts[better], item.texts[worse], margin=margin))
    return out


def pairs_from_likert(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    """Pairs of responses with different overall ratings; margin = rating gap (Llama 2 style)."""
    overall = {ref: scales["overall"] for ref, scales in agg.likert(_payloads(item), item.refs).items()}
    out: list[Record] = []
    for a, ref_a in enumerate(item.refs):
        for ref_b in item.refs[a + 1:]:
            gap = overall[ref_a] - overall[ref_b]
            if gap == 0:
                continue
            chosen, rejected = (ref_a, ref_b) if gap > 0 else (ref_b, ref_a)
            out.append(Comparison(item.prompt, item.texts[chosen], item.texts[rejected], margin=abs(gap)))
    return out


def pairs_from_rewrite(item: ItemAnswers, _agg: Aggregator) -> list[Record]:
    return [
        Comparison(item.prompt, p["text"], item.texts[p["response_id"]])
        for p in _payloads(item) if p["text"].strip() != item.texts[p["response_id"]].strip()
    ]


def rankings_from_ranking(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    outcome = agg.ranking(_payloads(item), item.refs)
    return [Ranking(item.prompt, tuple(item.texts[r] for r in outcome.order))]


def rankings_from_pairwise(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    return [Ranking(c.prompt, (c.chosen, c.rejected))
            for c in pairs_from_pairwise(item, agg) if isinstance(c, Comparison) and not c.tie]


def ratings_from_likert(item: ItemAnswers, agg: Aggregator) -> list[Record]:
    out: list[Record] = []
    for ref, scales in sorted(agg.likert(_payloads(item), item.refs).items(),
                              key=lambda kv: item.refs.index(kv[0])):
        aspects = {s: v for s, v in scales.items() if s != "overall"} or None
        out.append(Rating(item.prompt, item.texts[ref], scales["overall"],
                          scale=(float(LIKERT_SCALE[0]), float(LIKERT_SCALE[1])), aspects=aspects))
    return out


def demos_from_demo(item: ItemAnswers, _agg: Aggregator) -> list[Record]:
    return [Demonstration(item.prompt, p["text"]) for p in _payloads(item)]


BUILDERS: dict[RecordKind, dict[str, Builder]] = {
    "pairs": {"pairwise": pairs_from_pairwise, "ranking": pairs_from_ranking,
              "likert": pairs_from_likert, "rewrite": pairs_from_rewrite},
    "rankings": {"ranking": rankings_from_ranking, "pairwise": rankings_from_pairwise},
    "ratings": {"likert": ratings_from_likert},
    "demos": {"demo": demos_from_demo, "rewrite": demos_from_demo},
}
"""Record kind -> task type -> builder. Free-text builders emit one record per answer."""


def build_rows(items: Iterable[ItemAnswers], kind: RecordKind, aggregate: str) -> list[ExportRow]:
    """Records of one kind from every item, aggregated or raw."""
    if kind not in BUILDERS:
        raise Invalid(f"unknown export format {kind!r}; choose one of {list(EXPORT_KINDS)}")
    if aggregate not in AGGREGATIONS:
        raise Invalid(f"unknown aggregation {aggregate!r}; choose one of {list(AGGREGATIONS)}")
    builders = BUILDERS[kind]
    rows: list[ExportRow] = []
    for item in items:
        builder = builders.get(item.task_type)
        if builder is None:
            continue
        if aggregate != "raw":
            rows += [ExportRow(r) for r in builder(item, AGGREGATORS[aggregate])]
            continue
        # Raw: each judgment on its own (an aggregate of one is the answer itself, no margin).
        for name, payload in item.answers:
            single = ItemAnswers(item.item_id, item.task_type, item.prompt, item.refs, item.texts,
                                 ((name, payload),))
            rows += [ExportRow(r, annotator=name) for r in builder(single, AGGREGATORS["majority"])]
    return rows


# ------------------------------------------------------------------ files


def write_jsonl_atomic(rows: Iterable[dict[str, Any]], path: str | Path) -> int:
    """Write JSONL via a temp file in the same folder + fsync + os.replace; returns the row count."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    count = 0
    fd, tmp = tempfile.mkstemp(prefix=f".{path.name}.", suffix=".tmp", dir=path.parent)
    try:
        with os.fdopen(fd, "w", encoding="utf-8") as handle:
            for row in rows:
                handle.write(json.dumps(row, ensure_ascii=False) + "\n")
                count += 1
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    return count


def write_hf_dataset(rows: list[dict[str, Any]], path: str | Path) -> int:
    """Save a Hugging Face `datasets.Dataset` directory (built aside, then moved into place)."""
    import datasets  # heavy import, only for this format

    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # from_list takes its columns from the first row: give every row every key (None if absent),
    # or a "tie" or "margin" first seen on row 2 would be silently dropped.
    keys = list(dict.fromkeys(k for row in rows for k in row))
    table = [{k: row.get(k) for k in keys} for row in rows]
    staging = Path(tempfile.mkdtemp(prefix=f".{path.name}.", dir=path.parent))
    try:
        datasets.Dataset.from_list(table).save_to_disk(str(staging / "data"))
        if path.exists():
            shutil.rmtree(path)
        os.replace(staging / "data", path)
    finally:
        shutil.rmtree(staging, ignore_errors=True)
    return len(rows)


WRITERS: dict[str, Callable[[list[dict[str, Any]], str | Path], int]] = {
    "jsonl": write_jsonl_atomic,
    "hf": write_hf_dataset,
}
"""Output container -> writer."""


def container_for(output: str | Path) -> str:
    """``jsonl`` for .jsonl/.json files, else ``hf`` (a dataset directory)."""
    return "jsonl" if Path(output).suffix in (".jsonl", ".json") else "hf"


def load_project_records(db_url: str, project: str, kind: RecordKind,
                         aggregate: str = "majority") -> list[Record]:
    """Records of a project in the feedback database, for ``--data DBURL#PROJECT``.

    Example: ``load_project_records("sqlite:///feedback.db", "helpful-v1", "pairs")``.
    ``aggregate``: ``majority`` (default), ``bradley-terry`` or ``raw`` (one record per judgment).
    """
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(db_url, migrate=False)
    try:
        return [row.record for row in store.export_rows(project, kind, aggregate)]
    finally:
        store.close()


def split_data_url(data: str) -> tuple[str, str]:
    """``"sqlite:///f.db#proj"`` -> ``("sqlite:///f.db", "proj")`` (raises ValueError otherwise)."""
    url, sep, project = data.rpartition("#")
    if not sep or not url or not project or "://" not in url:
        raise ValueError(f"expected DBURL#PROJECT (e.g. sqlite:///feedback.db#my-project), got {data!r}")
    return url, project
