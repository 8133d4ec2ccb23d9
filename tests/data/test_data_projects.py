"""``DBURL#PROJECT`` specs: parsed once, read through the ``rlhfkit.record_sources`` entry point."""

from __future__ import annotations

import pytest

from rlhfkit.data import projects
from rlhfkit.data.projects import ProjectRef, parse_project_ref, project_ref


@pytest.mark.parametrize(
    "spec", ["pairs.jsonl", "hf:Anthropic/hh-rlhf:test", "data/x#y.jsonl", "sqlite:///no-project.db"]
)
def test_files_and_datasets_are_not_projects(spec: str) -> None:
    assert parse_project_ref(spec) is None


@pytest.mark.parametrize(
    ("spec", "url", "project"),
    [
        ("sqlite:///feedback.db#p", "sqlite:///feedback.db", "p"),
        ("postgresql+psycopg://u:p@h:5432/db#helpful-v1", "postgresql+psycopg://u:p@h:5432/db", "helpful-v1"),
        ("postgres://h/db#a#b", "postgres://h/db#a", "b"),  # the project is what follows the last "#"
        ("mysql://h/db#p", "mysql://h/db", "p"),
    ],
)
def test_database_specs(spec: str, url: str, project: str) -> None:
    assert parse_project_ref(spec) == ProjectRef(url, project) == project_ref(spec)


@pytest.mark.parametrize("spec", ["sqlite:///x.db#", "sqlite:x.db#p"])
def test_a_malformed_database_spec_is_an_error_not_a_file(spec: str) -> None:
    with pytest.raises(ValueError, match="expected DBURL#PROJECT"):
        parse_project_ref(spec)


def test_a_missing_reader_is_named(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(projects, "entry_points", lambda **_: ())
    with pytest.raises(LookupError, match="no record source 'feedback'"):
        projects.read_project_records(ProjectRef("sqlite:///x.db", "p"), "pairs")
