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

``SKIP LOCKED`` has one blind spot: an item whose row another transaction holds for a moment (a
submit, or a pick that then finds the item full) is invisible to the picker. If that was the only
open item, "nothing open" would be wrong, and an annotator told so stops working while the item
still needs answers. So a pick that finds nothing asks once more without locking; if an open item
shows up, it raises `Contended` and the caller retries in a new transaction (`FeedbackStore.next_task`).

An annotator holds at most one live lock per project: asking again returns the same task (a
reload of the page, a retry of the API call), and renews its lifetime.

These are the hot paths of the server (two per judgment), so they use SQLAlchemy Core on the
session's connection: a handful of cached statements per call, no unit-of-work bookkeeping.
"""

from __future__ import annotations

import random
from dataclasses import dataclass
from typing import Any, cast

from sqlalchemy import BindParameter, Connection, Row, Table, bindparam, exists, func, insert, select, update
from sqlalchemy.exc import IntegrityError

from rlhfkit.feedback.errors import Conflict, Forbidden, Invalid, NotFound
from rlhfkit.feedback.tables import Assignment, AuditEvent, Item, Judgment, Project, Response, User
from rlhfkit.feedback.tasks import task_type
from rlhfkit.feedback.tasks.base import TaskContext

PICK_ATTEMPTS = 16
"""Candidates tried per request before answering "nothing open right now"."""

_SYSTEM_RANDOM = random.SystemRandom()

# The ORM classes' Core tables (typed as Table: declarative mapping types __table__ as FromClause).
ITEMS, ASSIGNMENTS, JUDGMENTS = (cast(Table, t.__table__) for t in (Item, Assignment, Judgment))
RESPONSES, PROJECTS, USERS, AUDIT = (cast(Table, t.__table__) for t in (Response, Project, User, AuditEvent))


def _p(name: str, **kw: Any) -> BindParameter[Any]:
    return bindparam(name, **kw)


# Statements are built once: constructing a SQLAlchemy expression costs ~5x executing a cached one.
_LIVE_LOCKS = (
    select(func.count())
    .select_from(ASSIGNMENTS)
    .where(ASSIGNMENTS.c.item_id == ITEMS.c.id, ASSIGNMENTS.c.status == "active", ASSIGNMENTS.c.expires_at > _p("now"))
    .correlate(ITEMS)
    .scalar_subquery()
)
_SEEN = exists().where(ASSIGNMENTS.c.item_id == ITEMS.c.id, ASSIGNMENTS.c.user_id == _p("user_id"))
_OPEN = (
    ITEMS.c.project_id == _p("project_id"),
    ITEMS.c.complete.is_(False),
    ~_SEEN,
    ITEMS.c.id.not_in(_p("tried", expanding=True)),
)
_OPEN_REGULAR = (*_OPEN, ITEMS.c.is_gold.is_(False), ITEMS.c.done_count + _LIVE_LOCKS < ITEMS.c.required)
_OPEN_GOLD = (*_OPEN, ITEMS.c.is_gold.is_(True))
# LIMIT 1: FOR UPDATE locks every row returned, and others should only skip the one we take.
PICK_REGULAR, PICK_GOLD = (
    select(ITEMS).where(*cond).order_by(ITEMS.c.id).limit(1).with_for_update(skip_locked=True, of=ITEMS)
    for cond in (_OPEN_REGULAR, _OPEN_GOLD)
)
# The same conditions without a lock: sees the rows that SKIP LOCKED passed over.
ANY_OPEN_REGULAR, ANY_OPEN_GOLD = (select(ITEMS.c.id).where(*cond).limit(1) for cond in (_OPEN_REGULAR, _OPEN_GOLD))
OTHER_LIVE_LOCKS = (
    select(func.count())
    .select_from(ASSIGNMENTS)
    .where(
        ASSIGNMENTS.c.item_id == _p("item_id"),
        ASSIGNMENTS.c.status == "active",
        ASSIGNMENTS.c.expires_at > _p("now"),
        ASSIGNMENTS.c.user_id != _p("user_id"),
    )
)
LOCK_ITEM = select(ITEMS).where(ITEMS.c.id == _p("item_id")).with_for_update()
PROJECT_BY_NAME = select(PROJECTS).where(PROJECTS.c.name == _p("name"))
PROJECT_ASPECTS = select(PROJECTS.c.aspects).where(PROJECTS.c.id == _p("project_id"))
USER_ACTIVE = select(USERS.c.active).where(USERS.c.id == _p("user_id"))
RESPONSE_IDS = select(RESPONSES.c.id).where(RESPONSES.c.item_id == _p("item_id")).order_by(RESPONSES.c.position)
CURRENT_LOCK = (
    select(ASSIGNMENTS)
    .where(
        ASSIGNMENTS.c.user_id == _p("user_id"),
        ASSIGNMENTS.c.project_id == _p("project_id"),
        ASSIGNMENTS.c.status == "active",
    )
    .order_by(ASSIGNMENTS.c.id.desc())
    .limit(1)
)
ASSIGNMENT_BY_ID = select(ASSIGNMENTS).where(ASSIGNMENTS.c.id == _p("assignment_id"))
INSERT_ASSIGNMENT = insert(ASSIGNMENTS).returning(ASSIGNMENTS.c.id)
SET_ASSIGNMENT = update(ASSIGNMENTS).where(ASSIGNMENTS.c.id == _p("assignment_id"))
INSERT_JUDGMENT = insert(JUDGMENTS).returning(JUDGMENTS.c.id)
EXISTING_JUDGMENT = select(JUDGMENTS.c.id, JUDGMENTS.c.payload).where(
    JUDGMENTS.c.item_id == _p("item_id"), JUDGMENTS.c.user_id == _p("user_id")
)
SET_ITEM_DONE = update(ITEMS).where(ITEMS.c.id == _p("item_id")).values(done_count=_p("done"), complete=_p("complete"))
INSERT_AUDIT = insert(AUDIT)
ITEM_VIEW = select(ITEMS.c.task_type, ITEMS.c.prompt).where(ITEMS.c.id == _p("item_id"))
RESPONSE_TEXTS = select(RESPONSES.c.id, RESPONSES.c.text).where(RESPONSES.c.item_id == _p("item_id"))
GOLD_MIX = (
    select(ITEMS.c.is_gold, func.count())
    .select_from(ASSIGNMENTS.join(ITEMS, ITEMS.c.id == ASSIGNMENTS.c.item_id))
    .where(ASSIGNMENTS.c.user_id == _p("user_id"), ASSIGNMENTS.c.project_id == _p("project_id"))
    .group_by(ITEMS.c.is_gold)
)


class Contended(Exception):
    """An open item exists, but a concurrent transaction holds its row: retry in a new transaction."""


@dataclass(frozen=True)
class Held:
    """An assignment (a lock while active) as the annotator sees it."""

    assignment_id: int
    """Assignment id: what answers are submitted to."""
    item_id: int
    """The item."""
    project_id: int
    """Its project."""
    display_order: tuple[int, ...]
    """Response ids in the order shown to this annotator."""
    expires_at: float
    """When the lock lapses."""


def _audit(
    conn: Connection, now: float, user_id: int, action: str, project_id: int, item_id: int, detail: dict[str, Any]
) -> None:
    event = {"at": now, "user_id": user_id, "action": action, "project_id": project_id, "item_id": item_id}
    conn.execute(INSERT_AUDIT, {**event, "detail": detail})


def project_row(conn: Connection, name: str) -> Row[Any]:
    row = conn.execute(PROJECT_BY_NAME, {"name": name}).first()
    if row is None:
        raise NotFound(f"no project named {name!r}")
    return row


def check_active(conn: Connection, user_id: int) -> None:
    active = conn.execute(USER_ACTIVE, {"user_id": user_id}).scalar()
    if active is None:
        raise NotFound(f"no user with id {user_id}")
    if not active:
        raise Forbidden("this account is deactivated")


def _other_live_locks(conn: Connection, item_id: int, user_id: int, now: float) -> int:
    return conn.execute(OTHER_LIVE_LOCKS, {"item_id": item_id, "now": now, "user_id": user_id}).scalar_one()


def has_free_slot(conn: Connection, item: Row[Any], user_id: int, now: float) -> bool:
    """Whether `user_id` may hold or judge `item` (call with the item locked). Gold is unlimited."""
    if item.is_gold:
        return True
    return item.done_count + _other_live_locks(conn, item.id, user_id, now) < item.required


def _lock_item(conn: Connection, item_id: int) -> Row[Any]:
    """The item row, locked for the rest of the transaction (SQLite: already exclusive)."""
    row = conn.execute(LOCK_ITEM, {"item_id": item_id}).first()
    if row is None:
        raise NotFound(f"no item with id {item_id}")
    return row


def _pick_candidate(
    conn: Connection, project_id: int, user_id: int, now: float, gold: bool, tried: list[int]
) -> Row[Any] | None:
    """The oldest open item the user has never been handed, locked (PG: skipping locked rows).

    Raises `Contended` when none was free but an open one exists: its row was locked, so skipped.
    """
    params = {"project_id": project_id, "user_id": user_id, "now": now, "tried": tried}
    item = conn.execute(PICK_GOLD if gold else PICK_REGULAR, params).first()
    if item is None and conn.execute(ANY_OPEN_GOLD if gold else ANY_OPEN_REGULAR, params).first() is not None:
        raise Contended(f"an open item of project {project_id} is locked by another transaction")
    return item


def _gold_due(conn: Connection, project: Row[Any], user_id: int) -> bool:
    """Serve gold when the user's gold share is below the project's rate (a deterministic mix)."""
    if project.gold_rate <= 0:
        return False
    counts = {bool(g): n for g, n in conn.execute(GOLD_MIX, {"user_id": user_id, "project_id": project.id}).all()}
    gold = counts.get(True, 0)
    return gold < project.gold_rate * (gold + counts.get(False, 0) + 1)


def _new_assignment(conn: Connection, project: Row[Any], item_id: int, user_id: int, now: float) -> Held:
    response_ids = list(conn.execute(RESPONSE_IDS, {"item_id": item_id}).scalars())
    # The order each annotator sees is random (position bias is real) and recorded.
    _SYSTEM_RANDOM.shuffle(response_ids)
    expires = now + project.lock_ttl_s
    assignment_id = conn.execute(
        INSERT_ASSIGNMENT,
        {
            "item_id": item_id,
            "user_id": user_id,
            "project_id": project.id,
            "status": "active",
            "display_order": response_ids,
            "created_at": now,
            "expires_at": expires,
        },
    ).scalar_one()
    _audit(conn, now, user_id, "assign", project.id, item_id, {"assignment": assignment_id, "order": response_ids})
    return Held(assignment_id, item_id, project.id, tuple(response_ids), expires)


def _resume(conn: Connection, project: Row[Any], user_id: int, now: float) -> Held | None:
    """The user's current lock in this project, renewed; an expired one is renewed only if free."""
    current = conn.execute(CURRENT_LOCK, {"user_id": user_id, "project_id": project.id}).first()
    if current is None:
        return None
    item = _lock_item(conn, current.item_id)
    if current.expires_at <= now and not has_free_slot(conn, item, user_id, now):
        conn.execute(SET_ASSIGNMENT, {"assignment_id": current.id, "status": "expired"})
        _audit(conn, now, user_id, "lock_lost", project.id, item.id, {"assignment": current.id})
        return None
    expires = now + project.lock_ttl_s
    conn.execute(SET_ASSIGNMENT, {"assignment_id": current.id, "expires_at": expires})
    return Held(current.id, current.item_id, project.id, tuple(current.display_order), expires)


