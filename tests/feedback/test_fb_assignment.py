"""Assignment: N distinct annotators per item, never twice, locks that expire, idempotent answers."""

from __future__ import annotations

import threading
from collections import Counter

import pytest
from sqlalchemy import select, text

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.errors import Conflict, Forbidden, Invalid, NotFound
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tables import Judgment

PASSWORD = "correct horse battery"  # the password the conftest fixtures use


def _annotators(store: FeedbackStore, n: int) -> list[int]:
    return [store.create_user(f"ann{i}", "annotator", PASSWORD).id for i in range(n)]


def _good(task) -> int:  # type: ignore[no-untyped-def]
    return next(r.id for r in task.responses if r.text.startswith("good"))


def _drain(store: FeedbackStore, project: str, user: int) -> list[int]:
    """Answer everything open for `user`; returns the item ids answered."""
    done = []
    while (task := store.next_task(project, user)) is not None:
        store.submit(task.assignment_id, user, {"choice": _good(task)})
        done.append(task.item_id)
    return done


def _judgments(store: FeedbackStore) -> list[tuple[int, int]]:
    with store.db.read() as s:
        return [(j.item_id, j.user_id) for j in s.scalars(select(Judgment))]


def test_each_item_gets_exactly_n_distinct_annotators(store, make_project) -> None:
    make_project(overlap=3)
    users = _annotators(store, 5)
    per_user = {u: _drain(store, "proj", u) for u in users}
    pairs = _judgments(store)
    assert len(pairs) == len(set(pairs)), "an annotator judged an item twice"
    per_item = Counter(item for item, _ in pairs)
    assert set(per_item.values()) == {3} and len(per_item) == 6  # 6 items x N=3, never over
    # Items are filled oldest first: the first three annotators take all six, the others none.
    assert [len(per_user[u]) for u in users] == [6, 6, 6, 0, 0]
    assert all(len(set(done)) == len(done) for done in per_user.values())


def test_concurrent_threads_never_exceed_overlap(store, make_project, items) -> None:
    make_project(items=items(40), overlap=2)
    users = _annotators(store, 8)
    errors: list[BaseException] = []

    def work(user: int) -> None:
        try:
            _drain(store, "proj", user)
        except BaseException as exc:
            errors.append(exc)

    threads = [threading.Thread(target=work, args=(u,)) for u in users]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert errors == []
    pairs = _judgments(store)
    assert len(pairs) == len(set(pairs)) == 80
    assert max(Counter(i for i, _ in pairs).values()) == 2


def test_same_task_until_answered_and_order_recorded(store, make_project) -> None:
    make_project(overlap=2)
    (user,) = _annotators(store, 1)
    first = store.next_task("proj", user)
    again = store.next_task("proj", user)
    assert again is not None and first is not None
    assert again.assignment_id == first.assignment_id  # a reload does not take a second lock
    assert [r.id for r in again.responses] == [r.id for r in first.responses]
    assert [r.label for r in first.responses] == ["A", "B"]
    store.submit(first.assignment_id, user, {"choice": _good(first)})
    with store.db.read() as s:
        judgment = s.scalar(select(Judgment))
    assert judgment.display_order == [r.id for r in first.responses]


def test_display_order_is_randomized_per_annotator(store, make_project, items) -> None:
    make_project(items=items(1), overlap=40)
    users = _annotators(store, 40)
    orders = {tuple(r.text for r in store.next_task("proj", u).responses) for u in users}
    # 40 fair coin flips all landing the same way: probability 2 * 2**-40.
    assert orders == {("good 0", "bad 0"), ("bad 0", "good 0")}


def test_lock_expires_and_item_returns_to_pool(store, make_project, items, clock) -> None:
    make_project(items=items(1), overlap=1, lock_ttl_s=60)
    alice, bob = _annotators(store, 2)
    held = store.next_task("proj", alice)
    assert held is not None
    assert store.next_task("proj", bob) is None  # the only slot is locked by alice
    clock.advance(61)
    taken = store.next_task("proj", bob)
    assert taken is not None and taken.item_id == held.item_id
    # alice comes back late: her lock lapsed and bob holds the slot -> she gets nothing...
    assert store.next_task("proj", alice) is None
    # ...and her late answer is refused rather than exceeding N = 1.
    with pytest.raises(Conflict):
        store.submit(held.assignment_id, alice, {"choice": _good(held)})
    store.submit(taken.assignment_id, bob, {"choice": _good(taken)})
    assert len(_judgments(store)) == 1


def test_late_answer_accepted_when_slot_still_free(store, make_project, items, clock) -> None:
    make_project(items=items(1), overlap=1, lock_ttl_s=60)
    (alice,) = _annotators(store, 1)
    held = store.next_task("proj", alice)
    clock.advance(3600)
    result = store.submit(held.assignment_id, alice, {"choice": _good(held)})
    assert not result.duplicate and len(_judgments(store)) == 1


