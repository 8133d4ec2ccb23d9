"""Quality control of a project: per-annotator agreement, gold accuracy, Krippendorff's alpha.

* Agreement with the majority is leave-one-out: each of an annotator's answers is compared, unit by
  unit (see `TaskType.agreement_units`), with the *other* annotators of the same item, so that an
  annotator does not agree with themselves. Units where the others split evenly are not counted.
* Gold accuracy compares answers on gold items with the known answer, unit by unit.
* Alpha pools every item of a task type (gold items included: they are reliability data too). With
  AI judges in the project it is also given without them: how much the judge moves reliability.
* An AI judge's answers count exactly like a person's; its row adds its position-flip rate (the share
  of questions whose two orders disagreed, from ``ai_verdicts``, unlabelled flips included).
"""

from __future__ import annotations

import statistics
from collections import Counter, defaultdict
from collections.abc import Hashable
from dataclasses import dataclass
from typing import Any

from sqlalchemy import Integer, func, select
from sqlalchemy.orm import Session

from rlhfkit.feedback.agreement import krippendorff_alpha, unit_agrees, units_agree
from rlhfkit.feedback.entities import Progress
from rlhfkit.feedback.projects import project_progress
from rlhfkit.feedback.tables import AIVerdict, Assignment, Item, Judgment, Project, Response, User
from rlhfkit.feedback.tasks import TASK_TYPES
from rlhfkit.feedback.tasks.base import UnitFn


@dataclass(frozen=True)
class AnnotatorStats:
    """One annotator's work and agreement in a project."""

    user_id: int
    """Account id."""
    name: str
    """Account name."""
    judgments: int
    """Answers submitted (gold included)."""
    skips: int
    """Tasks skipped."""
    agreement: float | None
    """Share of units agreeing with the other annotators' majority (None: nothing to compare)."""
    agreement_units: int
    """Units that entered `agreement`."""
    gold_accuracy: float | None
    """Share of gold units answered as the gold answer (None: no gold answered)."""
    gold_judgments: int
    """Gold items answered."""
    median_seconds: float | None
    """Median time per answer, from the client-reported duration."""
    role: str = "annotator"
    """Account role ('ai' for an AI judge)."""
    flip_rate: float | None = None
    """AI judges: share of questions whose two orders preferred different responses (None: not a judge)."""
    flip_questions: int = 0
    """AI judges: questions asked in both orders (those left unlabelled included)."""


@dataclass(frozen=True)
class AlphaStat:
    """Krippendorff's alpha of one task type under one metric."""

    task_type: str
    """Task type."""
    metric: str
    """Difference function (nominal, ordinal, interval)."""
    alpha: float | None
    """Alpha (None when undefined: no pairable unit or no variation)."""
    units: int
    """Pairable units (coded by at least two annotators)."""


@dataclass(frozen=True)
class QCReport:
    """Everything the admin dashboard shows."""

    project: str
    """Project name."""
    progress: Progress
    """Completion counts."""
    annotators: tuple[AnnotatorStats, ...]
    """One row per annotator who worked on the project."""
    alphas: tuple[AlphaStat, ...]
    """Alpha per task type and metric."""
    skip_reasons: dict[str, int]
    """Reason -> count."""
    harm_flags: dict[str, int]
    """Harm label -> number of (response, annotator) flags."""
    alphas_without_ai: tuple[AlphaStat, ...] = ()
    """Alpha without the AI judges' answers (empty when no AI judge answered)."""


@dataclass(frozen=True)
class _Answer:
    user_id: int
    item_id: int
    task_type: str
    payload: dict[str, Any]
    refs: tuple[int, ...]
    is_gold: bool
    gold: dict[str, Any] | None
    duration_ms: int | None


def _load_answers(session: Session, project_id: int) -> list[_Answer]:
    refs: dict[int, list[int]] = defaultdict(list)
    for item_id, response_id in session.execute(
        select(Response.item_id, Response.id)
        .join(Item, Item.id == Response.item_id)
        .where(Item.project_id == project_id)
        .order_by(Response.item_id, Response.position)
    ):
        refs[item_id].append(response_id)
    rows = session.execute(
        select(
            Judgment.user_id,
            Judgment.item_id,
            Judgment.task_type,
            Judgment.payload,
            Item.is_gold,
            Item.gold_answer,
            Judgment.duration_ms,
        )
        .join(Item, Item.id == Judgment.item_id)
        .where(Item.project_id == project_id)
        .order_by(Judgment.id)
    ).all()
    return [
        _Answer(
            user_id=u, item_id=i, task_type=t, payload=p, refs=tuple(refs[i]), is_gold=bool(g), gold=ga, duration_ms=d
        )
        for u, i, t, p, g, ga, d in rows
    ]


def _units(fn: UnitFn | None, answer: _Answer, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    """The units `fn` finds in the answer (or in `payload`, e.g. the gold answer, on the same item)."""
    return {} if fn is None else fn(answer.payload if payload is None else payload, answer.refs)


def _agreement_units(answer: _Answer, payload: dict[str, Any] | None = None) -> dict[str, Any]:
    return _units(TASK_TYPES[answer.task_type].agreement_units, answer, payload)


def majority_agreement(answers: list[_Answer]) -> dict[int, tuple[int, int]]:
    """user id -> (agreeing units, compared units), leave-one-out against each item's others."""
    by_item: dict[int, list[_Answer]] = defaultdict(list)
    for a in answers:
        by_item[a.item_id].append(a)
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0])
    for item_answers in by_item.values():
        if len(item_answers) < 2:
            continue
        tolerance = TASK_TYPES[item_answers[0].task_type].agreement_tolerance
        unit_values = [_agreement_units(a) for a in item_answers]
        for index, answer in enumerate(item_answers):
            for unit, value in unit_values[index].items():
                others = [u[unit] for j, u in enumerate(unit_values) if j != index and unit in u]
                verdict = unit_agrees(value, others, tolerance)
                if verdict is not None:
                    tally[answer.user_id][0] += int(verdict)
                    tally[answer.user_id][1] += 1
    return {user: (agree, total) for user, (agree, total) in tally.items()}


