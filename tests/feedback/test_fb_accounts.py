"""Accounts and sessions (issue 24): idle timeout, password rules, Secure cookies, HSTS, docs, members."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.accounts import TOUCH_EVERY_S
from rlhfkit.feedback.store import FeedbackStore, StoreConfig

PASSWORD = "correct horse battery"


def test_idle_session_ends_but_an_active_one_lives(db_url, clock) -> None:
    store = FeedbackStore(db_url, clock=clock, config=StoreConfig(session_idle_s=600))
    store.create_user("ann", "annotator", PASSWORD)
    active, _ = store.login("ann", PASSWORD)
    idle, _ = store.login("ann", PASSWORD)
    for _ in range(5):  # 5 x 250 s: longer than the idle limit in all, never idle for 600 s
        clock.advance(250)
        assert store.session(active) is not None
    assert store.session(idle) is None  # unused for 1250 s
    clock.advance(601)
    assert store.session(active) is None
    store.close()


def test_session_reads_write_at_most_once_a_minute(store, clock) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    token, _ = store.login("ann", PASSWORD)
    writes = []
    original = store.db.write
    store.db.write = lambda: (writes.append(1), original())[1]  # type: ignore[method-assign]
    for _ in range(10):
        clock.advance(TOUCH_EVERY_S / 4)
        assert store.session(token) is not None
    assert len(writes) == 2  # at 75 s and 150 s of 10 requests over 150 s


@pytest.mark.parametrize("ttl", [0, -1])
def test_idle_limit_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="session_idle_s"):
        StoreConfig(session_idle_s=ttl)