def test_expired_lock_is_renewed_for_its_owner_when_free(store, make_project, items, clock) -> None:
    make_project(items=items(2), overlap=1, lock_ttl_s=60)
    (alice,) = _annotators(store, 1)
    held = store.next_task("proj", alice)
    clock.advance(120)
    again = store.next_task("proj", alice)
    assert again.assignment_id == held.assignment_id and again.expires_at == clock.now + 60


def test_resubmission_is_idempotent_and_changes_are_refused(store, make_project) -> None:
    make_project(overlap=2)
    (user,) = _annotators(store, 1)
    task = store.next_task("proj", user)
    answer = {"choice": _good(task)}
    first = store.submit(task.assignment_id, user, answer)
    second = store.submit(task.assignment_id, user, {"choice": str(_good(task))})  # same, as text
    assert (first.duplicate, second.duplicate) == (False, True)
    assert first.judgment_id == second.judgment_id
    with pytest.raises(Conflict):
        store.submit(task.assignment_id, user, {"choice": "tie"})
    assert len(_judgments(store)) == 1


def test_skip_needs_reason_and_item_never_comes_back(store, make_project, items) -> None:
    make_project(items=items(2), overlap=1)
    (user,) = _annotators(store, 1)
    task = store.next_task("proj", user)
    with pytest.raises(Invalid):
        store.skip(task.assignment_id, user, "  ")
    store.skip(task.assignment_id, user, "unclear prompt")
    store.skip(task.assignment_id, user, "unclear prompt")  # idempotent
    other = store.next_task("proj", user)
    assert other.item_id != task.item_id
    store.submit(other.assignment_id, user, {"choice": _good(other)})
    assert store.next_task("proj", user) is None
    with pytest.raises(Conflict):
        store.submit(task.assignment_id, user, {"choice": _good(task)})
    assert store.progress("proj", user).user_remaining == 0


def test_someone_elses_task_reads_as_unknown(store, make_project) -> None:
    make_project()
    alice, bob = _annotators(store, 2)
    task = store.next_task("proj", alice)
    with pytest.raises(NotFound):
        store.submit(task.assignment_id, bob, {"choice": _good(task)})
    with pytest.raises(NotFound):
        store.submit(99_999, alice, {"choice": 1})
    with pytest.raises(NotFound):
        store.next_task("no-such-project", alice)


def test_invalid_answers_are_rejected(store, make_project) -> None:
    make_project()
    (user,) = _annotators(store, 1)
    task = store.next_task("proj", user)
    for bad in ({}, {"choice": 12345}, {"choice": True}, {"choice": "maybe"}, "text", {"choice": 1.5}):
        with pytest.raises(Invalid):
            store.submit(task.assignment_id, user, bad)
    assert _judgments(store) == []


def test_gold_items_are_mixed_in_at_the_configured_rate(store, items) -> None:
    store.create_project(ProjectSpec(name="g", overlap=1, gold_rate=0.25))
    gold = [NewItem(prompt=f"gold {i}", responses=("good g", "bad g"), gold={"choice": 0}) for i in range(3)]
    store.add_items("g", items(9) + gold)
    (user,) = _annotators(store, 1)
    served = []
    while (task := store.next_task("g", user)) is not None:
        served.append(task.prompt.startswith("gold"))
        store.submit(task.assignment_id, user, {"choice": _good(task)})
    # gold when gold_so_far < 0.25 * (tasks_so_far + 1): positions 1, 5, 9 (1-based).
    assert served == [True, False, False, False, True, False, False, False, True, False, False, False]


def test_deactivated_annotator_cannot_work(store, make_project) -> None:
    make_project()
    admin = store.create_user("boss", "admin", PASSWORD)
    (user,) = _annotators(store, 1)
    task = store.next_task("proj", user)
    store.set_user_active(user, False, by_user=admin.id)
    with pytest.raises(Forbidden):
        store.next_task("proj", user)
    with pytest.raises(Forbidden):
        store.submit(task.assignment_id, user, {"choice": _good(task)})


def test_unique_constraint_backs_the_python_checks(store, make_project) -> None:
    make_project()
    (user,) = _annotators(store, 1)
    task = store.next_task("proj", user)
    store.submit(task.assignment_id, user, {"choice": _good(task)})
    with pytest.raises(Exception, match="UNIQUE"), store.db.write() as s:
        s.execute(
            text(
                "INSERT INTO judgments (item_id, user_id, assignment_id, task_type, payload, "
                "display_order, created_at, source) VALUES (:i, :u, 999, 'pairwise', '{}', '[]', 0, 'x')"
            ),
            {"i": task.item_id, "u": user},
        )