def live_lock(conn: Connection, project: Row[Any], user_id: int, now: float) -> Held | None:
    """The user's unexpired lock in this project, read only (a GET shows it; only a POST takes one)."""
    current = conn.execute(CURRENT_LOCK, {"user_id": user_id, "project_id": project.id}).first()
    if current is None or current.expires_at <= now:
        return None
    return Held(current.id, current.item_id, project.id, tuple(current.display_order), current.expires_at)


def _try_pick(conn: Connection, project: Row[Any], user_id: int, now: float, gold: bool) -> Held | None:
    tried: list[int] = []
    for _ in range(PICK_ATTEMPTS):
        item = _pick_candidate(conn, project.id, user_id, now, gold, tried)
        if item is None:
            return None
        # Recount under the row lock: on PostgreSQL the candidate query ran on an older snapshot.
        if has_free_slot(conn, item, user_id, now):
            return _new_assignment(conn, project, item.id, user_id, now)
        tried.append(item.id)
    return None


def next_assignment(conn: Connection, project: Row[Any], user_id: int, now: float) -> Held | None:
    """The user's current task in `project`, or a newly locked one, or None when nothing is open.

    Raises `Contended` when the only open items are row-locked by concurrent transactions.
    """
    current = _resume(conn, project, user_id, now)
    if current is not None:
        return current
    order = (True, False) if _gold_due(conn, project, user_id) else (False,)
    for gold in order:
        picked = _try_pick(conn, project, user_id, now, gold)
        if picked is not None:
            return picked
    return None


