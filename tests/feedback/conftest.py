"""Shared fixtures of the feedback-app tests: a temp SQLite store, users, a TestClient."""

from __future__ import annotations

import re
from collections.abc import Callable, Iterator
from pathlib import Path

import pytest
from argon2 import PasswordHasher
from fastapi.testclient import TestClient

from rlhfkit.feedback import security
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.web.app import create_app

PASSWORD = "correct horse battery"


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Argon2 with tiny parameters: same code path, ~1 ms instead of ~150 ms per hash."""
    monkeypatch.setattr(security, "_HASHER", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


class Clock:
    """A settable clock for lock-expiry tests."""

    def __init__(self, now: float = 1_000_000.0) -> None:
        self.now = now

    def __call__(self) -> float:
        return self.now

    def advance(self, seconds: float) -> None:
        self.now += seconds


@pytest.fixture
def db_url(tmp_path: Path) -> str:
    return f"sqlite:///{tmp_path / 'feedback.db'}"


@pytest.fixture
def clock() -> Clock:
    return Clock()


@pytest.fixture
def store(db_url: str, clock: Clock) -> Iterator[FeedbackStore]:
    s = FeedbackStore(db_url, clock=clock)
    yield s
    s.close()


def pair_items(n: int, gold_every: int = 0) -> list[NewItem]:
    """n pairwise items whose first response is the good one."""
    return [
        NewItem(
            prompt=f"question {i}",
            responses=(f"good {i}", f"bad {i}"),
            gold={"choice": 0} if gold_every and i % gold_every == 0 else None,
        )
        for i in range(n)
    ]


@pytest.fixture
def make_project(store: FeedbackStore) -> Callable[..., str]:
    def make(name: str = "proj", items: list[NewItem] | None = None, **spec: object) -> str:
        store.create_project(ProjectSpec(name=name, **spec))  # type: ignore[arg-type]
        store.add_items(name, items if items is not None else pair_items(6))
        return name

    return make


@pytest.fixture
def app(store: FeedbackStore):  # type: ignore[no-untyped-def]
    return create_app(store=store)


def _web_login(client: TestClient, name: str, password: str = PASSWORD) -> str:
    """Log in through the HTML form; returns the session's CSRF token."""
    page = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    reply = client.post(
        "/login", data={"name": name, "password": password, "csrf_token": token, "next": "/"}, follow_redirects=False
    )
    assert reply.status_code == 303, reply.text
    queue = client.get("/queue")
    return re.search(r'name="csrf_token" value="([^"]+)"', queue.text).group(1)  # type: ignore[union-attr]


def _api_token(client: TestClient, name: str, password: str = PASSWORD) -> dict[str, str]:
    reply = client.post("/api/v1/auth/login", json={"name": name, "password": password})
    assert reply.status_code == 200, reply.text
    return {"Authorization": f"Bearer {reply.json()['token']}"}


@pytest.fixture
def web_login() -> Callable[..., str]:
    """web_login(client, name) -> the session's CSRF token (cookie kept by the client)."""
    return _web_login


@pytest.fixture
def bearer() -> Callable[..., dict[str, str]]:
    """bearer(client, name) -> Authorization header of an API token."""
    return _api_token


@pytest.fixture
def items() -> Callable[..., list[NewItem]]:
    """items(n, gold_every=0) -> n pairwise items whose first response is the good one."""
    return pair_items


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the server of $RLHFKIT_TEST_PG_URL (dropped afterwards)."""
    yield from fresh_pg_database()


def fresh_pg_database() -> Iterator[str]:
    import os
    import secrets

    base = os.environ.get("RLHFKIT_TEST_PG_URL")
    if not base:
        pytest.skip("RLHFKIT_TEST_PG_URL is not set (see scripts/start_test_postgres.sh)")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"rlhfkit_t_{secrets.token_hex(6)}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
