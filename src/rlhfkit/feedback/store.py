"""The feedback store: one service layer over the database, used by the web app and by scripts.

Every method is one transaction (writes: SQLite ``BEGIN IMMEDIATE`` / PostgreSQL row locks, see
`rlhfkit.feedback.db`) and returns plain frozen dataclasses from `rlhfkit.feedback.entities`.
Errors are `rlhfkit.feedback.errors.FeedbackError` subclasses carrying an HTTP status.

Scripted use (a simulated annotator, an AI judge running in-process)::

    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.feedback.entities import NewItem, ProjectSpec

    store = FeedbackStore("sqlite:///feedback.db")          # migrates the schema if needed
    admin = store.create_user("alice", "admin", "a long password")
    store.create_project(ProjectSpec(name="helpful-v1", task_type="pairwise", overlap=3))
    store.add_items("helpful-v1", [NewItem(prompt="Hi?", responses=("Hello!", "Go away."))])
    bot = store.create_user("judge-1", "annotator", "another long password")
    while (task := store.next_task("helpful-v1", bot.id)) is not None:
        store.submit(task.assignment_id, bot.id, {"choice": task.responses[0].id})
    report = store.qc_report("helpful-v1")
    rows = store.export_rows("helpful-v1", "pairs", "majority")
"""

from __future__ import annotations

import time
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from typing import Any

from sqlalchemy import Connection, select

from rlhfkit.data.projects import Aggregation
from rlhfkit.feedback import accounts, assignment, members, projects, throttle
from rlhfkit.feedback.audit import list_events, record_event
from rlhfkit.feedback.db import Database
from rlhfkit.feedback.entities import (
    NewItem,
    Progress,
    ProjectSpec,
    ProjectView,
    ResponseView,
    SessionView,
    SubmitResult,
    TaskView,
    UserView,
)
from rlhfkit.feedback.errors import NotFound, Unauthorized
from rlhfkit.feedback.export import ExportRow, build_rows, load_answers, why_empty
from rlhfkit.feedback.importing import TextLimits, parse_items_jsonl
from rlhfkit.feedback.qc import QCReport, compute_qc
from rlhfkit.feedback.security import check_password_strength, hash_password
from rlhfkit.feedback.tables import Item, Judgment, Project, User

CONTENDED_BACKOFF_S = (0.002, 0.005, 0.01, 0.02, 0.05, 0.1, 0.1, 0.2, 0.2, 0.3, 0.5)
"""Waits between retries of `next_task` while the only open items are row-locked by other
transactions (about 1.5 s in all; then it answers "nothing open right now")."""


@dataclass(frozen=True)
class StoreConfig:
    """Limits and lifetimes of the store."""

    limits: TextLimits = field(default_factory=TextLimits)
    """Size limits on imported prompts and responses."""
    max_answer_chars: int = 20_000
    """Longest free text in an answer (critique, rewrite, demonstration, comment)."""
    session_ttl_s: float = 7 * 24 * 3600
    """Lifetime of a login (cookie or API token)."""
    session_idle_s: float = 8 * 3600
    """A login unused for this long ends (idle timeout; OWASP suggests hours for low-risk apps)."""
    login_backoff: throttle.LoginBackoff = field(default_factory=throttle.LoginBackoff)
    """How failed logins slow down further tries of one (client address, name) pair."""

    def __post_init__(self) -> None:
        if self.max_answer_chars < 1:
            raise ValueError(f"max_answer_chars must be >= 1, got {self.max_answer_chars}")
        if self.session_ttl_s <= 0 or self.session_idle_s <= 0:
            raise ValueError(
                f"session_ttl_s and session_idle_s must be > 0, got {self.session_ttl_s}, {self.session_idle_s}"
            )


def _labels(count: int) -> list[str]:
    return [chr(ord("A") + i) if i < 26 else str(i + 1) for i in range(count)]


