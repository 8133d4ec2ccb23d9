"""Comparison projects: people judge two systems' responses to the same prompts, pair by pair.

`rlhfkit eval --judge app:DBURL#PROJECT` (`rlhfkit.loop.compare`) uses this side of the app: it
creates PROJECT as pairwise items (the first system's response at position 0, the second's at 1; the
app shows them in a random order per annotator and records it), then reads the judgments back as one
verdict per item: "a" (first), "b" (second) or "tie". Turning verdicts into a win rate is the
evaluation's business, not the app's.
"""

from __future__ import annotations

import secrets
from collections import Counter
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from rlhfkit.data.records import Choice, PromptText
from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.errors import NotFound
from rlhfkit.feedback.store import FeedbackStore

COMPARISON_ACCOUNT = "rlhfkit-eval"
"""Admin account (random password, never used to log in) under which comparison projects are created."""

GUIDELINES = "Which response answers the prompt better? Choose tie if they are equally good."
"""What annotators of a comparison project are told."""


@dataclass(frozen=True)
class Side:
    """One system of a comparison: its name and its responses, one per prompt."""

    role: str
    """What the side is in the comparison ("policy", "baseline"): stored with each response's model."""
    name: str
    """Model name (shown in the project title, stored with each response)."""
    responses: Sequence[str]
    """Its response to each prompt, in prompt order."""


@dataclass(frozen=True)
class Verdicts:
    """What people have said so far in a comparison project."""

    outcomes: list[Choice]
    """One verdict per judged item, in item order: "a" (first side), "b" (second side) or "tie"."""
    pending: int
    """Items nobody has judged yet."""


def has_project(store: FeedbackStore, project: str) -> bool:
    """Whether `project` exists (a comparison is created once and collected any number of times)."""
    try:
        store.project(project)
    except NotFound:
        return False
    return True


def _admin_id(store: FeedbackStore) -> int:
    """The id of `COMPARISON_ACCOUNT`, created with a random password if missing."""
    try:
        return store.user(COMPARISON_ACCOUNT).id
    except NotFound:
        return store.create_user(COMPARISON_ACCOUNT, "admin", secrets.token_urlsafe(24)).id


def create_comparison_project(
    store: FeedbackStore, project: str, prompts: Sequence[PromptText], first: Side, second: Side, *, overlap: int = 1
) -> int:
    """Create `project` with one pairwise item per prompt (`first` at position 0); returns the item count."""
    admin_id = _admin_id(store)
    store.create_project(
        ProjectSpec(
            name=project,
            task_type="pairwise",
            overlap=overlap,
            guidelines=GUIDELINES,
            title=f"{first.name} vs {second.name}",
        ),
        by_user=admin_id,
    )
    items = [
        NewItem(
            prompt=p,
            responses=(a, b),
            external_id=f"cmp-{i:05d}",
            models=(f"{first.role}:{first.name}", f"{second.role}:{second.name}"),
        )
        for i, (p, a, b) in enumerate(zip(prompts, first.responses, second.responses, strict=True))
    ]
    return len(store.add_items(project, items, by_user=admin_id, source="eval"))


def item_outcome(choices: list[Any], first_id: int, second_id: int) -> Choice:
    """Majority of an item's pairwise answers as "a" (first), "b" (second) or "tie" (tie, both bad, split)."""
    votes = Counter("a" if c == first_id else "b" if c == second_id else "tie" for c in choices)
    if votes["a"] > votes["b"]:
        return "a"
    return "b" if votes["b"] > votes["a"] else "tie"


def collect_verdicts(store: FeedbackStore, project: str) -> Verdicts:
    """The verdict of every item judged so far (gold items left out), and how many await a judgment."""
    by_item: dict[int, list[Any]] = {}
    for j in store.judgments(project):
        if not j["gold"]:
            by_item.setdefault(j["item_id"], []).append(j["payload"].get("choice"))
    outcomes = []
    for item_id, choices in sorted(by_item.items()):
        first, second = sorted(store.item(item_id)["responses"], key=lambda r: r["position"])
        outcomes.append(item_outcome(choices, first["id"], second["id"]))
    return Verdicts(outcomes, store.progress(project).items - len(outcomes))
