"""The same guarantees on PostgreSQL (needs $RLHFKIT_TEST_PG_URL; see scripts/start_test_postgres.sh)."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from fastapi.testclient import TestClient
from sqlalchemy import select, text

from rlhfkit.feedback.entities import ProjectSpec
from rlhfkit.feedback.errors import Conflict
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tables import Base, Judgment
from rlhfkit.feedback.web.app import create_app

pytestmark = pytest.mark.postgres
PASSWORD = "correct horse battery"


@pytest.fixture
def pg_store(pg_url, clock):  # type: ignore[no-untyped-def]
    store = FeedbackStore(pg_url, clock=clock)
    yield store
    store.close()


def _good(task) -> int:  # type: ignore[no-untyped-def]
    return next(r.id for r in task.responses if r.text.startswith("good"))


def test_schema_matches_and_audit_is_append_only(pg_store: FeedbackStore) -> None:
    with pg_store.db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
    pg_store.create_user("x", "annotator", PASSWORD)
    for statement in ("UPDATE audit_events SET action = 'x'", "DELETE FROM audit_events"):
        with pytest.raises(Exception, match="append-only"), pg_store.db.write() as s:
            s.execute(text(statement))


def test_concurrent_annotators_never_exceed_overlap(pg_store: FeedbackStore, items) -> None:
    pg_store.create_project(ProjectSpec(name="p", overlap=3))
    pg_store.add_items("p", items(40))
    users = [pg_store.create_user(f"a{i}", "annotator", PASSWORD).id for i in range(8)]
    errors: list[BaseException] = []

    def work(user: int) -> None:
        try:
            while (task := pg_store.next_task("p", user)) is not None:
                pg_store.submit(task.assignment_id, user, {"choice": _good(task)})
                pg_store.submit(task.assignment_id, user, {"choice": _good(task)})  # idempotent
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    with pg_store.db.read() as s:
        pairs = [(j.item_id, j.user_id) for j in s.scalars(select(Judgment))]
    assert len(pairs) == len(set(pairs)) == 120
    assert set(Counter(i for i, _ in pairs).values()) == {3}


def _hold_item_rows(store: FeedbackStore):  # type: ignore[no-untyped-def]
    """Another transaction that holds every item row (as a concurrent submit holds one for a moment)."""
    conn = store.db.engine.connect()
    tx = conn.begin()
    conn.execute(text("SELECT id FROM items FOR UPDATE"))
    return conn, tx


def test_an_item_locked_for_a_moment_is_still_handed_out(pg_store: FeedbackStore, items) -> None:
    # SKIP LOCKED alone would answer "nothing open" here, and the annotator would stop working.
    pg_store.create_project(ProjectSpec(name="p", overlap=1))
    pg_store.add_items("p", items(1))
    user = pg_store.create_user("alice", "annotator", PASSWORD).id
    conn, tx = _hold_item_rows(pg_store)
    got: list[object] = []
    worker = threading.Thread(target=lambda: got.append(pg_store.next_task("p", user)))
    worker.start()
    worker.join(0.3)
    assert worker.is_alive()  # still waiting for the row, not answering None
    tx.commit()
    conn.close()
    worker.join()
    assert got[0] is not None


def test_an_item_locked_for_long_reads_as_nothing_open(pg_store: FeedbackStore, items, monkeypatch) -> None:
    monkeypatch.setattr("rlhfkit.feedback.store.CONTENDED_BACKOFF_S", (0.01, 0.01))
    pg_store.create_project(ProjectSpec(name="p", overlap=1))
    pg_store.add_items("p", items(1))
    user = pg_store.create_user("alice", "annotator", PASSWORD).id
    conn, tx = _hold_item_rows(pg_store)
    try:
        assert pg_store.next_task("p", user) is None
    finally:
        tx.rollback()
        conn.close()
    assert pg_store.next_task("p", user) is not None


def test_lock_expiry_on_postgres(pg_store: FeedbackStore, items, clock) -> None:
    pg_store.create_project(ProjectSpec(name="p", overlap=1, lock_ttl_s=60))
    pg_store.add_items("p", items(1))
    alice, bob = (pg_store.create_user(n, "annotator", PASSWORD).id for n in ("alice", "bob"))
    held = pg_store.next_task("p", alice)
    assert pg_store.next_task("p", bob) is None
    clock.advance(61)
    taken = pg_store.next_task("p", bob)
    assert taken.item_id == held.item_id
    with pytest.raises(Conflict):
        pg_store.submit(held.assignment_id, alice, {"choice": _good(held)})


def test_api_on_postgres(pg_store: FeedbackStore, items, bearer) -> None:
    pg_store.create_user("boss", "admin", PASSWORD)
    pg_store.create_user("ann", "annotator", PASSWORD)
    pg_store.create_project(ProjectSpec(name="p", overlap=1))
    pg_store.add_items("p", items(2))
    client = TestClient(create_app(store=pg_store), raise_server_exceptions=False)
    h = bearer(client, "ann")
    assert client.get("/api/v1/users", headers=h).status_code == 403
    while (task := client.post("/api/v1/projects/p/next", headers=h).json()["task"]) is not None:
        good = next(r["id"] for r in task["responses"] if r["text"].startswith("good"))
        assert (
            client.post(
                f"/api/v1/tasks/{task['assignment_id']}/submit", headers=h, json={"answer": {"choice": good}}
            ).status_code
            == 200
        )
    admin = bearer(client, "boss")
    lines = client.get("/api/v1/projects/p/export?format=pairs", headers=admin).text.splitlines()
    assert len(lines) == 2
