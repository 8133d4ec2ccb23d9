"""RLAIF through the app: an AI account's judgments appear in QC and export exactly like a person's."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
from argon2 import PasswordHasher

from rlhfkit.feedback import security
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.errors import Unauthorized
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.judges import Asker, load_templates
from rlhfkit.judges.http import HTTPJudge
from rlhfkit.judges.questions import Asking
from rlhfkit.loop.judge import FLIP_SKIP, JudgeCommandConfig, judge_command, run_judge


@pytest.fixture(autouse=True)
def cheap_hashing(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(security, "_HASHER", PasswordHasher(time_cost=1, memory_cost=256, parallelism=1))


def _project(store: FeedbackStore, name: str = "p", overlap: int = 3, n: int = 6) -> None:
    store.create_project(ProjectSpec(name=name, task_type="pairwise", overlap=overlap))
    # Items 0, 2, 4: the first response is the good one; 1, 3, 5: the second.
    items = [
        NewItem(
            prompt=f"Q{i}?",
            responses=(f"a good answer {i}", f"no {i}") if i % 2 == 0 else (f"no {i}", f"a good answer {i}"),
        )
        for i in range(n)
    ]
    store.add_items(name, items)


def _people_answer(store: FeedbackStore, project: str, names: list[str], wrong: set[str]) -> None:
    """Annotators pick the good response (those in `wrong` the other one)."""
    for name in names:
        uid = store.create_user(name, "annotator", "a long password").id
        while (task := store.next_task(project, uid)) is not None:
            good = next(r for r in task.responses if "good" in r.text)
            bad = next(r for r in task.responses if r.id != good.id)
            store.submit(task.assignment_id, uid, {"choice": (bad if name in wrong else good).id}, duration_ms=3000)


def test_judge_in_qc_and_export_like_a_person(tmp_path: Path, fake_server: tuple[Any, str]) -> None:
    _, url = fake_server
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    _project(store, overlap=4)
    _people_answer(store, "p", ["ann", "bob", "cat"], wrong={"bob"})
    asker = Asker(HTTPJudge(url, "fake-model"))
    run = run_judge(
        store, "p", asker, load_templates(), account="ai-fake", how=Asking(on_flip="unlabelled"), run_dir=tmp_path
    )
    assert (run.submitted, run.flips, run.questions) == (6, 0, 6)
    qc = store.qc_report("p")
    rows = {a.name: a for a in qc.annotators}
    judge, ann = rows["ai-fake"], rows["ann"]
    assert judge.role == "ai" and judge.flip_rate == 0.0 and judge.flip_questions == 6
    assert judge.judgments == ann.judgments == 6
    # ann, cat and the judge pick the good response on every item, bob never.
    assert judge.agreement == ann.agreement == 1.0 and rows["bob"].agreement == 0.0
    assert ann.flip_rate is None and ann.role == "annotator"
    # With the judge 3 of 4 coders agree per item, without it 2 of 3: alpha falls without it.
    with_ai, without = qc.alphas[0].alpha, qc.alphas_without_ai[0].alpha
    assert with_ai is not None and without is not None and without < with_ai
    raw = [r.to_json() for r in store.export_rows("p", "pairs", "raw")]
    by = {name: [r for r in raw if r["annotator"] == name] for name in ("ai-fake", "ann")}
    assert [sorted(r) for r in by["ai-fake"]] == [sorted(r) for r in by["ann"]]
    assert [(r["chosen"], r["rejected"]) for r in by["ai-fake"]] == [(r["chosen"], r["rejected"]) for r in by["ann"]]
    assert (tmp_path / "verdicts.jsonl").read_text().count("\n") == 6
    with pytest.raises(Unauthorized):  # an AI account cannot log in, whatever its password
        store.login("ai-fake", "anything at all")
    store.close()


def test_flips_left_unlabelled_show_in_qc(tmp_path: Path, fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.biased = True
    db = f"sqlite:///{tmp_path / 'f.db'}"
    store = FeedbackStore(db)
    _project(store, overlap=1, n=4)
    cfg = JudgeCommandConfig(
        judge=url, model="fake-model", db=db, project="p", output=tmp_path / "run", on_flip="unlabelled"
    )
    out = judge_command(cfg)
    assert "0 judgments, 4 left unlabelled" in out and "flip rate 100.0% of 4" in out and "requests 8" in out
    qc = store.qc_report("p")
    assert qc.annotators[0].flip_rate == 1.0 and qc.skip_reasons == {FLIP_SKIP: 4}
    assert store.export_rows("p", "pairs") == []
    b.biased, hits = False, b.hits
    assert "0 judgments" in judge_command(cfg) and b.hits == hits  # given-back items are not asked again
    tie = JudgeCommandConfig(
        judge=url, model="fake-model", db=db, project="p", account="ai-tie", output=tmp_path / "r2"
    )
    b.biased = True
    assert "4 judgments" in judge_command(tie)
    assert {r.to_json().get("tie") for r in store.export_rows("p", "pairs")} == {True}
    store.close()


def test_judge_gold_accuracy_in_qc(tmp_path: Path, fake_server: tuple[Any, str]) -> None:
    _, url = fake_server
    store = FeedbackStore(f"sqlite:///{tmp_path / 'f.db'}")
    store.create_project(ProjectSpec(name="g", task_type="pairwise", overlap=1, gold_rate=0.5))
    # Gold items: the known answer is the "good" response for 0 and 2, and (wrongly for the judge) "no" for 4.
    gold = [
        NewItem(prompt=f"G{i}?", responses=(f"a good answer {i}", f"no {i}"), gold={"choice": 0 if i < 4 else 1})
        for i in (0, 2, 4)
    ]
    store.add_items(
        "g", [*gold, *(NewItem(prompt=f"Q{i}?", responses=(f"a good one {i}", f"no {i}")) for i in range(3))]
    )
    run = run_judge(store, "g", Asker(HTTPJudge(url, "fake-model")), load_templates(), account="ai-g", how=Asking())
    row = store.qc_report("g").annotators[0]
    assert run.submitted == row.judgments == 6 and row.gold_judgments == 3
    assert row.gold_accuracy == pytest.approx(2 / 3)
    store.close()


def test_cli_reports_an_unreachable_judge_in_one_line(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.cli import main

    db = f"sqlite:///{tmp_path / 'f.db'}"
    store = FeedbackStore(db)
    _project(store, overlap=1, n=1)
    store.close()
    args = ["judge", "--db", db, "--project", "p", "--judge", "http://127.0.0.1:9/v1", "--output", str(tmp_path / "r")]
    assert main([*args, "model=x", "attempts=2", "timeout_s=1"]) == 2
    err = capsys.readouterr().err
    assert "ConnectError after 2 tries" in err and "Traceback" not in err
