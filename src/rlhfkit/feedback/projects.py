"""Projects and their items (functions over an open SQLAlchemy session)."""

from __future__ import annotations

from dataclasses import dataclass, replace
from typing import Any

from sqlalchemy import Integer, cast, func, insert, select, update
from sqlalchemy.orm import Session

from rlhfkit.feedback.audit import record_event
from rlhfkit.feedback.entities import NewItem, Progress, ProjectSpec, ProjectView
from rlhfkit.feedback.errors import Conflict, FeedbackError, Invalid, NotFound
from rlhfkit.feedback.importing import TextLimits, check_prompt, check_responses
from rlhfkit.feedback.tables import Item, Judgment, Project, Response
from rlhfkit.feedback.tasks import task_type
from rlhfkit.feedback.tasks.base import TaskContext, TaskType


def project_view(p: Project) -> ProjectView:
    return ProjectView(
        id=p.id,
        name=p.name,
        title=p.title,
        guidelines=p.guidelines,
        task_type=p.task_type,
        overlap=p.overlap,
        aspects=tuple(p.aspects),
        lock_ttl_s=p.lock_ttl_s,
        gold_rate=p.gold_rate,
        members_only=p.members_only,
    )


def get_project(session: Session, name: str) -> Project:
    project = session.scalar(select(Project).where(Project.name == name))
    if project is None:
        raise NotFound(f"no project named {name!r}")
    return project


def create_project(session: Session, spec: ProjectSpec, now: float, by_user: int | None) -> ProjectView:
    if session.scalar(select(Project.id).where(Project.name == spec.name)) is not None:
        raise Conflict(f"project {spec.name!r} already exists")
    project = Project(
        name=spec.name,
        title=spec.title or spec.name,
        guidelines=spec.guidelines,
        task_type=spec.task_type,
        overlap=spec.overlap,
        aspects=list(spec.aspects),
        lock_ttl_s=spec.lock_ttl_s,
        gold_rate=spec.gold_rate,
        members_only=spec.members_only,
        created_at=now,
    )
    session.add(project)
    session.flush()
    record_event(
        session,
        now,
        by_user,
        "create_project",
        project_id=project.id,
        detail={"name": spec.name, "task_type": spec.task_type, "overlap": spec.overlap},
    )
    return project_view(project)


def list_projects(session: Session) -> list[ProjectView]:
    return [project_view(p) for p in session.scalars(select(Project).order_by(Project.name))]


def update_project(session: Session, name: str, changes: dict[str, Any], now: float, by_user: int) -> ProjectView:
    """Change title, guidelines, aspects, lock lifetime, gold rate or members-only (validated like a new spec).

    The overlap N and the task type are fixed once a project exists: items already carry them and
    judgments already count against them.
    """
    project = get_project(session, name)
    allowed = {"title", "guidelines", "aspects", "lock_ttl_s", "gold_rate", "members_only"}
    unknown = set(changes) - allowed
    if unknown:
        raise Invalid(f"cannot change {sorted(unknown)}; changeable: {sorted(allowed)}")
    current = ProjectSpec(
        name=project.name,
        task_type=project.task_type,
        title=project.title,
        guidelines=project.guidelines,
        overlap=project.overlap,
        aspects=tuple(project.aspects),
        lock_ttl_s=project.lock_ttl_s,
        gold_rate=project.gold_rate,
        members_only=project.members_only,
    )
    if "aspects" in changes:
        changes = {**changes, "aspects": tuple(changes["aspects"])}
    spec = replace(current, **changes)
    project.title = spec.title or spec.name
    project.guidelines = spec.guidelines
    project.aspects = list(spec.aspects)
    project.lock_ttl_s = spec.lock_ttl_s
    project.gold_rate = spec.gold_rate
    project.members_only = spec.members_only
    record_event(
        session,
        now,
        by_user,
        "update_project",
        project_id=project.id,
        detail={k: v for k, v in changes.items() if k != "guidelines"},
    )
    return project_view(project)


@dataclass(frozen=True)
class _Prepared:
    """An item that passed validation, with its task type and its gold answer keyed by position."""

    item: NewItem
    kind: TaskType
    gold: dict[str, Any] | None


def _prepare(item: NewItem, project: Project, limits: TextLimits) -> _Prepared:
    check_prompt(item.prompt, limits)
    check_responses(list(item.responses), limits)
    kind = task_type(item.task_type or project.task_type)
    kind.check_response_count(len(item.responses))
    gold = None
    if item.gold is not None:
        ctx = TaskContext(
            response_ids=tuple(range(len(item.responses))),
            aspects=tuple(project.aspects),
            max_text_chars=limits.max_response_chars,
        )
        gold = kind.normalize(item.gold, ctx)
    return _Prepared(item, kind, gold)


