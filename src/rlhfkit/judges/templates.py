"""Prompt templates of the judge's questions: pairwise, K-way ranking, rating and score, editable in YAML.

A template file (``judge.templates: FILE.yaml``) may override any of the keys of `DEFAULT_TEMPLATES`;
each value is a Python format string over ``{prompt}``, ``{responses}`` (the labelled responses),
``{options}`` (the labels the answer must use) and ``{principle}`` (a constitution principle or the
default criterion). A *score* question shows one response and offers two labels, good first (``judge.score_labels``):
the judge's probability of the first is the response's score (`rlhfkit.judges.questions.score_pair`). The system text is sent as a system message. The rendered messages, with the
judge's name, key the cache: editing a template asks the judge again; re-running does not.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

import yaml

from rlhfkit.config import ConfigError

QuestionKind = Literal["pairwise", "ranking", "rating", "score"]
"""The questions a judge is asked."""

DEFAULT_CRITERION = "Which response is more helpful, honest and harmless?"
"""The criterion when no principle is given."""

DEFAULT_SCORE_QUESTION = "Is the response helpful, honest and harmless?"
"""The question of a score when no principle is given (answered with `score_labels`, yes / no by default)."""

DEFAULT_TEMPLATES: dict[str, str] = {
    "system": "You are a careful, impartial judge of assistant responses. Answer with a single label.",
    "pairwise": ("Conversation:\n{prompt}\n\n{responses}\n\n{principle}\nAnswer with one letter, {options}.\nAnswer:"),
    "ranking": (
        "Conversation:\n{prompt}\n\n{responses}\n\n{principle}\n"
        "Which response is the best? Answer with one letter, {options}.\nAnswer:"
    ),
    "rating": (
        "Conversation:\n{prompt}\n\nResponse:\n{responses}\n\n{principle}\n"
        "Rate the response from 1 (very poor) to 7 (excellent). Answer with one digit, {options}.\nRating:"
    ),
    "score": "Conversation:\n{prompt}\n\nResponse:\n{responses}\n\n{principle} Answer with one word, {options}.\nAnswer:",
}
"""Template key -> format string (the project's own wording)."""

RATING_OPTIONS = ("1", "2", "3", "4", "5", "6", "7")
"""Labels of a rating question (the feedback app's Likert scale)."""

SCORE_LABELS = ("yes", "no")
"""A score question's default answers, good first."""


@dataclass(frozen=True)
class Templates:
    """The system text and one format string per question kind."""

    system: str
    pairwise: str
    ranking: str
    rating: str
    score: str

    def messages(
        self,
        kind: QuestionKind,
        prompt: str,
        responses: Sequence[str],
        principle: str = "",
        labels: tuple[str, str] = SCORE_LABELS,
    ) -> tuple[list[dict[str, str]], tuple[str, ...]]:
        """(chat messages, option labels) of one question; responses in the order shown; `labels` are a
        score's answers, good first."""
        options: tuple[str, ...]
        default = DEFAULT_CRITERION
        if kind == "rating":
            options, shown = RATING_OPTIONS, responses[0]
        elif kind == "score":
            options, shown, default = labels, responses[0], DEFAULT_SCORE_QUESTION
        else:
            options = letters(len(responses))
            shown = "\n\n".join(f"Response {o}:\n{text}" for o, text in zip(options, responses, strict=True))
        text = getattr(self, kind).format(
            prompt=prompt,
            responses=shown,
            options=_spell(options),
            principle=principle or default,
        )
        return [{"role": "system", "content": self.system}, {"role": "user", "content": text}], options


def letters(count: int) -> tuple[str, ...]:
    if not 2 <= count <= 26:
        raise ConfigError(f"a question compares 2 to 26 responses, got {count}")
    return tuple(chr(ord("A") + i) for i in range(count))


def _spell(options: Sequence[str]) -> str:
    return ", ".join(options[:-1]) + f" or {options[-1]}"


def load_templates(path: str = "") -> Templates:
    """The default templates, with the keys a YAML file sets replaced (unknown keys are an error)."""
    values = dict(DEFAULT_TEMPLATES)
    if path:
        try:
            data = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
        except yaml.YAMLError as err:
            raise ConfigError(f"{path}: not valid YAML: {err}") from None
        if not isinstance(data, dict):
            raise ConfigError(f"{path}: a template file is a mapping of {sorted(DEFAULT_TEMPLATES)} to text")
        unknown = sorted(set(data) - set(DEFAULT_TEMPLATES))
        if unknown:
            raise ConfigError(f"{path}: unknown template keys {unknown}; known: {sorted(DEFAULT_TEMPLATES)}")
        for key, text in data.items():
            if not isinstance(text, str):
                raise ConfigError(f"{path}: {key} must be text")
            values[key] = text
    templates = Templates(**values)
    kinds: tuple[QuestionKind, ...] = ("pairwise", "ranking", "rating", "score")
    for kind in kinds:
        try:
            templates.messages(kind, "p", ["x"] if kind in ("rating", "score") else ["x", "y"], "c")
        except (KeyError, IndexError, ValueError) as err:
            raise ConfigError(f"{path or 'default'}: template {kind!r} has a bad placeholder: {err}") from None
    return templates
