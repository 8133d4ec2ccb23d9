"""Login backoff per (client address, account name), kept in the database.

Keyed by the pair, so a stranger failing against the admin's name slows only that stranger: the
admin logging in from their own address is never refused. Past `LoginBackoff.free_failures`
consecutive failures each further one doubles the wait (exponential backoff rather than a hard
lock; OWASP Authentication Cheat Sheet, "Login Throttling"). Failures against names that do not
exist are not stored at all (nothing to protect, and no table growth from made-up names), and a
pair quiet for `forget_after_s` is forgotten. The rows live in the database, so every server
process behind a load balancer sees the same counts.
"""

from __future__ import annotations

from dataclasses import dataclass

from sqlalchemy import delete, select
from sqlalchemy.dialects.postgresql import insert as pg_insert
from sqlalchemy.dialects.sqlite import insert as sqlite_insert
from sqlalchemy.orm import Session

from rlhfkit.feedback.errors import FeedbackError
from rlhfkit.feedback.tables import LoginFailure, User


class TooManyAttempts(FeedbackError):
    """Too many failed logins from this address for this name: wait `retry_after_s`."""

    status = 429

    def __init__(self, message: str, retry_after_s: int) -> None:
        super().__init__(message)
        self.retry_after_s = retry_after_s


@dataclass(frozen=True)
class LoginBackoff:
    """How failed logins slow down further tries of one (address, name) pair."""

    free_failures: int = 5
    """Consecutive failures without any wait (typos)."""
    base_s: float = 1.0
    """Wait after the first failure beyond `free_failures`; doubled by each further one."""
    max_s: float = 900.0
    """Longest wait."""
    forget_after_s: float = 3600.0
    """A pair with no failure for this long starts again from zero (its row is deleted)."""

    def __post_init__(self) -> None:
        if self.free_failures < 0 or self.base_s <= 0 or self.max_s < self.base_s or self.forget_after_s <= 0:
            raise ValueError("need free_failures >= 0, 0 < base_s <= max_s and forget_after_s > 0")


def backoff_s(failures: int, policy: LoginBackoff) -> float:
    """Wait after `failures` consecutive failures: 0 up to `free_failures`, then base * 2**k, capped."""
    beyond = failures - policy.free_failures
    if beyond <= 0:
        return 0.0
    return min(policy.max_s, policy.base_s * 2.0 ** min(beyond - 1, 60))


def client_key(address: str | None) -> str:
    """The stored form of a client address (unknown clients share one key)."""
    return (address or "unknown")[:64]


def check_allowed(session: Session, client: str, name: str, now: float) -> None:
    """Raise TooManyAttempts while the pair is waiting out its backoff."""
    blocked_until = session.scalar(
        select(LoginFailure.blocked_until).where(LoginFailure.client == client, LoginFailure.name == name[:64])
    )
    if blocked_until is not None and blocked_until > now:
        wait = int(blocked_until - now) + 1
        raise TooManyAttempts(f"too many failed logins; try again in {wait} s", wait)


def record_failure(session: Session, client: str, name: str, now: float, policy: LoginBackoff) -> None:
    """Count a failed login of an existing account (unknown names are forgotten at once)."""
    session.execute(delete(LoginFailure).where(LoginFailure.last_failure_at < now - policy.forget_after_s))
    if session.scalar(select(User.id).where(User.name == name)) is None:
        return
    row = session.get(LoginFailure, (client, name))
    failures = (row.failures if row is not None else 0) + 1
    values = {"failures": failures, "last_failure_at": now, "blocked_until": now + backoff_s(failures, policy)}
    # An upsert: two server processes may record the first failure of a pair at the same time.
    insert = pg_insert if session.get_bind().dialect.name == "postgresql" else sqlite_insert
    statement = insert(LoginFailure).values(client=client, name=name, **values)
    session.execute(statement.on_conflict_do_update(index_elements=["client", "name"], set_=values))


def clear_failures(session: Session, client: str, name: str) -> None:
    """A successful login resets its pair."""
    session.execute(delete(LoginFailure).where(LoginFailure.client == client, LoginFailure.name == name))
