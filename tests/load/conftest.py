"""Fixtures of the load tests: cheap password hashing and an optional fresh PostgreSQL database."""

from __future__ import annotations

import os
import secrets
from collections.abc import Iterator

import pytest
from argon2 import PasswordHasher

from rlhfkit.feedback import security


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    """Users are created here with tiny Argon2 parameters; the server verifies with the same ones."""
    monkeypatch.setattr(security, "_HASHER", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


@pytest.fixture
def pg_url() -> Iterator[str]:
    """A fresh, empty database on the server of $RLHFKIT_TEST_PG_URL (dropped afterwards)."""
    base = os.environ.get("RLHFKIT_TEST_PG_URL")
    if not base:
        pytest.skip("RLHFKIT_TEST_PG_URL is not set (see scripts/start_test_postgres.sh)")
    import psycopg
    from sqlalchemy.engine import make_url

    url = make_url(base)
    name = f"rlhfkit_load_{secrets.token_hex(6)}"
    admin_dsn = url.set(drivername="postgresql").render_as_string(hide_password=False)
    with psycopg.connect(admin_dsn, autocommit=True) as conn:
        conn.execute(f'CREATE DATABASE "{name}"')
    try:
        yield url.set(database=name).render_as_string(hide_password=False)
    finally:
        with psycopg.connect(admin_dsn, autocommit=True) as conn:
            conn.execute(f'DROP DATABASE IF EXISTS "{name}" WITH (FORCE)')
