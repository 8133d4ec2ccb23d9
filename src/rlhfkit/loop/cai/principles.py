"""The constitution: critique / revision requests and feedback principles, from a YAML file.

`DEFAULT_PRINCIPLES` ships with rlhfkit (its own wording). A principle is drawn at random for every
critique and every comparison (Bai et al. 2022, sec. 3.1 and 4.1: sampling principles rather than
using all of them at once gives diverse critiques and labels).
"""

from __future__ import annotations

from dataclasses import dataclass
from importlib.resources import files
from pathlib import Path

import yaml

from rlhfkit.config import ConfigError

DEFAULT_PRINCIPLES = "principles.yaml"
"""The shipped constitution, next to this module."""

KEYS = {"critique_revision", "feedback", "feedback_scores"}
"""The keys of a principles file (feedback_scores optional)."""


@dataclass(frozen=True)
class CritiqueRevision:
    """One supervised-stage principle."""

    critique: str
    """Asks the model to find what is wrong with its last reply."""
    revision: str
    """Asks the model to rewrite that reply to fix it."""


@dataclass(frozen=True)
class Constitution:
    """Every principle of a run."""

    critique_revision: tuple[CritiqueRevision, ...]
    """Supervised stage: critique and revision requests."""
    feedback: tuple[str, ...]
    """RL stage: comparison questions (judge.compare=both_orders)."""
    feedback_scores: tuple[str, ...] = ()
    """RL stage with judge.compare=scores: questions about one reply, answered yes / no (judge.score_labels)."""

    def questions(self, compare: str) -> tuple[str, ...]:
        """The RL stage's questions for a judge comparing as `compare` says."""
        if compare == "scores":
            if not self.feedback_scores:
                raise ConfigError(
                    "judge.compare=scores needs feedback_scores (questions about one reply) in the principles"
                )
            return self.feedback_scores
        return self.feedback


def _text(value: object, where: str) -> str:
    if not isinstance(value, str) or not value.strip():
        raise ConfigError(f"{where}: must be non-empty text")
    return value.strip()


def parse_constitution(data: object, source: str) -> Constitution:
    """Validate a loaded YAML document; errors name the file, the list and the entry."""
    if not isinstance(data, dict) or not {"critique_revision", "feedback"} <= set(data) <= KEYS:
        raise ConfigError(
            f"{source}: a principles file has the keys critique_revision and feedback (and feedback_scores)"
        )
    pairs, questions = data["critique_revision"], data["feedback"]
    if not isinstance(pairs, list) or not pairs or not isinstance(questions, list) or not questions:
        raise ConfigError(f"{source}: critique_revision and feedback must be non-empty lists")
    out = []
    for i, pair in enumerate(pairs):
        where = f"{source}: critique_revision[{i}]"
        if not isinstance(pair, dict) or set(pair) != {"critique", "revision"}:
            raise ConfigError(f"{where}: needs exactly the keys critique and revision")
        out.append(
            CritiqueRevision(_text(pair["critique"], f"{where}.critique"), _text(pair["revision"], f"{where}.revision"))
        )
    feedback = tuple(_text(q, f"{source}: feedback[{i}]") for i, q in enumerate(questions))
    scores = data.get("feedback_scores", [])
    if not isinstance(scores, list):
        raise ConfigError(f"{source}: feedback_scores must be a list")
    return Constitution(
        tuple(out), feedback, tuple(_text(q, f"{source}: feedback_scores[{i}]") for i, q in enumerate(scores))
    )


def load_constitution(path: str = "") -> Constitution:
    """The principles of `path` ('' = the shipped default)."""
    if path:
        text, source = Path(path).read_text(encoding="utf-8"), path
    else:
        text, source = files(__package__).joinpath(DEFAULT_PRINCIPLES).read_text(encoding="utf-8"), DEFAULT_PRINCIPLES
    try:
        data = yaml.safe_load(text)
    except yaml.YAMLError as err:
        raise ConfigError(f"{source}: not valid YAML: {err}") from None
    return parse_constitution(data, source)