def get_assignment(conn: Connection, assignment_id: int, user_id: int) -> Row[Any]:
    """An assignment of this user (someone else's reads as unknown: ids are not secrets to probe)."""
    row = conn.execute(ASSIGNMENT_BY_ID, {"assignment_id": assignment_id}).first()
    if row is None or row.user_id != user_id:
        raise NotFound(f"no task {assignment_id} for you")
    return row


def held(row: Row[Any]) -> Held:
    return Held(row.id, row.item_id, row.project_id, tuple(row.display_order), row.expires_at)


def task_context(conn: Connection, item_id: int, aspects: tuple[str, ...], max_text_chars: int) -> TaskContext:
    response_ids = tuple(conn.execute(RESPONSE_IDS, {"item_id": item_id}).scalars())
    return TaskContext(response_ids=response_ids, aspects=aspects, max_text_chars=max_text_chars)


def submit(
    conn: Connection,
    assignment_id: int,
    user_id: int,
    payload: Any,
    now: float,
    *,
    max_text_chars: int,
    duration_ms: int | None,
    source: str,
) -> tuple[int, bool]:
    """Store an answer; returns (judgment id, duplicate). Idempotent for an identical answer.

    Raises Conflict when a *different* answer exists, when the task was skipped, or when the lock
    lapsed and other annotators have filled the item meanwhile.
    """
    if duration_ms is not None and not 0 <= duration_ms <= 7 * 24 * 3600 * 1000:
        raise Invalid("duration_ms must be between 0 and a week")
    assignment = get_assignment(conn, assignment_id, user_id)
    aspects = conn.execute(PROJECT_ASPECTS, {"project_id": assignment.project_id}).scalar_one()
    item = _lock_item(conn, assignment.item_id)
    ctx = task_context(conn, item.id, tuple(aspects), max_text_chars)
    canonical = task_type(item.task_type).normalize(payload, ctx)
    existing = conn.execute(EXISTING_JUDGMENT, {"item_id": item.id, "user_id": user_id}).first()
    if existing is not None:
        if existing.payload == canonical:
            return existing.id, True
        raise Conflict("you already answered this task differently; answers cannot be changed")
    if assignment.status == "skipped":
        raise Conflict("you skipped this task")
    if not has_free_slot(conn, item, user_id, now):
        raise Conflict("your lock on this task expired and other annotators completed it")
    row = {"item_id": item.id, "user_id": user_id, "assignment_id": assignment.id, "task_type": item.task_type}
    row |= {"payload": canonical, "display_order": list(assignment.display_order), "created_at": now}
    try:
        judgment_id = conn.execute(INSERT_JUDGMENT, {**row, "duration_ms": duration_ms, "source": source}).scalar_one()
    except IntegrityError:
        # Only reachable if the item lock was bypassed; the unique constraint still holds the line.
        raise Conflict("this task was answered concurrently; reload it") from None
    conn.execute(SET_ASSIGNMENT, {"assignment_id": assignment.id, "status": "submitted"})
    if not item.is_gold:
        done = item.done_count + 1
        conn.execute(SET_ITEM_DONE, {"item_id": item.id, "done": done, "complete": done >= item.required})
    detail = {"judgment": judgment_id, "assignment": assignment.id, "source": source}
    _audit(conn, now, user_id, "judgment", assignment.project_id, item.id, detail)
    return judgment_id, False


