"""Export: canonical rlhfkit/TRL records per kind and aggregation, files, the DBURL#PROJECT source."""

from __future__ import annotations

import json
import math
from collections.abc import Callable
from pathlib import Path

import pytest

from rlhfkit.data.projects import project_ref as split_data_url
from rlhfkit.data.records import Comparison, Demonstration, Ranking, Rating
from rlhfkit.feedback.commands import export_project
from rlhfkit.feedback.entities import NewItem, ProjectSpec, TaskView
from rlhfkit.feedback.source import project_records as load_project_records
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.files import write_jsonl_atomic

PASSWORD = "correct horse battery"


def _by_text(task: TaskView, text: str) -> int:
    return next(r.id for r in task.responses if r.text == text)


def _user(store: FeedbackStore, name: str) -> int:
    known = {u.name: u.id for u in store.list_users()}
    return known[name] if name in known else store.create_user(name, "annotator", PASSWORD).id


def _judge(store: FeedbackStore, project: str, answers: dict[str, list[Callable[[TaskView], dict]]]) -> None:
    """answers[prompt][k] answers the k-th annotator's task on that prompt (annotators ann0, ann1...)."""
    width = max(len(v) for v in answers.values())
    users = [_user(store, f"ann{k}") for k in range(width)]
    for k, user in enumerate(users):
        while (task := store.next_task(project, user)) is not None:
            store.submit(task.assignment_id, user, answers[task.prompt][k](task))


def choose(text: str) -> Callable[[TaskView], dict]:
    return lambda t: {"choice": _by_text(t, text)}


def outcome(word: str) -> Callable[[TaskView], dict]:
    return lambda t: {"choice": word}


@pytest.fixture
def pairwise_project(store: FeedbackStore) -> str:
    store.create_project(ProjectSpec(name="pw", overlap=3))
    store.add_items(
        "pw",
        [NewItem(prompt=p, responses=("A", "B")) for p in ("p1", "p2", "p3", "p4")]
        + [NewItem(prompt="gold", responses=("A", "B"), gold={"choice": 0})],
    )
    _judge(
        store,
        "pw",
        {
            "p1": [choose("A"), choose("A"), choose("B")],
            "p2": [outcome("tie"), outcome("tie"), choose("A")],
            "p3": [outcome("both_bad"), outcome("both_bad"), choose("A")],
            "p4": [choose("A"), choose("B"), outcome("tie")],
            "gold": [choose("A"), choose("A"), choose("A")],
        },
    )
    return "pw"


def test_pairs_majority(store, pairwise_project) -> None:
    rows = [r.to_json() for r in store.export_rows("pw", "pairs", "majority")]
    # p1: A wins 2-1; p2: tie; p3: majority "both bad" -> dropped; p4: three-way split -> dropped;
    # gold items are QC instruments and never exported.
    assert rows == [
        {"prompt": "p1", "chosen": "A", "rejected": "B"},
        {"prompt": "p2", "chosen": "A", "rejected": "B", "tie": True},
    ]


def test_pairs_bradley_terry_margins(store, pairwise_project) -> None:
    rows = [r.to_json() for r in store.export_rows("pw", "pairs", "bradley-terry")]
    # p1: 2 wins to 1 plus half a prior win each: margin ln(2.5 / 1.5).
    assert rows[0]["chosen"] == "A" and rows[0]["margin"] == pytest.approx(math.log(2.5 / 1.5))
    # p2: tie, tie, A -> A has 0.5 + 0.5 + 1 + 0.5 (prior) = 2.5 wins, B 0.5 + 0.5 + 0 + 0.5 = 1.5.
    assert rows[1]["chosen"] == "A" and rows[1]["margin"] == pytest.approx(math.log(2.5 / 1.5))
    # p3: "both bad" is ignored, leaving one A vote: ln(1.5 / 0.5). p4: A, B, tie -> equal: a tie.
    assert rows[2] == {"prompt": "p3", "chosen": "A", "rejected": "B", "margin": pytest.approx(math.log(3))}
    assert rows[3] == {"prompt": "p4", "chosen": "A", "rejected": "B", "tie": True}


def test_raw_rows_carry_the_annotator(store, pairwise_project) -> None:
    rows = [r.to_json() for r in store.export_rows("pw", "pairs", "raw")]
    # 12 non-gold judgments minus the 2 "both bad" = 10 rows; a raw "tie" keeps canonical order.
    assert len(rows) == 10
    assert rows[0] == {"prompt": "p1", "chosen": "A", "rejected": "B", "annotator": "ann0"}
    assert {"prompt": "p1", "chosen": "B", "rejected": "A", "annotator": "ann2"} in rows
    rankings = [r.to_json() for r in store.export_rows("pw", "rankings", "majority")]
    assert rankings == [{"prompt": "p1", "responses": ["A", "B"]}]


