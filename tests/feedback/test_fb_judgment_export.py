"""Critiques and harm flags export in documented formats; an empty export says why and fails;
training from DBURL#PROJECT takes an aggregation, and an all-ties project is a clear error."""

from __future__ import annotations

import json
from pathlib import Path

import pytest

from rlhfkit.data.errors import DataError
from rlhfkit.data.projects import ProjectRef, parse_project_ref, read_project_records
from rlhfkit.data.records import Comparison
from rlhfkit.feedback.commands import export_project
from rlhfkit.feedback.entities import NewItem, ProjectSpec, TaskView
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.store import FeedbackStore

PASSWORD = "correct horse battery"


def _judge(store: FeedbackStore, project: str, answer_of: list) -> None:
    """Annotator k answers every task with answer_of[k](task)."""
    for k, answer in enumerate(answer_of):
        user = store.create_user(f"{project}{k}", "annotator", PASSWORD).id
        while (task := store.next_task(project, user)) is not None:
            store.submit(task.assignment_id, user, answer(task))


def _ref(task: TaskView, text: str) -> str:
    return str(next(r.id for r in task.responses if r.text == text))


def test_critiques_export_as_prompt_response_critique_rows(store, db_url: str, tmp_path: Path) -> None:
    store.create_project(ProjectSpec(name="cr", task_type="critique", overlap=2))
    store.add_items("cr", [NewItem(prompt="p", responses=("A", "B"))])
    _judge(
        store,
        "cr",
        [
            lambda t: {"critiques": {_ref(t, "A"): "too short"}},
            lambda t: {"critiques": {_ref(t, "A"): "vague", _ref(t, "B"): "rude"}},
        ],
    )
    out = tmp_path / "critiques.jsonl"
    assert export_project(db_url, "cr", "critiques", str(out)) == 3
    rows = [json.loads(line) for line in out.read_text().splitlines()]
    assert rows == [
        {"prompt": "p", "response": "A", "critique": "too short"},
        {"prompt": "p", "response": "A", "critique": "vague"},
        {"prompt": "p", "response": "B", "critique": "rude"},
    ]
    raw = [r.to_json() for r in store.export_rows("cr", "critiques", "raw")]
    assert [r["annotator"] for r in raw] == ["cr0", "cr1", "cr1"]


def test_harm_flags_export_as_per_response_labels(store) -> None:
    store.create_project(ProjectSpec(name="hm", overlap=3))  # pairwise: every task type has the harm panel
    store.add_items("hm", [NewItem(prompt="p", responses=("A", "B"))])
    _judge(
        store,
        "hm",
        [
            lambda t: {"choice": int(_ref(t, "A")), "flags": {_ref(t, "B"): ["hate", "violence"]}},
            lambda t: {"choice": int(_ref(t, "A")), "flags": {_ref(t, "B"): ["hate"]}},
            lambda t: {"choice": int(_ref(t, "A"))},
        ],
    )
    rows = sorted((r.to_json() for r in store.export_rows("hm", "harm", "majority")), key=lambda r: r["response"])
    # 'hate': 2 of 3 annotators (a strict majority); 'violence': 1 of 3 (not held).
    assert rows == [
        {"prompt": "p", "response": "A", "labels": [], "harmful": False, "annotators": 3},
        {"prompt": "p", "response": "B", "labels": ["hate"], "harmful": True, "annotators": 3},
    ]
    raw = [r.to_json() for r in store.export_rows("hm", "harm", "raw") if r.to_json()["response"] == "B"]
    assert [r["labels"] for r in raw] == [["hate", "violence"], ["hate"], []]


def test_an_export_with_nothing_to_write_says_why_and_writes_nothing(store, db_url: str, tmp_path: Path) -> None:
    store.create_project(ProjectSpec(name="empty"))
    store.add_items("empty", [NewItem(prompt="p", responses=("A", "B"))])
    out = tmp_path / "pairs.jsonl"
    with pytest.raises(Invalid, match="nothing to export as pairs from project 'empty': the project has no judg"):
        export_project(db_url, "empty", "pairs", str(out))
    _judge(store, "empty", [lambda t: {"choice": int(_ref(t, "A"))}])
    with pytest.raises(Invalid, match=r"its task types \(pairwise\) make no demos; demos come from demo, rewrite"):
        export_project(db_url, "empty", "demos", str(out))
    assert not out.exists()


def test_the_export_command_exits_non_zero_when_empty(store, db_url: str, tmp_path: Path, capsys) -> None:
    from rlhfkit.cli import main

    store.create_project(ProjectSpec(name="e2"))
    code = main(
        ["export", "--project", "e2", "--format", "pairs", "--output", str(tmp_path / "x.jsonl"), "--db", db_url]
    )
    assert code == 2 and "the project has no judgments yet" in capsys.readouterr().err


def test_training_reads_a_project_with_the_chosen_aggregation(store, db_url: str) -> None:
    store.create_project(ProjectSpec(name="ag", overlap=3))
    store.add_items("ag", [NewItem(prompt="p", responses=("A", "B"))])
    a = lambda t: {"choice": int(_ref(t, "A"))}  # noqa: E731
    b = lambda t: {"choice": int(_ref(t, "B"))}  # noqa: E731
    _judge(store, "ag", [a, a, b])
    assert parse_project_ref(f"{db_url}#ag?aggregate=bradley_terry") == ProjectRef(db_url, "ag", "bradley-terry")
    majority = read_project_records(parse_project_ref(f"{db_url}#ag"), "pairs")  # type: ignore[arg-type]
    bt = read_project_records(parse_project_ref(f"{db_url}#ag?aggregate=bradley-terry"), "pairs")  # type: ignore[arg-type]
    raw = read_project_records(parse_project_ref(f"{db_url}#ag?aggregate=raw"), "pairs")  # type: ignore[arg-type]
    assert len(majority) == 1 and majority[0].margin is None  # type: ignore[union-attr]
    assert len(bt) == 1 and bt[0].margin is not None and bt[0].margin > 0  # type: ignore[union-attr]
    assert sorted(r.chosen for r in raw if isinstance(r, Comparison)) == ["A", "A", "B"]
    with pytest.raises(ValueError, match=r"only \?aggregate=majority\|bradley-terry\|raw"):
        parse_project_ref(f"{db_url}#ag?aggregate=mean")


def test_a_project_of_only_ties_is_a_clear_error(store, db_url: str) -> None:
    store.create_project(ProjectSpec(name="ties", overlap=2))
    store.add_items("ties", [NewItem(prompt=p, responses=("A", "B")) for p in ("p1", "p2")])
    _judge(store, "ties", [lambda t: {"choice": "tie"}, lambda t: {"choice": "tie"}])
    with pytest.raises(DataError, match="every one of the project's 2 pairs is a tie"):
        read_project_records(ProjectRef(db_url, "ties"), "pairs")