def skip(conn: Connection, assignment_id: int, user_id: int, reason: str, now: float) -> None:
    """Give a task back with a reason; it is never handed to this annotator again."""
    reason = reason.strip() if isinstance(reason, str) else ""
    if not reason:
        raise Invalid("say why you skip (a reason is required)")
    if len(reason) > 1000:
        raise Invalid("the skip reason must be at most 1000 characters")
    assignment = get_assignment(conn, assignment_id, user_id)
    _lock_item(conn, assignment.item_id)
    if assignment.status == "submitted":
        raise Conflict("this task is already answered")
    if assignment.status == "skipped":
        return
    conn.execute(SET_ASSIGNMENT, {"assignment_id": assignment.id, "status": "skipped", "skip_reason": reason})
    detail = {"assignment": assignment.id, "reason": reason}
    _audit(conn, now, user_id, "skip", assignment.project_id, assignment.item_id, detail)


_USER_DONE = (
    select(func.count())
    .select_from(JUDGMENTS.join(ITEMS, ITEMS.c.id == JUDGMENTS.c.item_id))
    .where(ITEMS.c.project_id == _p("project_id"), JUDGMENTS.c.user_id == _p("user_id"))
)
_USER_REMAINING = (
    select(func.count())
    .select_from(ITEMS)
    .where(ITEMS.c.project_id == _p("project_id"), ITEMS.c.is_gold.is_(False), ITEMS.c.complete.is_(False), ~_SEEN)
)


def user_counts(conn: Connection, project_id: int, user_id: int) -> tuple[int, int]:
    """(judgments by the user in the project, open items the user has never been handed)."""
    params = {"project_id": project_id, "user_id": user_id}
    return (int(conn.execute(_USER_DONE, params).scalar_one()), int(conn.execute(_USER_REMAINING, params).scalar_one()))