def test_rankings_and_ratings_and_demos(store: FeedbackStore) -> None:
    store.create_project(ProjectSpec(name="rk", task_type="ranking", overlap=2))
    store.add_items("rk", [NewItem(prompt="r", responses=("x", "y", "z"))])
    order = lambda *texts: lambda t: {"ranking": [_by_text(t, s) for s in texts]}  # noqa: E731
    _judge(store, "rk", {"r": [order("y", "x", "z"), order("y", "z", "x")]})
    assert [r.to_json() for r in store.export_rows("rk", "rankings")] == [{"prompt": "r", "responses": ["y", "x", "z"]}]
    # Copeland: y beats both; x-vs-z split 1-1 -> mean position decides (x 1.5, z 1.5) -> canonical x first.
    pairs = [r.to_json() for r in store.export_rows("rk", "pairs")]
    assert pairs == [
        {"prompt": "r", "chosen": "y", "rejected": "x"},
        {"prompt": "r", "chosen": "y", "rejected": "z"},
        {"prompt": "r", "chosen": "x", "rejected": "z"},
    ]

    store.create_project(ProjectSpec(name="lk", task_type="likert", overlap=3, aspects=("honesty",)))
    store.add_items("lk", [NewItem(prompt="l", responses=("good", "poor"))])
    rate = lambda g, p: (  # noqa: E731
        lambda t: {
            "ratings": {
                str(_by_text(t, "good")): {"overall": g, "honesty": 7},
                str(_by_text(t, "poor")): {"overall": p, "honesty": 2},
            }
        }
    )
    _judge(store, "lk", {"l": [rate(6, 2), rate(7, 3), rate(5, 3)]})
    ratings = [r.to_json() for r in store.export_rows("lk", "ratings")]
    assert ratings == [
        {"prompt": "l", "response": "good", "rating": 6.0, "scale": [1.0, 7.0], "aspects": {"honesty": 7.0}},
        {"prompt": "l", "response": "poor", "rating": 3.0, "scale": [1.0, 7.0], "aspects": {"honesty": 2.0}},
    ]
    # Median ratings 6 vs 3: one pair with margin 3 (the Likert gap).
    assert [r.to_json() for r in store.export_rows("lk", "pairs")] == [
        {"prompt": "l", "chosen": "good", "rejected": "poor", "margin": 3.0}
    ]
    means = [r.to_json()["rating"] for r in store.export_rows("lk", "ratings", "bradley-terry")]
    assert means == [pytest.approx(6.0), pytest.approx(8 / 3)]

    store.create_project(ProjectSpec(name="rw", task_type="rewrite", overlap=1))
    store.add_items("rw", [NewItem(prompt="w", responses=("meh",))])
    _judge(store, "rw", {"w": [lambda t: {"response_id": t.responses[0].id, "text": "much better"}]})
    assert [r.to_json() for r in store.export_rows("rw", "demos")] == [{"prompt": "w", "response": "much better"}]
    assert [r.to_json() for r in store.export_rows("rw", "pairs")] == [
        {"prompt": "w", "chosen": "much better", "rejected": "meh"}
    ]


def test_load_project_records_returns_record_objects(store, pairwise_project, db_url) -> None:
    records = load_project_records(db_url, "pw", "pairs")
    assert records == [Comparison("p1", "A", "B"), Comparison("p2", "A", "B", tie=True)]
    assert load_project_records(db_url, "pw", "rankings") == [Ranking("p1", ("A", "B"))]
    assert load_project_records(db_url, "pw", "ratings") == []
    assert all(isinstance(r, Comparison) for r in load_project_records(db_url, "pw", "pairs", "raw"))
    with pytest.raises(Exception, match="no project"):
        load_project_records(db_url, "missing", "pairs")
    assert Rating and Demonstration  # the other record classes the exporter builds


def test_export_files(store, pairwise_project, db_url, tmp_path: Path) -> None:
    out = tmp_path / "out" / "pairs.jsonl"
    assert export_project(db_url, "pw", "pairs", str(out)) == 2
    assert [json.loads(x) for x in out.read_text().splitlines()][1]["tie"] is True
    assert export_project(db_url, "pw", "pairs", str(out), raw=True) == 10
    assert all("annotator" in json.loads(x) for x in out.read_text().splitlines())
    assert [p.name for p in out.parent.iterdir()] == ["pairs.jsonl"]  # no temp file left behind
    import datasets

    hf_dir = tmp_path / "pairs-hf"
    assert export_project(db_url, "pw", "pairs", str(hf_dir)) == 2
    loaded = datasets.load_from_disk(str(hf_dir))
    assert loaded.to_list() == [
        {"prompt": "p1", "chosen": "A", "rejected": "B", "tie": None},
        {"prompt": "p2", "chosen": "A", "rejected": "B", "tie": True},
    ]
    assert store.audit("pw", limit=1)[0]["action"] == "export"


def test_atomic_writer_keeps_the_old_file_on_failure(tmp_path: Path) -> None:
    path = tmp_path / "x.jsonl"
    write_jsonl_atomic(path, [{"a": 1}])

    def broken():  # type: ignore[no-untyped-def]
        yield {"a": 2}
        raise RuntimeError("disk on fire")

    with pytest.raises(RuntimeError):
        write_jsonl_atomic(path, broken())
    assert path.read_text() == '{"a": 1}\n' and len(list(tmp_path.iterdir())) == 1


def test_data_url_split() -> None:
    assert split_data_url("sqlite:///feedback.db#my-project") == ("sqlite:///feedback.db", "my-project", "majority")
    assert split_data_url("postgresql://u:p@h/db#p") == ("postgresql://u:p@h/db", "p", "majority")
    for bad in ("feedback.db#p", "sqlite:///x.db", "sqlite:///x.db#"):
        with pytest.raises(ValueError, match="DBURL#PROJECT"):
            split_data_url(bad)


def test_training_data_reads_the_project_through_the_entry_point(store, pairwise_project, db_url) -> None:
    from rlhfkit.data.projects import read_project_records
    from rlhfkit.train.sources import load_training_records

    ref = split_data_url(f"{db_url}#pw")
    assert read_project_records(ref, "pairs") == load_project_records(db_url, "pw", "pairs")
    assert load_training_records(f"{db_url}#pw", "rankings") == [Ranking("p1", ("A", "B"))]
