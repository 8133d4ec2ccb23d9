"""Quality control through the store: gold accuracy, leave-one-out agreement, alpha per task type."""

from __future__ import annotations

import pytest

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore

PASSWORD = "correct horse battery"


def _run(store: FeedbackStore, project: str, name: str, answer) -> None:  # type: ignore[no-untyped-def]
    user = store.create_user(name, "annotator", PASSWORD).id
    while (task := store.next_task(project, user)) is not None:
        store.submit(task.assignment_id, user, answer(task), duration_ms=2000)


def _pick(text: str):  # type: ignore[no-untyped-def]
    return lambda t: {"choice": next(r.id for r in t.responses if r.text == text)}


@pytest.fixture
def report(store: FeedbackStore):  # type: ignore[no-untyped-def]
    # 4 regular + 2 gold items (gold answer: "good"), N = 4, a third of the tasks gold.
    store.create_project(ProjectSpec(name="qc", overlap=4, gold_rate=0.34))
    store.add_items(
        "qc",
        [NewItem(prompt=f"p{i}", responses=("good", "bad")) for i in range(4)]
        + [NewItem(prompt=f"g{i}", responses=("good", "bad"), gold={"choice": 0}) for i in range(2)],
    )
    _run(store, "qc", "ann0", _pick("good"))
    _run(store, "qc", "ann1", _pick("good"))
    _run(store, "qc", "ann2", _pick("bad"))
    _run(store, "qc", "ann3", lambda t: {"choice": "tie"} if t.prompt == "p0" else _pick("good")(t))
    return store.qc_report("qc")


def test_gold_accuracy(report) -> None:
    gold = {a.name: (a.gold_accuracy, a.gold_judgments) for a in report.annotators}
    assert gold == {"ann0": (1.0, 2), "ann1": (1.0, 2), "ann2": (0.0, 2), "ann3": (1.0, 2)}


def test_leave_one_out_agreement(report) -> None:
    # p0 holds good, good, bad, tie. For ann0 the others are good/bad/tie: no majority, not counted;
    # so ann0 and ann1 are compared on the 5 other items (gold included) and always agree.
    # ann2 (always "bad") faces a "good" majority on all 6 items; ann3 agrees on 5 of 6.
    stats = {a.name: (a.agreement, a.agreement_units) for a in report.annotators}
    assert stats == {"ann0": (1.0, 5), "ann1": (1.0, 5), "ann2": (0.0, 6), "ann3": (pytest.approx(5 / 6), 6)}
    assert all(a.judgments == 6 and a.median_seconds == 2.0 for a in report.annotators)


def test_pairwise_alpha_hand_value(report) -> None:
    # Units: p0 = (first, first, second, tie); five units = (first, first, second, first).
    # o_ff = 5 * 3*2/3 + 2/3 = 32/3, o_ss = o_tt = 0; marginals n_f = 17, n_s = 6, n_t = 1, n = 24.
    # alpha = 1 - (n - 1)(n - sum o_cc) / (n^2 - sum n_c^2) = 1 - 23 * (40/3) / (576 - 326) = -17/75.
    (alpha,) = report.alphas
    assert (alpha.task_type, alpha.metric, alpha.units) == ("pairwise", "nominal", 6)
    assert alpha.alpha == pytest.approx(-17 / 75)
    assert report.progress.complete_items == 4 and report.progress.judgments == 16


def test_likert_alpha_hand_values(store: FeedbackStore) -> None:
    store.create_project(ProjectSpec(name="lk", task_type="likert", overlap=2))
    store.add_items("lk", [NewItem(prompt="q", responses=("r1", "r2"))])

    def rate(r1: int, r2: int):  # type: ignore[no-untyped-def]
        return lambda t: {"ratings": {str(r.id): {"overall": r1 if r.text == "r1" else r2} for r in t.responses}}

    _run(store, "lk", "a", rate(5, 2))
    _run(store, "lk", "b", rate(6, 2))
    alphas = {a.metric: a.alpha for a in store.qc_report("lk").alphas}
    # Units r1 = (5, 6), r2 = (2, 2); n_2 = 2, n_5 = n_6 = 1, n = 4.
    # interval: observed sum o*d2 = 2 * 1^2 = 2; expected sum n_c n_k d2 = 2*(2*9) + 2*(2*16) + 2*1 = 102;
    #           alpha = 1 - 3 * 2 / 102 = 16/17.
    # ordinal:  d2(5,6) = (2 - 1)^2 = 1, d2(2,5) = (3 - 1.5)^2 = 2.25, d2(2,6) = (4 - 1.5)^2 = 6.25;
    #           expected = 2*(2*2.25) + 2*(2*6.25) + 2*1 = 36; alpha = 1 - 3 * 2 / 36 = 5/6.
    assert alphas == {"ordinal": pytest.approx(5 / 6), "interval": pytest.approx(16 / 17)}


def test_harm_flags_and_skips_are_counted(store: FeedbackStore) -> None:
    store.create_project(ProjectSpec(name="hm", task_type="harm", overlap=1))
    store.add_items("hm", [NewItem(prompt=f"q{i}", responses=("x", "y")) for i in range(2)])
    user = store.create_user("h", "annotator", PASSWORD).id
    first = store.next_task("hm", user)
    store.skip(first.assignment_id, user, "not sure")
    second = store.next_task("hm", user)
    store.submit(second.assignment_id, user, {"flags": {str(second.responses[0].id): ["hate", "violence"]}})
    report = store.qc_report("hm")
    assert report.skip_reasons == {"not sure": 1}
    assert report.harm_flags == {"hate": 1, "violence": 1}
    assert report.annotators[0].skips == 1
