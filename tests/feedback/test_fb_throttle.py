"""Login backoff per (client address, name), shared through the database (issue 24)."""

from __future__ import annotations

import pytest
from fastapi.testclient import TestClient

from rlhfkit.feedback.errors import Unauthorized
from rlhfkit.feedback.store import FeedbackStore, StoreConfig
from rlhfkit.feedback.tables import LoginFailure
from rlhfkit.feedback.throttle import LoginBackoff, TooManyAttempts, backoff_s

PASSWORD = "correct horse battery"


def test_backoff_doubles_after_the_free_failures_and_is_capped() -> None:
    policy = LoginBackoff(free_failures=3, base_s=2.0, max_s=20.0)
    # failures 1..3 free; 4 -> 2 s, 5 -> 4 s, 6 -> 8 s, 7 -> 16 s, 8 -> 32 s capped to 20 s
    assert [backoff_s(n, policy) for n in range(1, 9)] == [0, 0, 0, 2, 4, 8, 16, 20]
    assert backoff_s(10_000, policy) == 20.0  # no float overflow for absurd counts


def _fail(store: FeedbackStore, client: str, name: str = "boss") -> None:
    with pytest.raises(Unauthorized):
        store.login(name, "wrong-password", client=client)


def test_attacker_is_slowed_but_the_owner_is_not(store, clock) -> None:
    store.create_user("boss", "admin", PASSWORD)
    for _ in range(5):
        _fail(store, "6.6.6.6")
    _fail(store, "6.6.6.6")  # the 6th: 1 s backoff starts
    with pytest.raises(TooManyAttempts) as caught:
        store.login("boss", PASSWORD, client="6.6.6.6")  # even the right password waits
    assert caught.value.retry_after_s >= 1
    token, _ = store.login("boss", PASSWORD, client="10.0.0.1")  # the owner, elsewhere: welcome
    assert store.session(token) is not None
    clock.advance(2)
    store.login("boss", PASSWORD, client="6.6.6.6")  # after the wait the right password works


def test_state_is_shared_by_processes_and_unknown_names_are_forgotten(db_url, clock) -> None:
    first, second = FeedbackStore(db_url, clock=clock), FeedbackStore(db_url, clock=clock)
    first.create_user("boss", "admin", PASSWORD)
    for _ in range(6):
        _fail(first, "6.6.6.6")
    with pytest.raises(TooManyAttempts):
        second.login("boss", PASSWORD, client="6.6.6.6")  # another server process, same database
    for _ in range(20):
        _fail(second, "6.6.6.6", name="nobody-here")
    with first.db.read() as s:
        assert {row.name for row in s.query(LoginFailure)} == {"boss"}
    clock.advance(3601)
    _fail(first, "7.7.7.7")  # any write purges pairs quiet for an hour
    with first.db.read() as s:
        assert {(row.client, row.failures) for row in s.query(LoginFailure)} == {("7.7.7.7", 1)}
    first.close()
    second.close()


def test_success_resets_the_pair(store) -> None:
    store.create_user("boss", "admin", PASSWORD)
    for _ in range(5):
        _fail(store, "1.2.3.4")
    store.login("boss", PASSWORD, client="1.2.3.4")
    for _ in range(5):
        _fail(store, "1.2.3.4")  # five free failures again, no wait
    store.login("boss", PASSWORD, client="1.2.3.4")


def test_api_answers_429_with_retry_after(app, store) -> None:
    store.create_user("bea", "annotator", PASSWORD)
    client = TestClient(app, raise_server_exceptions=False)
    for _ in range(StoreConfig().login_backoff.free_failures + 1):
        assert client.post("/api/v1/auth/login", json={"name": "bea", "password": "wrong-one"}).status_code == 401
    reply = client.post("/api/v1/auth/login", json={"name": "bea", "password": PASSWORD})
    assert reply.status_code == 429 and int(reply.headers["retry-after"]) >= 1


@pytest.mark.postgres
def test_backoff_and_membership_on_postgres(pg_url: str) -> None:
    """The upsert's PostgreSQL dialect and the 0002 migration on a real server."""
    store = FeedbackStore(pg_url)
    try:
        store.create_user("boss", "admin", PASSWORD)
        for _ in range(6):
            _fail(store, "6.6.6.6")
        with pytest.raises(TooManyAttempts):
            store.login("boss", PASSWORD, client="6.6.6.6")
        store.login("boss", PASSWORD, client="10.0.0.1")
        with store.db.read() as s:
            assert [(r.client, r.failures) for r in s.query(LoginFailure)] == [("6.6.6.6", 6)]
    finally:
        store.close()