class FeedbackStore:
    """Service layer of the feedback app (thread-safe: each call opens its own session)."""

    def __init__(
        self,
        db: Database | str,
        *,
        config: StoreConfig | None = None,
        clock: Callable[[], float] = time.time,
        migrate: bool = True,
    ) -> None:
        self.db = db if isinstance(db, Database) else Database(db)
        self.config = config or StoreConfig()
        self.clock = clock
        if migrate:
            self.db.migrate()
        else:
            try:
                self.db.require_current_schema()
            except Exception:
                self.db.dispose()
                raise

    def close(self) -> None:
        self.db.dispose()

    # ------------------------------------------------------------------ accounts

    def create_user(self, name: str, role: str, password: str, by_user: int | None = None) -> UserView:
        """Create an account (password >= 8 characters, not common, hashed with Argon2id)."""
        check_password_strength(password, name)
        password_hash = hash_password(password)  # slow: outside the write transaction
        with self.db.write() as s:
            return accounts.create_user(s, name, role, password_hash, self.clock(), by_user)

    def user(self, name: str) -> UserView:
        with self.db.read() as s:
            row = s.scalar(select(User).where(User.name == name))
            if row is None:
                raise NotFound(f"no user named {name!r}")
            return accounts.user_view(row)

    def list_users(self) -> list[UserView]:
        with self.db.read() as s:
            return accounts.list_users(s)

    def set_user_active(self, user_id: int, active: bool, by_user: int) -> UserView:
        with self.db.write() as s:
            return accounts.set_user_active(s, user_id, active, self.clock(), by_user)

    def set_password(self, user_id: int, password: str, by_user: int) -> None:
        check_password_strength(password)
        password_hash = hash_password(password)
        with self.db.write() as s:
            accounts.set_password(s, user_id, password_hash, self.clock(), by_user)

    def login(self, name: str, password: str, kind: str = "api", client: str | None = None) -> tuple[str, SessionView]:
        """Check credentials and open a session: (secret token, session).

        `client` is the caller's address: failures back off per (client, name) (`rlhfkit.feedback.throttle`)."""
        key = throttle.client_key(client)
        with self.db.read() as s:
            throttle.check_allowed(s, key, name, self.clock())
        try:
            with self.db.read() as s:
                user = accounts.check_credentials(s, name, password)
        except Unauthorized:
            with self.db.write() as s:
                throttle.record_failure(s, key, name, self.clock(), self.config.login_backoff)
            raise
        with self.db.write() as s:
            throttle.clear_failures(s, key, name)
            return accounts.open_session(s, user, kind, self.clock(), self.config.session_ttl_s)

    def session(self, token: str) -> SessionView | None:
        """The live session of a token (None when unknown, expired or idle too long)."""
        now = self.clock()
        with self.db.read_conn() as conn:
            view, stale = accounts.session_for_token(conn, token, now, self.config.session_idle_s)
        if stale:
            with self.db.write() as s:
                accounts.touch_session(s, token, now)
        return view

    def logout(self, token: str) -> None:
        with self.db.write() as s:
            accounts.logout(s, token, self.clock())

    # ------------------------------------------------------------------ projects and items

    def create_project(self, spec: ProjectSpec, by_user: int | None = None) -> ProjectView:
        with self.db.write() as s:
            return projects.create_project(s, spec, self.clock(), by_user)

    def project(self, name: str, viewer: int | None = None) -> ProjectView:
        """A project; with `viewer`, NotFound unless that user may see it (`rlhfkit.feedback.members`)."""
        with self.db.read() as s:
            row = projects.get_project(s, name)
            members.check_visible(s.connection(), row, viewer)
            return projects.project_view(row)

    def list_projects(self, viewer: int | None = None) -> list[ProjectView]:
        """Every project, or those `viewer` may see."""
        with self.db.read() as s:
            return members.visible(s.connection(), projects.list_projects(s), viewer)

    def set_member(self, project: str, user_id: int, member: bool, by_user: int) -> None:
        with self.db.write() as s:
            members.set_member(s, project, user_id, member, self.clock(), by_user)

    def members(self, project: str) -> list[UserView]:
        with self.db.read() as s:
            return members.member_list(s, project)

    def update_project(self, name: str, by_user: int, **changes: Any) -> ProjectView:
        with self.db.write() as s:
            return projects.update_project(s, name, changes, self.clock(), by_user)

    def add_items(
        self, project: str, items: list[NewItem], by_user: int | None = None, source: str = "api"
    ) -> list[int]:
        """Add items (all or nothing); returns their ids."""
        with self.db.write() as s:
            row = projects.get_project(s, project)
            return projects.add_items(s, row, items, self.config.limits, self.clock(), by_user, source)

    def import_jsonl(self, project: str, text: str, by_user: int | None = None) -> int:
        """Import a JSONL upload (see `rlhfkit.feedback.importing`); returns the item count."""
        items = parse_items_jsonl(text, self.config.limits)
        return len(self.add_items(project, items, by_user, source="import"))

    def item(self, item_id: int) -> dict[str, Any]:
        with self.db.read() as s:
            return projects.item_detail(s, item_id)

    def progress(self, project: str, user_id: int | None = None) -> Progress:
        """Project counts, plus this user's done/remaining when `user_id` is given."""
        with self.db.read() as s:
            row = projects.get_project(s, project)
            members.check_visible(s.connection(), row, user_id)
            base = projects.project_progress(s, row.id)
            if user_id is None:
                return base
            done, remaining = assignment.user_counts(s.connection(), row.id, user_id)
        return Progress(
            items=base.items,
            complete_items=base.complete_items,
            judgments=base.judgments,
            required_judgments=base.required_judgments,
            user_done=done,
            user_remaining=remaining,
        )

    # ------------------------------------------------------------------ tasks

    @staticmethod
    def _task_view(conn: Connection, held: assignment.Held, project: Any) -> TaskView:
        item = conn.execute(assignment.ITEM_VIEW, {"item_id": held.item_id}).one()
        texts = dict(conn.execute(assignment.RESPONSE_TEXTS, {"item_id": held.item_id}).all())
        labels = _labels(len(held.display_order))
        return TaskView(
            assignment_id=held.assignment_id,
            item_id=held.item_id,
            project=project.name,
            task_type=item.task_type,
            prompt=item.prompt,
            responses=tuple(
                ResponseView(id=rid, label=labels[i], text=texts[rid]) for i, rid in enumerate(held.display_order)
            ),
            aspects=tuple(project.aspects),
            expires_at=held.expires_at,
        )

    def next_task(self, project: str, user_id: int, with_progress: bool = False) -> TaskView | None:
        """The user's current task, or a newly locked one; None when nothing is open for them."""
        task = None
        for delay in (*CONTENDED_BACKOFF_S, None):
            try:
                with self.db.write_conn() as conn:
                    row = assignment.project_row(conn, project)
                    members.check_visible(conn, row, user_id)
                    assignment.check_active(conn, user_id)
                    picked = assignment.next_assignment(conn, row, user_id, self.clock())
                    task = None if picked is None else self._task_view(conn, picked, row)
                break
            except assignment.Contended:
                # Another transaction holds an open item's row for a moment (PostgreSQL only).
                if delay is None:
                    break
                time.sleep(delay)
        if task is not None and with_progress:
            return replace(task, progress=self.progress(project, user_id))
        return task

    def current_task(self, project: str, user_id: int) -> TaskView | None:
        """The task the user holds in the project now, without taking or renewing a lock."""
        with self.db.read_conn() as conn:
            row = assignment.project_row(conn, project)
            members.check_visible(conn, row, user_id)
            held = assignment.live_lock(conn, row, user_id, self.clock())
            task = None if held is None else self._task_view(conn, held, row)
        return None if task is None else replace(task, progress=self.progress(project, user_id))

    def task(self, assignment_id: int, user_id: int) -> TaskView:
        """An assignment of this user (for re-displaying it)."""
        with self.db.read() as s:
            conn = s.connection()
            row = assignment.get_assignment(conn, assignment_id, user_id)
            project = conn.execute(select(Project).where(Project.id == row.project_id)).one()
            members.check_visible(conn, project, user_id)
            return self._task_view(conn, assignment.held(row), project)

    def assignment_status(self, assignment_id: int, user_id: int) -> str:
        with self.db.read() as s:
            return assignment.get_assignment(s.connection(), assignment_id, user_id).status

    def submit(
        self, assignment_id: int, user_id: int, payload: Any, *, duration_ms: int | None = None, source: str = "api"
    ) -> SubmitResult:
        """Store an answer (idempotent for an identical resubmission)."""
        with self.db.write_conn() as conn:
            assignment.check_active(conn, user_id)
            judgment_id, duplicate = assignment.submit(
                conn,
                assignment_id,
                user_id,
                payload,
                self.clock(),
                max_text_chars=self.config.max_answer_chars,
                duration_ms=duration_ms,
                source=source,
            )
        return SubmitResult(judgment_id=judgment_id, duplicate=duplicate)

    def record_ai_verdict(
        self, item_id: int, user_id: int, *, flipped: bool, labelled: bool, detail: dict[str, Any] | None = None
    ) -> None:
        """Note how an AI account's answer on an item came about (both orders, the flip); idempotent."""
        with self.db.write() as s:
            accounts.record_ai_verdict(s, item_id, user_id, flipped, labelled, detail, now=self.clock())

    def skip(self, assignment_id: int, user_id: int, reason: str) -> None:
        with self.db.write_conn() as conn:
            assignment.skip(conn, assignment_id, user_id, reason, self.clock())

    # ------------------------------------------------------------------ QC, export, audit

    def qc_report(self, project: str) -> QCReport:
        with self.db.read() as s:
            return compute_qc(s, projects.get_project(s, project))

    def export_rows(self, project: str, kind: str, aggregate: Aggregation = "majority") -> list[ExportRow]:
        """Training records (or critiques, harm labels) of a project (see `rlhfkit.feedback.export`)."""
        with self.db.read() as s:
            row = projects.get_project(s, project)
            answers = load_answers(s, row.id)
        return build_rows(answers, kind, aggregate)

    def export_empty_reason(self, project: str, kind: str) -> str:
        """Why `export_rows(project, kind)` is empty, in one sentence."""
        with self.db.read() as s:
            answers = load_answers(s, projects.get_project(s, project).id)
        return why_empty(answers, kind)

    def record_export(self, project: str, kind: str, aggregate: str, rows: int, by_user: int | None) -> None:
        """Note an export in the audit log."""
        with self.db.write() as s:
            row = projects.get_project(s, project)
            record_event(
                s,
                self.clock(),
                by_user,
                "export",
                project_id=row.id,
                detail={"kind": kind, "aggregate": aggregate, "rows": rows},
            )

    def judgments(self, project: str) -> list[dict[str, Any]]:
        """Every judgment of a project, raw (payloads, display orders, annotators, times)."""
        with self.db.read() as s:
            row = projects.get_project(s, project)
            result = s.execute(
                select(Judgment, User.name, Item.is_gold)
                .join(Item, Item.id == Judgment.item_id)
                .join(User, User.id == Judgment.user_id)
                .where(Item.project_id == row.id)
                .order_by(Judgment.id)
            ).all()
            return [
                {
                    "id": j.id,
                    "item_id": j.item_id,
                    "annotator": name,
                    "task_type": j.task_type,
                    "payload": j.payload,
                    "display_order": j.display_order,
                    "created_at": j.created_at,
                    "duration_ms": j.duration_ms,
                    "source": j.source,
                    "gold": bool(gold),
                }
                for j, name, gold in result
            ]

    def audit(self, project: str | None = None, limit: int = 200) -> list[dict[str, Any]]:
        with self.db.read() as s:
            project_id = None if project is None else projects.get_project(s, project).id
            return list_events(s, project_id, limit)
