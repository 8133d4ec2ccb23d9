"""Plain, immutable records of stored rows: what the store returns (never live ORM objects).

The SQLAlchemy tables these are read from live in `rlhfkit.feedback.tables`; callers outside the store
only ever see these frozen dataclasses, so a session closing never invalidates what they hold.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from typing import Any

from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.tasks import TASK_TYPES
from rlhfkit.feedback.tasks.likert import DEFAULT_ASPECTS

NAME_PATTERN = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,63}\Z")
"""User and project names: 1-64 characters, letters, digits, ``_ . -``, not starting with a symbol
(``\\Z``, not ``$``: a trailing newline is not a name)."""


def check_name(name: str, what: str) -> str:
    """Validate a user or project name (raises Invalid)."""
    if not isinstance(name, str) or not NAME_PATTERN.match(name):
        raise Invalid(f"{what} must be 1-64 characters of letters, digits, '_', '.', '-' (got {name!r})")
    return name


@dataclass(frozen=True)
class UserView:
    """An account."""

    id: int
    """Database id."""
    name: str
    """Login name."""
    role: str
    """``admin`` or ``annotator``."""
    active: bool = True
    """Deactivated accounts cannot log in."""

    @property
    def is_admin(self) -> bool:
        return self.role == "admin"


@dataclass(frozen=True)
class SessionView:
    """A live login."""

    user: UserView
    """Who is logged in."""
    csrf_token: str
    """Token that cookie-authenticated unsafe requests must echo (header or form field)."""
    kind: str
    """``web`` (cookie) or ``api`` (bearer token)."""


@dataclass(frozen=True)
class ProjectSpec:
    """What an admin chooses when creating a project."""

    name: str
    """URL-safe unique name (used in ``DBURL#NAME`` and the CLI)."""
    task_type: str = "pairwise"
    """Default task type of imported items (see `rlhfkit.feedback.tasks.TASK_TYPES`)."""
    title: str = ""
    """Human title (defaults to the name)."""
    guidelines: str = ""
    """Markdown shown beside every task."""
    overlap: int = 3
    """Judgments wanted per item, each from a distinct annotator (N)."""
    aspects: tuple[str, ...] = ()
    """Extra Likert scales besides "overall" (e.g. helpfulness, harmlessness, honesty)."""
    lock_ttl_s: int = 1800
    """Seconds an annotator holds an item before it returns to the pool."""
    gold_rate: float = 0.0
    """Fraction of an annotator's tasks drawn from gold items (when gold items exist)."""
    members_only: bool = False
    """Only the annotators an admin made members see the project (`rlhfkit.feedback.members`)."""

    def __post_init__(self) -> None:
        check_name(self.name, "project name")
        if self.task_type not in TASK_TYPES:
            raise Invalid(f"unknown task type {self.task_type!r}; choose one of {sorted(TASK_TYPES)}")
        if not 1 <= self.overlap <= 100:
            raise Invalid(f"overlap must be between 1 and 100, got {self.overlap}")
        if not 10 <= self.lock_ttl_s <= 7 * 24 * 3600:
            raise Invalid(f"lock_ttl_s must be between 10 s and 7 days, got {self.lock_ttl_s}")
        if not 0.0 <= self.gold_rate <= 1.0:
            raise Invalid(f"gold_rate must be in [0, 1], got {self.gold_rate}")
        if len(self.title) > 200:
            raise Invalid("title must be at most 200 characters")
        if len(self.guidelines) > 200_000:
            raise Invalid("guidelines must be at most 200,000 characters")
        bad = [a for a in self.aspects if a not in DEFAULT_ASPECTS]
        if bad:
            raise Invalid(f"unknown aspect(s) {bad}; choose from {list(DEFAULT_ASPECTS)}")
        if len(set(self.aspects)) != len(self.aspects):
            raise Invalid("aspects must be distinct")


@dataclass(frozen=True)
class ProjectView:
    """A stored project."""

    id: int
    """Database id."""
    name: str
    """Unique name."""
    title: str
    """Human title."""
    guidelines: str
    """Markdown guidelines."""
    task_type: str
    """Default task type."""
    overlap: int
    """Judgments per item (N)."""
    aspects: tuple[str, ...]
    """Extra Likert scales."""
    lock_ttl_s: int
    """Lock lifetime in seconds."""
    gold_rate: float
    """Share of gold tasks."""
    members_only: bool = False
    """Visible only to its members (and admins)."""


@dataclass(frozen=True)
class NewItem:
    """An item to add: a prompt, its candidate responses, and optionally a gold answer.

    `gold` uses the canonical payload of the task type with responses named by their 0-based
    position in `responses` (e.g. pairwise ``{"choice": 0}``).
    """

    prompt: Any
    """Plain text or a conversation (list of {"role", "content"})."""
    responses: tuple[str, ...] = ()
    """Candidate responses, in canonical order."""
    task_type: str | None = None
    """Task type (None: the project's)."""
    gold: dict[str, Any] | None = None
    """Known answer; makes this a gold item used for quality control."""
    external_id: str | None = None
    """Caller's id (unique per project) so imports can be traced back."""
    models: tuple[str | None, ...] = ()
    """Which model wrote each response (optional, same length as responses)."""

    def __post_init__(self) -> None:
        if self.models and len(self.models) != len(self.responses):
            raise Invalid("models must name one model per response")
        if self.external_id is not None and len(self.external_id) > 200:
            raise Invalid("id must be at most 200 characters")


@dataclass(frozen=True)
class ResponseView:
    """A candidate response as shown to an annotator."""

    id: int
    """Database id: what answers refer to."""
    label: str
    """Display label in this annotator's order (A, B, C...)."""
    text: str
    """The response text (always rendered escaped)."""


@dataclass(frozen=True)
class Progress:
    """How far a project (and one annotator in it) has come."""

    items: int
    """Non-gold items in the project."""
    complete_items: int
    """Items that have all their judgments."""
    judgments: int
    """Judgments submitted on non-gold items."""
    required_judgments: int
    """Judgments needed in total (sum of N over items)."""
    user_done: int = 0
    """Judgments by this annotator (gold included)."""
    user_remaining: int = 0
    """Open items this annotator has not seen yet (an upper bound: others may fill them first)."""

    @property
    def fraction(self) -> float:
        return self.judgments / self.required_judgments if self.required_judgments else 1.0


@dataclass(frozen=True)
class TaskView:
    """An item handed to one annotator (a lock until `expires_at`)."""

    assignment_id: int
    """What the answer is submitted to."""
    item_id: int
    """The item."""
    project: str
    """Project name."""
    task_type: str
    """How to judge it."""
    prompt: Any
    """Prompt text or conversation."""
    responses: tuple[ResponseView, ...]
    """Candidates in this annotator's (randomized, recorded) order."""
    aspects: tuple[str, ...]
    """Likert aspects besides overall."""
    expires_at: float
    """UNIX time the lock lapses."""
    progress: Progress | None = field(default=None)
    """Progress when the task was handed out."""


@dataclass(frozen=True)
class SubmitResult:
    """Outcome of a submission."""

    judgment_id: int
    """Stored judgment."""
    duplicate: bool
    """True when this was an idempotent resubmission of an identical answer."""