def gold_accuracy(answers: list[_Answer]) -> dict[int, tuple[int, int, int]]:
    """user id -> (agreeing gold units, gold units, gold items answered)."""
    tally: dict[int, list[int]] = defaultdict(lambda: [0, 0, 0])
    for a in answers:
        if not a.is_gold or a.gold is None:
            continue
        tolerance = TASK_TYPES[a.task_type].agreement_tolerance
        given, known = _agreement_units(a), _agreement_units(a, a.gold)
        shared = [u for u in known if u in given]
        tally[a.user_id][0] += sum(units_agree(given[u], known[u], tolerance) for u in shared)
        tally[a.user_id][1] += len(shared)
        tally[a.user_id][2] += 1
    return {user: (agree, total, items) for user, (agree, total, items) in tally.items()}


def alpha_by_type(answers: list[_Answer]) -> list[AlphaStat]:
    """Krippendorff's alpha per task type and metric, pooling the units of all items."""
    units: dict[str, dict[tuple[int, str], list[Hashable]]] = defaultdict(lambda: defaultdict(list))
    for a in answers:
        for unit, value in _units(TASK_TYPES[a.task_type].alpha_units, a).items():
            units[a.task_type][(a.item_id, unit)].append(value)
    out: list[AlphaStat] = []
    for type_name in sorted(units):
        data = list(units[type_name].values())
        pairable = sum(1 for u in data if len(u) >= 2)
        for metric in TASK_TYPES[type_name].alpha_metrics:
            out.append(AlphaStat(type_name, metric, krippendorff_alpha(data, metric), pairable))
    return out


def _flip_stats(session: Session, project_id: int) -> dict[int, tuple[int, int]]:
    """AI user id -> (flipped questions, questions)."""
    rows = session.execute(
        select(AIVerdict.user_id, func.count(AIVerdict.id), func.sum(AIVerdict.flipped.cast(Integer)))
        .where(AIVerdict.project_id == project_id)
        .group_by(AIVerdict.user_id)
    ).all()
    return {user: (int(flips or 0), int(n)) for user, n, flips in rows}


def _count_by(session: Session, column: Any, project_id: int) -> Counter[Any]:
    """Skipped assignments of a project counted by `column`."""
    return Counter(
        dict(
            session.execute(
                select(column, func.count(Assignment.id))
                .where(Assignment.project_id == project_id, Assignment.status == "skipped")
                .group_by(column)
            ).all()
        )
    )


def _annotator_row(
    user_id: int,
    account: tuple[str, str],
    mine: list[_Answer],
    skips: int,
    agreement: tuple[int, int],
    gold: tuple[int, int, int],
    flips: tuple[int, int] | None,
) -> AnnotatorStats:
    agree, total = agreement
    g_agree, g_total, g_items = gold
    durations = [a.duration_ms / 1000 for a in mine if a.duration_ms is not None]
    return AnnotatorStats(
        user_id=user_id,
        name=account[0],
        judgments=len(mine),
        skips=skips,
        agreement=agree / total if total else None,
        agreement_units=total,
        gold_accuracy=g_agree / g_total if g_total else None,
        gold_judgments=g_items,
        median_seconds=statistics.median(durations) if durations else None,
        role=account[1],
        flip_rate=flips[0] / flips[1] if flips and flips[1] else None,
        flip_questions=flips[1] if flips else 0,
    )


def compute_qc(session: Session, project: Project) -> QCReport:
    """The dashboard numbers of one project."""
    answers = _load_answers(session, project.id)
    accounts = {uid: (name, role) for uid, name, role in session.execute(select(User.id, User.name, User.role))}
    agreement = majority_agreement(answers)
    gold = gold_accuracy(answers)
    flips = _flip_stats(session, project.id)
    skips = _count_by(session, Assignment.user_id, project.id)
    skip_reasons = _count_by(session, Assignment.skip_reason, project.id)
    per_user: dict[int, list[_Answer]] = defaultdict(list)
    for a in answers:
        per_user[a.user_id].append(a)
    harm: Counter[str] = Counter()
    for a in answers:
        for labels in a.payload.get("flags", {}).values():
            harm.update(labels)
    users = sorted(set(per_user) | set(skips) | set(flips), key=lambda u: accounts.get(u, ("", ""))[0])
    stats = [
        _annotator_row(
            u,
            accounts.get(u, (f"#{u}", "annotator")),
            per_user.get(u, []),
            skips.get(u, 0),
            agreement.get(u, (0, 0)),
            gold.get(u, (0, 0, 0)),
            flips.get(u),
        )
        for u in users
    ]
    ai = {u for u, (_, role) in accounts.items() if role == "ai"}
    people = [a for a in answers if a.user_id not in ai]
    return QCReport(
        project=project.name,
        progress=project_progress(session, project.id),
        annotators=tuple(stats),
        alphas=tuple(alpha_by_type(answers)),
        skip_reasons={str(k): v for k, v in skip_reasons.items()},
        harm_flags=dict(harm),
        alphas_without_ai=tuple(alpha_by_type(people)) if len(people) < len(answers) else (),
    )
