"""SQLAlchemy 2 ORM tables of the feedback app.

Times are UNIX seconds (float, UTC) so that comparisons are plain numbers on every backend.
The invariants that protect annotators' work live in the schema, not only in Python:

* ``judgments``: UNIQUE(item_id, user_id) -- one judgment per (item, annotator); UNIQUE(assignment_id).
* ``assignments``: UNIQUE(item_id, user_id) -- an item is never handed to the same annotator twice.
* ``audit_events`` and ``judgments`` reject UPDATE (and the audit log DELETE) through triggers
  created by the initial migration, so the log is append-only even for someone with a SQL shell.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import (
    JSON,
    Boolean,
    CheckConstraint,
    Float,
    ForeignKey,
    Index,
    Integer,
    String,
    Text,
    UniqueConstraint,
)
from sqlalchemy.orm import DeclarativeBase, Mapped, mapped_column

ROLES = ("admin", "annotator", "ai")
"""Account roles: admins manage projects and users; annotators judge; an ``ai`` account is an AI judge
that submits judgments through the store and can never log in (migration 0002)."""

ASSIGNMENT_STATES = ("active", "submitted", "skipped", "expired")
"""An assignment is a lock while ``active`` (until ``expires_at``), then one of the final states."""


class Base(DeclarativeBase):
    """Declarative base of all feedback tables."""


class User(Base):
    __tablename__ = "users"
    __table_args__ = (CheckConstraint("role IN ('admin', 'annotator', 'ai')", name="ck_users_role"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    role: Mapped[str] = mapped_column(String(16))
    password_hash: Mapped[str] = mapped_column(String(255))
    active: Mapped[bool] = mapped_column(Boolean, default=True)
    created_at: Mapped[float] = mapped_column(Float)


class AuthSession(Base):
    """A login: the cookie (kind ``web``) or bearer token (kind ``api``) is stored only as a hash."""

    __tablename__ = "sessions"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    token_hash: Mapped[str] = mapped_column(String(64), unique=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    kind: Mapped[str] = mapped_column(String(8))
    csrf_token: Mapped[str] = mapped_column(String(64))
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    last_seen_at: Mapped[float | None] = mapped_column(Float, nullable=True)
    """Last request (for the idle timeout; NULL on sessions from before migration 0002)."""


class Project(Base):
    __tablename__ = "projects"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    name: Mapped[str] = mapped_column(String(64), unique=True)
    title: Mapped[str] = mapped_column(String(200))
    guidelines: Mapped[str] = mapped_column(Text, default="")
    task_type: Mapped[str] = mapped_column(String(16))
    overlap: Mapped[int] = mapped_column(Integer)
    aspects: Mapped[list[str]] = mapped_column(JSON, default=list)
    lock_ttl_s: Mapped[int] = mapped_column(Integer)
    gold_rate: Mapped[float] = mapped_column(Float, default=0.0)
    created_at: Mapped[float] = mapped_column(Float)
    members_only: Mapped[bool] = mapped_column(Boolean, default=False, server_default="0")
    """Only the annotators in `ProjectMember` (and admins) see the project."""


class ProjectMember(Base):
    """An annotator an admin assigned to a members-only project."""

    __tablename__ = "project_members"

    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), primary_key=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), primary_key=True, index=True)


class LoginFailure(Base):
    """Failed logins of one (client address, account name) pair: the state of the login backoff,
    in the database so every server process shares it."""

    __tablename__ = "login_failures"

    client: Mapped[str] = mapped_column(String(64), primary_key=True)
    name: Mapped[str] = mapped_column(String(64), primary_key=True)
    failures: Mapped[int] = mapped_column(Integer)
    last_failure_at: Mapped[float] = mapped_column(Float, index=True)
    blocked_until: Mapped[float] = mapped_column(Float)


class Item(Base):
    """One task: a prompt with K candidate responses, judged by `required` distinct annotators."""

    __tablename__ = "items"
    __table_args__ = (
        UniqueConstraint("project_id", "external_id", name="uq_items_project_external"),
        Index("ix_items_open", "project_id", "is_gold", "complete", "id"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    task_type: Mapped[str] = mapped_column(String(16))
    prompt: Mapped[Any] = mapped_column(JSON)
    external_id: Mapped[str | None] = mapped_column(String(200), nullable=True)
    is_gold: Mapped[bool] = mapped_column(Boolean, default=False)
    gold_answer: Mapped[Any] = mapped_column(JSON, nullable=True)
    required: Mapped[int] = mapped_column(Integer)
    done_count: Mapped[int] = mapped_column(Integer, default=0)
    complete: Mapped[bool] = mapped_column(Boolean, default=False)
    created_at: Mapped[float] = mapped_column(Float)


class Response(Base):
    """A candidate response of an item, at a fixed canonical `position`."""

    __tablename__ = "responses"
    __table_args__ = (UniqueConstraint("item_id", "position", name="uq_responses_item_position"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    position: Mapped[int] = mapped_column(Integer)
    text: Mapped[str] = mapped_column(Text)
    model: Mapped[str | None] = mapped_column(String(200), nullable=True)


class Assignment(Base):
    """An item handed to an annotator, with the display order they saw (response ids)."""

    __tablename__ = "assignments"
    __table_args__ = (
        UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
        Index("ix_assignments_lock", "item_id", "status", "expires_at"),
        Index("ix_assignments_user", "user_id", "status"),
    )

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    status: Mapped[str] = mapped_column(String(12))
    display_order: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    expires_at: Mapped[float] = mapped_column(Float)
    skip_reason: Mapped[str | None] = mapped_column(Text, nullable=True)


class Judgment(Base):
    """A submitted answer, in canonical form (response ids, never display letters)."""

    __tablename__ = "judgments"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_judgments_item_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"), index=True)
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"), index=True)
    assignment_id: Mapped[int] = mapped_column(ForeignKey("assignments.id"), unique=True)
    task_type: Mapped[str] = mapped_column(String(16))
    payload: Mapped[Any] = mapped_column(JSON)
    display_order: Mapped[list[int]] = mapped_column(JSON)
    created_at: Mapped[float] = mapped_column(Float)
    duration_ms: Mapped[int | None] = mapped_column(Integer, nullable=True)
    source: Mapped[str] = mapped_column(String(8))


class AuditEvent(Base):
    """Append-only log of every state change (logins, imports, locks, judgments, skips, exports)."""

    __tablename__ = "audit_events"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    at: Mapped[float] = mapped_column(Float)
    user_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    action: Mapped[str] = mapped_column(String(32))
    project_id: Mapped[int | None] = mapped_column(Integer, nullable=True, index=True)
    item_id: Mapped[int | None] = mapped_column(Integer, nullable=True)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)


class Job(Base):
    """A background job (candidate generation) with progress the admin page polls."""

    __tablename__ = "jobs"

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"))
    kind: Mapped[str] = mapped_column(String(16))
    status: Mapped[str] = mapped_column(String(12))
    total: Mapped[int] = mapped_column(Integer, default=0)
    done: Mapped[int] = mapped_column(Integer, default=0)
    params: Mapped[Any] = mapped_column(JSON)
    error: Mapped[str | None] = mapped_column(Text, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
    finished_at: Mapped[float | None] = mapped_column(Float, nullable=True)


class AIVerdict(Base):
    """How an AI judge reached (or failed to reach) its answer on an item: both orders and the flip.

    Kept beside `Judgment` so the judgment itself stays exactly like a person's; quality control reads
    the flip rate from here, including the flips left unlabelled (which have no judgment).
    """

    __tablename__ = "ai_verdicts"
    __table_args__ = (UniqueConstraint("item_id", "user_id", name="uq_ai_verdicts_item_user"),)

    id: Mapped[int] = mapped_column(Integer, primary_key=True)
    project_id: Mapped[int] = mapped_column(ForeignKey("projects.id", ondelete="CASCADE"), index=True)
    item_id: Mapped[int] = mapped_column(ForeignKey("items.id", ondelete="CASCADE"))
    user_id: Mapped[int] = mapped_column(ForeignKey("users.id", ondelete="CASCADE"))
    flipped: Mapped[bool] = mapped_column(Boolean)
    labelled: Mapped[bool] = mapped_column(Boolean)
    detail: Mapped[Any] = mapped_column(JSON, nullable=True)
    created_at: Mapped[float] = mapped_column(Float)
