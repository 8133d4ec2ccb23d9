"""The simulated panel submits through the feedback app like people: accounts, assignment, QC, export."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.errors import Unauthorized
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop.annotators import AnnotatorProfile, SimulatedPanel, make_panel
from rlhfkit.loop.panel_feedback import SKIP_REASON, ensure_account, run_panel


def _first_word_gold(prompt: str, response: str) -> float:
    """Gold = the number leading the response, so the test chooses every utility."""
    return float(response.split()[0])


def _store(tmp_path: Path) -> FeedbackStore:
    return FeedbackStore(f"sqlite:///{tmp_path / 'fb.db'}")


def _pairwise_items(n: int) -> list[NewItem]:
    # Item i: "0.9 ..." beats "0.1 ..."; alternate which is first so position carries no signal.
    return [
        NewItem(
            prompt=f"prompt {i}",
            responses=(f"0.9 good {i}", f"0.1 bad {i}") if i % 2 else (f"0.1 bad {i}", f"0.9 good {i}"),
            external_id=f"p{i}",
        )
        for i in range(n)
    ]


def test_noiseless_panel_fills_every_slot_and_export_follows_gold(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_project(ProjectSpec(name="pw", task_type="pairwise", overlap=3))
    store.add_items("pw", _pairwise_items(8))
    panel = make_panel(_first_word_gold, n_members=5, temperature=0.0, seed=0)
    run = run_panel(store, "pw", panel, seed=1)

    # 8 items x overlap 3 = 24 answers, spread over the members by the app's assignment.
    assert run.submitted == 24 and run.skipped == 0
    assert sum(run.per_member.values()) == 24 and max(run.per_member.values()) <= 8
    progress = store.progress("pw")
    assert progress.complete_items == 8 and progress.judgments == 24
    judgments = store.judgments("pw")
    by_item: dict[int, set[str]] = {}
    for j in judgments:
        by_item.setdefault(j["item_id"], set()).add(j["annotator"])
    assert all(len(names) == 3 for names in by_item.values())  # three distinct members per item
    pairs = [row.record for row in store.export_rows("pw", "pairs", "majority")]
    assert len(pairs) == 8 and all(p.chosen.startswith("0.9") for p in pairs)
    qc = store.qc_report("pw")
    assert {a.name for a in qc.annotators} <= {m.name for m in panel.members}
    assert all(a.agreement == 1.0 for a in qc.annotators if a.agreement_units)
    # Running the panel again finds nothing left to do (the app never hands an item twice).
    assert run_panel(store, "pw", panel).submitted == 0


def test_careless_member_shows_in_qc(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_project(ProjectSpec(name="qc", task_type="pairwise", overlap=3))
    store.add_items("qc", _pairwise_items(60))
    members = (
        AnnotatorProfile("careful-1", temperature=0.0),
        AnnotatorProfile("careful-2", temperature=0.0),
        AnnotatorProfile("careless", careless=True),
    )
    run_panel(store, "qc", SimulatedPanel(_first_word_gold, members, seed=3))
    stats = {a.name: a for a in store.qc_report("qc").annotators}
    # The careful two agree with each other (and so with the leave-one-out majority) on every item
    # where both other answers agree; the careless one agrees only by chance (~1/2).
    assert stats["careful-1"].agreement == 1.0
    assert stats["careless"].agreement < 0.75


def test_ranking_and_likert_payloads(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_project(ProjectSpec(name="rk", task_type="ranking", overlap=2))
    store.add_items("rk", [NewItem(prompt="p", responses=("0.2 b", "0.8 a", "-0.5 c"))])
    store.create_project(ProjectSpec(name="lk", task_type="likert", overlap=1))
    store.add_items("lk", [NewItem(prompt="p", responses=("0.5 x", "-0.5 y"))])
    panel = SimulatedPanel(
        _first_word_gold, (AnnotatorProfile("m1", temperature=0.0), AnnotatorProfile("m2", temperature=0.0))
    )
    run_panel(store, "rk", panel)
    run_panel(store, "lk", panel)
    ranking = store.export_rows("rk", "rankings", "majority")[0].record
    assert ranking.responses == ("0.8 a", "0.2 b", "-0.5 c")
    # Likert: 4 + 3u rounded half up -> 0.5 -> 5.5 -> 6; -0.5 -> 2.5 -> 3.
    ratings = {r.record.response: r.record.rating for r in store.export_rows("lk", "ratings", "majority")}
    assert ratings == {"0.5 x": 6, "-0.5 y": 3}


def test_panel_leaves_slots_for_people(tmp_path: Path) -> None:
    store = _store(tmp_path)
    store.create_project(ProjectSpec(name="both", task_type="pairwise", overlap=3))
    store.add_items("both", _pairwise_items(5))
    panel = make_panel(_first_word_gold, n_members=4, temperature=0.0)
    run = run_panel(store, "both", panel, max_panel_judgments=2)
    assert run.submitted == 10  # 5 items x 2 panel judgments; the third slot is for a person
    assert store.progress("both").complete_items == 0
    assert store.qc_report("both").skip_reasons.get(SKIP_REASON, 0) == run.skipped > 0
    # A person can still take every item.
    uid, _ = ensure_account(store, "person")
    taken = 0
    while (task := store.next_task("both", uid)) is not None:
        store.submit(task.assignment_id, uid, {"choice": task.responses[0].id})
        taken += 1
    assert taken == 5 and store.progress("both").complete_items == 5


def test_accounts_have_random_passwords(tmp_path: Path) -> None:
    store = _store(tmp_path)
    uid, first = ensure_account(store, "sim-a")
    assert first is not None and len(first) >= 32
    again, none = ensure_account(store, "sim-a")
    assert again == uid and none is None  # an existing account keeps its password
    _, second = ensure_account(store, "sim-b")
    assert second != first
    store.login("sim-a", first)
    for guess in ("password", "sim-a", "changeme", "12345678"):
        with pytest.raises(Unauthorized):
            store.login("sim-a", guess)
    _, rotated = ensure_account(store, "sim-a", new_password=True)
    assert rotated not in (None, first)
    store.login("sim-a", rotated)
    with pytest.raises(Unauthorized):
        store.login("sim-a", first)


def test_rest_transport_matches_store_transport(tmp_path: Path) -> None:
    from fastapi.testclient import TestClient

    from rlhfkit.feedback.web.app import create_app

    store = _store(tmp_path)
    store.create_project(ProjectSpec(name="api", task_type="pairwise", overlap=2))
    store.add_items("api", _pairwise_items(6))
    panel = make_panel(_first_word_gold, n_members=3, temperature=0.0)
    with TestClient(create_app(store=store)) as http:
        run = run_panel(store, "api", panel, transport="rest", http=http)
    assert run.submitted == 12
    judgments = store.judgments("api")
    assert {j["source"] for j in judgments} == {"api"} and len(judgments) == 12
    pairs = [row.record for row in store.export_rows("api", "pairs", "majority")]
    assert all(p.chosen.startswith("0.9") for p in pairs)
    logins = [e for e in store.audit(limit=1000) if e.get("action") == "login"]
    assert len(logins) >= 3  # every member logged in over HTTP
