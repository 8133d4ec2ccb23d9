"""Handing items to annotators, and accepting their answers, without ever exceeding N.

Invariants (checked by the load test under 50 concurrent annotators):

1. An item's *taken slots* are its judgments plus the unexpired locks (``active`` assignments) of
   annotators who have not judged it yet. An item is handed out only while taken < N, and a
   judgment is accepted only while (judgments + other annotators' live locks) < N. So the number of
   judgments never exceeds N, even when a lock expired and its owner submits late.
2. UNIQUE(item, user) on assignments and on judgments: nobody gets an item twice or judges twice.
3. Every read-check-write runs in one transaction that holds the item exclusively: on SQLite the
   whole transaction is ``BEGIN IMMEDIATE`` (one writer at a time); on PostgreSQL the item row is
   locked with ``SELECT ... FOR UPDATE`` (``SKIP LOCKED`` when picking, so concurrent annotators
   pick different items instead of queueing on the same one). Anything that changes an item's
   slots takes that same lock first, so the count made after locking is exact.

An annotator holds at most one live lock per project: asking again returns the same task (a
reload of the page, a retry of the API call), and renews its lifetime.
"""

from __future__ import annotations

import random
from typing import Any

from sqlalchemy import exists, func, select
from sqlalchemy.exc import IntegrityError
from sqlalchemy.orm import Session

from rlhfkit.feedback.audit import record_event
from rlhfkit.feedback.errors import Conflict, Invalid, NotFound
from rlhfkit.feedback.models import Assignment, Item, Judgment, Project, Response
from rlhfkit.feedback.tasktypes import TaskContext, task_type

PICK_ATTEMPTS = 16
"""Candidates tried per request before answering "nothing open right now"."""

_SYSTEM_RANDOM = random.SystemRandom()


def _lock_item(session: Session, item_id: int) -> Item:
    """The item, locked for the rest of the transaction (a no-op clause on SQLite)."""
    item = session.scalar(select(Item).where(Item.id == item_id).with_for_update())
    if item is None:
        raise NotFound(f"no item with id {item_id}")
    return item


def _other_live_locks(session: Session, item_id: int, user_id: int, now: float) -> int:
    return session.scalar(
        select(func.count(Assignment.id)).where(
            Assignment.item_id == item_id,
            Assignment.status == "active",
            Assignment.expires_at > now,
            Assignment.user_id != user_id,
        )
    ) or 0


def has_free_slot(session: Session, item: Item, user_id: int, now: float) -> bool:
    """Whether `user_id` may hold or judge `item` (call with the item locked). Gold is unlimited."""
    if item.is_gold:
        return True
    return item.done_count + _other_live_locks(session, item.id, user_id, now) < item.required


def _pick_candidate(session: Session, project: Project, user_id: int, now: float,
                    gold: bool, tried: list[int]) -> int | None:
    """The oldest open item the user has never been handed, locked (PG: skipping locked rows)."""
    live_locks = (
        select(func.count(Assignment.id))
        .where(Assignment.item_id == Item.id, Assignment.status == "active",
               Assignment.expires_at > now)
        .correlate(Item)
        .scalar_subquery()
    )
    seen = exists().where(Assignment.item_id == Item.id, Assignment.user_id == user_id)
    query = select(Item.id).where(
        Item.project_id == project.id,
        Item.is_gold.is_(gold),
        Item.complete.is_(False),
        ~seen,
    )
    if not gold:
        query = query.where(Item.done_count + live_locks < Item.required)
    if tried:
        query = query.where(Item.id.not_in(tried))
    # LIMIT 1: FOR UPDATE locks every row returned, and others should only skip the one we take.
    query = query.order_by(Item.id).limit(1).with_for_update(skip_locked=True, of=Item)
    return session.scalar(query)


def _gold_due(session: Session, project: Project, user_id: int) -> bool:
    """Serve gold when the user's gold share is below the project's rate (deterministic mix)."""
    if project.gold_rate <= 0:
        return False
    rows = session.execute(
        select(Item.is_gold, func.count(Assignment.id))
        .join(Item, Item.id == Assignment.item_id)
        .where(Assignment.user_id == user_id, Assignment.project_id == project.id)
        .group_by(Item.is_gold)
    ).all()
    counts = {bool(is_gold): n for is_gold, n in rows}
    total = counts.get(True, 0) + counts.get(False, 0)
    return counts.get(True, 0) < project.gold_rate * (total + 1)


def _new_assignment(session: Session, project: Project, item_id: int, user_id: int,
                    now: float) -> Assignment:
    response_ids = list(session.scalars(
        select(Response.id).where(Response.item_id == item_id).order_by(Response.position)
    ))
    # The order each annotator sees is random (position bias is real) and recorded.
    _SYSTEM_RANDOM.shuffle(response_ids)
    assignment = Assignment(item_id=item_id, user_id=user_id, project_id=project.id,
                            status="active", display_order=response_ids, created_at=now,
                            expires_at=now + project.lock_ttl_s)
    session.add(assignment)
    session.flush()
    record_event(session, now, user_id, "assign", project_id=project.id, item_id=item_id,
                 detail={"assignment": assignment.id, "order": response_ids})
    return assignment


def _resume(session: Session, project: Project, user_id: int, now: float) -> Assignment | None:
    """The user's current lock in this project, renewed; an expired one is renewed only if free."""
    current = session.scalar(
        select(Assignment).where(Assignment.user_id == user_id,
                                 Assignment.project_id == project.id,
                                 Assignment.status == "active")
        .order_by(Assignment.id.desc()).limit(1)
    )
    if current is None:
        return None
    item = _lock_item(session, current.item_id)
    if current.expires_at <= now and not has_free_slot(session, item, user_id, now):
        current.status = "expired"
        record_event(session, now, user_id, "lock_lost", project_id=project.id,
                     item_id=item.id, detail={"assignment": current.id})
        return None
    current.expires_at = now + project.lock_ttl_s
    return current


