"""The task type registry: every type is complete, and gold answers are re-keyed by each type's remap."""

from __future__ import annotations

from pathlib import Path

import pytest

import rlhfkit.feedback
from rlhfkit.feedback.tasks import TASK_TYPES, task_type
from rlhfkit.feedback.tasks.base import TaskContext

TEMPLATES = Path(rlhfkit.feedback.__file__).parent / "templates"

GOLD_BY_POSITION = {
    "pairwise": {"choice": 1, "flags": {"0": ["hate"]}},
    "ranking": {"ranking": [1, 0]},
    "likert": {"ratings": {"0": {"overall": 2}, "1": {"overall": 6}}},
    "critique": {"critiques": {"1": "too long"}},
    "rewrite": {"response_id": 0, "text": "better"},
    "demo": {"text": "my answer", "comment": "easy"},
    "harm": {"flags": {"1": ["privacy"]}},
}
GOLD_BY_ID = {
    "pairwise": {"choice": 21, "flags": {"20": ["hate"]}},
    "ranking": {"ranking": [21, 20]},
    "likert": {"ratings": {"20": {"overall": 2}, "21": {"overall": 6}}},
    "critique": {"critiques": {"21": "too long"}},
    "rewrite": {"response_id": 20, "text": "better"},
    "demo": {"text": "my answer", "comment": "easy"},
    "harm": {"flags": {"21": ["privacy"]}},
}


@pytest.mark.parametrize("name", sorted(TASK_TYPES))
def test_every_type_has_its_templates(name: str) -> None:
    kind = task_type(name)
    assert kind.name == name
    assert (TEMPLATES / kind.template).is_file() and (TEMPLATES / kind.shortcuts_template).is_file()


@pytest.mark.parametrize("name", sorted(GOLD_BY_POSITION))
def test_gold_answers_are_rekeyed_to_response_ids(name: str) -> None:
    kind = task_type(name)
    gold = kind.normalize(GOLD_BY_POSITION[name], TaskContext(response_ids=(0, 1)))
    assert kind.remap(gold, {0: 20, 1: 21}) == GOLD_BY_ID[name]


def test_only_judgment_types_are_simulated_and_quality_controlled() -> None:
    simulated = {name for name, kind in TASK_TYPES.items() if kind.simulate is not None}
    controlled = {name for name, kind in TASK_TYPES.items() if kind.agreement_units is not None}
    assert simulated == {"pairwise", "ranking", "likert"}
    assert controlled == simulated | {"harm"}
    assert set(GOLD_BY_POSITION) == set(TASK_TYPES)
