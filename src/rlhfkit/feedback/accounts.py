"""Accounts and logins (functions over an open SQLAlchemy session; the store owns transactions)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, bindparam, delete, select, update
from sqlalchemy.orm import Session

from rlhfkit.feedback.audit import record_event
from rlhfkit.feedback.entities import SessionView, UserView, check_name
from rlhfkit.feedback.errors import Conflict, Forbidden, Invalid, NotFound, Unauthorized
from rlhfkit.feedback.security import dummy_verify, new_token, token_hash, verify_password
from rlhfkit.feedback.tables import ROLES, AIVerdict, AuthSession, Item, User

SESSION_KINDS = ("web", "api")
"""``web``: cookie + CSRF token; ``api``: bearer token (no cookie, so no CSRF exposure)."""


def user_view(user: User) -> UserView:
    return UserView(id=user.id, name=user.name, role=user.role, active=user.active)


def create_user(
    session: Session, name: str, role: str, password_hash: str, now: float, by_user: int | None = None
) -> UserView:
    """Create an account from an Argon2 hash (hash with `security.hash_password` *outside* the
    write transaction: it takes ~0.1 s, and SQLite admits one writer at a time)."""
    check_name(name, "user name")
    if role not in ROLES:
        raise Invalid(f"role must be one of {list(ROLES)}, got {role!r}")
    if session.scalar(select(User.id).where(User.name == name)) is not None:
        raise Conflict(f"user {name!r} already exists")
    user = User(name=name, role=role, password_hash=password_hash, active=True, created_at=now)
    session.add(user)
    session.flush()
    record_event(session, now, by_user, "create_user", detail={"name": name, "role": role})
    return user_view(user)


def get_user(session: Session, user_id: int) -> User:
    user = session.get(User, user_id)
    if user is None:
        raise NotFound(f"no user with id {user_id}")
    return user


def list_users(session: Session) -> list[UserView]:
    return [user_view(u) for u in session.scalars(select(User).order_by(User.name))]


def set_user_active(session: Session, user_id: int, active: bool, now: float, by_user: int) -> UserView:
    """Deactivate (or reactivate) an account; deactivation also ends its sessions."""
    if user_id == by_user and not active:
        raise Forbidden("you cannot deactivate your own account")
    user = get_user(session, user_id)
    user.active = active
    if not active:
        session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
    record_event(session, now, by_user, "set_user_active", detail={"user": user.name, "active": active})
    return user_view(user)


def set_password(session: Session, user_id: int, password_hash: str, now: float, by_user: int) -> None:
    """Replace a password hash and end the account's sessions."""
    user = get_user(session, user_id)
    user.password_hash = password_hash
    session.execute(delete(AuthSession).where(AuthSession.user_id == user_id))
    record_event(session, now, by_user, "set_password", detail={"user": user.name})


def check_credentials(session: Session, name: str, password: str) -> UserView:
    """The account a name and password belong to (raises Unauthorized otherwise).

    Unknown names and wrong passwords get the same message and (via a dummy verification)
    about the same time, so the login form does not reveal which accounts exist. Call it in a
    read transaction: verification takes ~0.1 s and must not hold SQLite's write lock.
    """
    user = session.scalar(select(User).where(User.name == name))
    if user is None:
        dummy_verify(password)
        raise Unauthorized("wrong user name or password")
    if not verify_password(user.password_hash, password) or not user.active or user.role == "ai":
        # An AI account only submits judgments through the store (rlhfkit judge): it has no login.
        raise Unauthorized("wrong user name or password")
    return user_view(user)


def open_session(session: Session, user: UserView, kind: str, now: float, ttl_s: float) -> tuple[str, SessionView]:
    """Open a session for checked credentials; returns (secret token, session view)."""
    if kind not in SESSION_KINDS:
        raise Invalid(f"session kind must be one of {list(SESSION_KINDS)}")
    token = new_token()
    csrf = new_token()
    session.add(
        AuthSession(
            token_hash=token_hash(token),
            user_id=user.id,
            kind=kind,
            csrf_token=csrf,
            created_at=now,
            expires_at=now + ttl_s,
            last_seen_at=now,
        )
    )
    record_event(session, now, user.id, "login", detail={"kind": kind})
    return token, SessionView(user=user, csrf_token=csrf, kind=kind)


_SESSIONS, _USERS = AuthSession.__table__, User.__table__
# Built once: this runs on every request.
_SESSION_BY_TOKEN = (
    select(
        _SESSIONS.c.kind,
        _SESSIONS.c.csrf_token,
        _SESSIONS.c.expires_at,
        _SESSIONS.c.created_at,
        _SESSIONS.c.last_seen_at,
        _USERS.c.id,
        _USERS.c.name,
        _USERS.c.role,
        _USERS.c.active,
    )
    .select_from(_SESSIONS.join(_USERS, _USERS.c.id == _SESSIONS.c.user_id))
    .where(_SESSIONS.c.token_hash == bindparam("token_hash"))
)


TOUCH_EVERY_S = 60.0
"""How stale `last_seen_at` may get before a request writes it again: one write a minute per
session at most, so the idle timeout does not turn every read into a write."""


def session_for_token(conn: Connection, token: str, now: float, idle_s: float) -> tuple[SessionView | None, bool]:
    """(the live session a cookie or bearer token belongs to, whether to `touch_session` it).

    None when unknown, expired, idle for more than `idle_s`, or its account is inactive."""
    row = conn.execute(_SESSION_BY_TOKEN, {"token_hash": token_hash(token)}).first()
    if row is None or row.expires_at <= now or not row.active:
        return None, False
    last_seen = row.last_seen_at if row.last_seen_at is not None else row.created_at
    if now - last_seen > idle_s:
        return None, False
    user = UserView(id=row.id, name=row.name, role=row.role, active=True)
    return SessionView(user=user, csrf_token=row.csrf_token, kind=row.kind), now - last_seen > TOUCH_EVERY_S


def touch_session(session: Session, token: str, now: float) -> None:
    """Record activity on a session (keeps it inside the idle timeout)."""
    session.execute(update(AuthSession).where(AuthSession.token_hash == token_hash(token)).values(last_seen_at=now))


def logout(session: Session, token: str, now: float) -> None:
    """End a session (unknown tokens are ignored: logging out twice is fine)."""
    auth = session.scalar(select(AuthSession).where(AuthSession.token_hash == token_hash(token)))
    if auth is not None:
        record_event(session, now, auth.user_id, "logout", detail={"kind": auth.kind})
        session.delete(auth)


def record_ai_verdict(
    s: Session, item_id: int, user_id: int, flipped: bool, labelled: bool, detail: dict[str, Any] | None, *, now: Any
) -> None:
    """Note how an AI account's answer on an item came about (both orders, the flip), once per item."""
    user = get_user(s, user_id)
    if user.role != "ai":
        raise Forbidden(f"{user.name!r} is not an AI account")
    item = s.get(Item, item_id)
    if item is None:
        raise NotFound(f"no item with id {item_id}")
    exists = s.scalar(select(AIVerdict.id).where(AIVerdict.item_id == item_id, AIVerdict.user_id == user_id))
    if exists is None:
        s.add(
            AIVerdict(
                project_id=item.project_id,
                item_id=item_id,
                user_id=user_id,
                flipped=flipped,
                labelled=labelled,
                detail=detail,
                created_at=now,
            )
        )