def _try_pick(session: Session, project: Project, user_id: int, now: float, gold: bool) -> Assignment | None:
    tried: list[int] = []
    for _ in range(PICK_ATTEMPTS):
        item_id = _pick_candidate(session, project, user_id, now, gold, tried)
        if item_id is None:
            return None
        item = _lock_item(session, item_id)
        # Recount under the lock: on PostgreSQL the candidate query ran on an older snapshot.
        if not item.complete and has_free_slot(session, item, user_id, now):
            return _new_assignment(session, project, item_id, user_id, now)
        tried.append(item_id)
    return None


def next_assignment(session: Session, project: Project, user_id: int, now: float) -> Assignment | None:
    """The user's current task in `project`, or a newly locked one, or None when nothing is open."""
    current = _resume(session, project, user_id, now)
    if current is not None:
        return current
    order = (True, False) if _gold_due(session, project, user_id) else (False,)
    for gold in order:
        picked = _try_pick(session, project, user_id, now, gold)
        if picked is not None:
            return picked
    return None


def get_assignment(session: Session, assignment_id: int, user_id: int) -> Assignment:
    """An assignment of this user (someone else's reads as unknown: ids are not secrets to probe)."""
    assignment = session.get(Assignment, assignment_id)
    if assignment is None or assignment.user_id != user_id:
        raise NotFound(f"no task {assignment_id} for you")
    return assignment


def task_context(session: Session, item_id: int, aspects: tuple[str, ...], max_text_chars: int) -> TaskContext:
    response_ids = tuple(session.scalars(
        select(Response.id).where(Response.item_id == item_id).order_by(Response.position)
    ))
    return TaskContext(response_ids=response_ids, aspects=aspects, max_text_chars=max_text_chars)


def submit(session: Session, assignment_id: int, user_id: int, payload: Any, now: float, *,
           max_text_chars: int, duration_ms: int | None, source: str) -> tuple[int, bool]:
    """Store an answer; returns (judgment id, duplicate). Idempotent for an identical answer.

    Raises Conflict when a *different* answer exists, when the task was skipped, or when the lock
    lapsed and other annotators have filled the item meanwhile.
    """
    assignment = get_assignment(session, assignment_id, user_id)
    project = session.get(Project, assignment.project_id)
    assert project is not None  # foreign key
    item = _lock_item(session, assignment.item_id)
    ctx = task_context(session, item.id, tuple(project.aspects), max_text_chars)
    canonical = task_type(item.task_type).normalize(payload, ctx)
    existing = session.scalar(
        select(Judgment).where(Judgment.item_id == item.id, Judgment.user_id == user_id)
    )
    if existing is not None:
        if existing.payload == canonical:
            return existing.id, True
        raise Conflict("you already answered this task differently; answers cannot be changed")
    if assignment.status == "skipped":
        raise Conflict("you skipped this task")
    if not has_free_slot(session, item, user_id, now):
        raise Conflict("your lock on this task expired and other annotators completed it")
    if duration_ms is not None and not 0 <= duration_ms <= 7 * 24 * 3600 * 1000:
        raise Invalid("duration_ms must be between 0 and a week")
    judgment = Judgment(item_id=item.id, user_id=user_id, assignment_id=assignment.id,
                        task_type=item.task_type, payload=canonical,
                        display_order=list(assignment.display_order), created_at=now,
                        duration_ms=duration_ms, source=source)
    session.add(judgment)
    assignment.status = "submitted"
    if not item.is_gold:
        item.done_count += 1
        item.complete = item.done_count >= item.required
    try:
        session.flush()
    except IntegrityError:
        # Only reachable if the item lock was bypassed; the unique constraint still holds the line.
        raise Conflict("this task was answered concurrently; reload it") from None
    record_event(session, now, user_id, "judgment", project_id=project.id, item_id=item.id,
                 detail={"judgment": judgment.id, "assignment": assignment.id, "source": source})
    return judgment.id, False


def skip(session: Session, assignment_id: int, user_id: int, reason: str, now: float) -> None:
    """Give a task back with a reason; it is never handed to this annotator again."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise Invalid("say why you skip (a reason is required)")
    if len(reason) > 1000:
        raise Invalid("the skip reason must be at most 1000 characters")
    assignment = get_assignment(session, assignment_id, user_id)
    _lock_item(session, assignment.item_id)
    if assignment.status == "submitted":
        raise Conflict("this task is already answered")
    if assignment.status == "skipped":
        return
    assignment.status = "skipped"
    assignment.skip_reason = reason
    record_event(session, now, user_id, "skip", project_id=assignment.project_id,
                 item_id=assignment.item_id, detail={"assignment": assignment.id, "reason": reason})


def user_counts(session: Session, project_id: int, user_id: int) -> tuple[int, int]:
    """(judgments by the user in the project, open items the user has never been handed)."""
    done = session.scalar(
        select(func.count(Judgment.id)).join(Item, Item.id == Judgment.item_id)
        .where(Item.project_id == project_id, Judgment.user_id == user_id)
    ) or 0
    seen = exists().where(Assignment.item_id == Item.id, Assignment.user_id == user_id)
    remaining = session.scalar(
        select(func.count(Item.id)).where(
            Item.project_id == project_id, Item.is_gold.is_(False), Item.complete.is_(False), ~seen
        )
    ) or 0
    return int(done), int(remaining)