def _prepare_all(items: list[NewItem], project: Project, limits: TextLimits) -> list[_Prepared]:
    """Every item validated, or Invalid listing the first 20 problems (an upload is all or nothing)."""
    errors: list[str] = []
    prepared: list[_Prepared] = []
    for number, item in enumerate(items, start=1):
        try:
            prepared.append(_prepare(item, project, limits))
        except FeedbackError as exc:
            errors.append(f"item {number}: {exc.message}")
    if errors:
        more = f"; and {len(errors) - 20} more errors" if len(errors) > 20 else ""
        raise Invalid("; ".join(errors[:20]) + more)
    return prepared


def _check_external_ids(session: Session, project: Project, items: list[NewItem]) -> None:
    external = [i.external_id for i in items if i.external_id is not None]
    if len(set(external)) != len(external):
        raise Conflict("two items in this upload share an id")
    if external:
        taken = session.scalars(
            select(Item.external_id).where(Item.project_id == project.id, Item.external_id.in_(external[:1000]))
        ).first()
        if taken is not None:
            raise Conflict(f"an item with id {taken!r} already exists in this project")


def _insert(session: Session, project: Project, prepared: list[_Prepared], now: float) -> list[int]:
    """Bulk INSERT ... RETURNING of items, then of their responses (one round trip per batch, ids in
    parameter order); gold answers are re-keyed from response positions to the new response ids."""
    ids = list(
        session.scalars(
            insert(Item).returning(Item.id, sort_by_parameter_order=True),
            [
                {
                    "project_id": project.id,
                    "task_type": p.kind.name,
                    "prompt": p.item.prompt,
                    "external_id": p.item.external_id,
                    "is_gold": p.gold is not None,
                    "gold_answer": None,
                    "required": project.overlap,
                    "done_count": 0,
                    "complete": False,
                    "created_at": now,
                }
                for p in prepared
            ],
        )
    )
    response_rows = [
        {"item_id": item_id, "position": i, "text": text, "model": p.item.models[i] if p.item.models else None}
        for item_id, p in zip(ids, prepared, strict=True)
        for i, text in enumerate(p.item.responses)
    ]
    response_ids = (
        list(session.scalars(insert(Response).returning(Response.id, sort_by_parameter_order=True), response_rows))
        if response_rows
        else []
    )
    cursor = 0
    for item_id, p in zip(ids, prepared, strict=True):
        mapping = {i: response_ids[cursor + i] for i in range(len(p.item.responses))}
        cursor += len(p.item.responses)
        if p.gold is not None:
            session.execute(update(Item).where(Item.id == item_id).values(gold_answer=p.kind.remap(p.gold, mapping)))
    return ids


def add_items(
    session: Session,
    project: Project,
    items: list[NewItem],
    limits: TextLimits,
    now: float,
    by_user: int | None,
    source: str = "api",
) -> list[int]:
    """Validate and insert items (all or nothing); returns their ids.

    Gold answers are validated against response positions first, then re-keyed to response ids.
    """
    prepared = _prepare_all(items, project, limits)
    _check_external_ids(session, project, items)
    if not prepared:
        return []
    ids = _insert(session, project, prepared, now)
    record_event(
        session,
        now,
        by_user,
        "add_items",
        project_id=project.id,
        detail={"count": len(ids), "source": source, "gold": sum(1 for p in prepared if p.gold is not None)},
    )
    return ids


def item_detail(session: Session, item_id: int) -> dict[str, Any]:
    """An item with its responses and judgments (admin view)."""
    item = session.get(Item, item_id)
    if item is None:
        raise NotFound(f"no item with id {item_id}")
    responses = session.scalars(select(Response).where(Response.item_id == item_id).order_by(Response.position))
    judgments = session.scalars(select(Judgment).where(Judgment.item_id == item_id).order_by(Judgment.id))
    return {
        "id": item.id,
        "project_id": item.project_id,
        "task_type": item.task_type,
        "prompt": item.prompt,
        "external_id": item.external_id,
        "is_gold": item.is_gold,
        "gold_answer": item.gold_answer,
        "required": item.required,
        "done": item.done_count,
        "complete": item.complete,
        "responses": [{"id": r.id, "position": r.position, "text": r.text, "model": r.model} for r in responses],
        "judgments": [
            {
                "id": j.id,
                "user_id": j.user_id,
                "payload": j.payload,
                "display_order": j.display_order,
                "created_at": j.created_at,
            }
            for j in judgments
        ],
    }


def project_progress(session: Session, project_id: int) -> Progress:
    """Counts over the project's non-gold items."""
    items, complete, done, required = session.execute(
        select(
            func.count(Item.id),
            func.coalesce(func.sum(cast(Item.complete, Integer)), 0),
            func.coalesce(func.sum(Item.done_count), 0),
            func.coalesce(func.sum(Item.required), 0),
        ).where(Item.project_id == project_id, Item.is_gold.is_(False))
    ).one()
    return Progress(
        items=int(items), complete_items=int(complete), judgments=int(done), required_judgments=int(required)
    )
