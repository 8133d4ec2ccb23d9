"""What every task type is made of: `TaskType`, the context answers are checked against, shared checks.

A task type is one module of this package that builds one `TaskType`: how an answer ("payload") is
validated and stored, how the HTML form encodes it, which training records it yields, how the
simulated panel answers it, and how quality control compares two answers. The functions of a type
only see the small views defined here (`ShownTask`, `ItemAnswers`, `SimulatedAnnotator`), never the
store or the loop, so a task type can be read, tested and added on its own.

Payloads are canonical: responses are named by their database id (never by the display letter, since
the A/B order is randomized per annotator), and a dict keyed by response uses the id as a string
(JSON object keys are strings). Every payload may also carry harm ``"flags"`` and a ``"comment"``
(`common_answer`).
"""

from __future__ import annotations

import re
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol, TypeAlias

from starlette.datastructures import FormData

from rlhfkit.data.records import Choice, Demonstration, Record, RecordKind
from rlhfkit.feedback.aggregate import Aggregator
from rlhfkit.feedback.errors import Invalid, TooLarge

HARM_LABELS = (
    "violence",
    "self_harm",
    "sexual",
    "hate",
    "harassment",
    "illegal",
    "privacy",
    "misinformation",
)
"""Harm flags an annotator can raise on any response, whatever the task type."""

AlphaMetric: TypeAlias = Literal["nominal", "ordinal", "interval", "ratio"]
"""Difference functions of Krippendorff's alpha (`rlhfkit.feedback.agreement`)."""


@dataclass(frozen=True)
class TaskContext:
    """What a payload is validated against."""

    response_ids: tuple[int, ...]
    """Valid response references, in canonical order (database ids, or indices for gold imports)."""
    aspects: tuple[str, ...] = ()
    """Per-aspect Likert scales enabled for the project (besides "overall")."""
    max_text_chars: int = 20_000
    """Longest accepted free text (critique, rewrite, demonstration, comment)."""

    def __post_init__(self) -> None:
        if len(set(self.response_ids)) != len(self.response_ids):
            raise ValueError("response_ids must be distinct")
        if self.max_text_chars < 1:
            raise ValueError(f"max_text_chars must be >= 1, got {self.max_text_chars}")


# ------------------------------------------------------------------ what task types read


class ShownResponse(Protocol):
    """A candidate response as an annotator sees it (`rlhfkit.feedback.entities.ResponseView`)."""

    @property
    def id(self) -> int: ...

    @property
    def text(self) -> str: ...


class ShownTask(Protocol):
    """A task as handed to an annotator (`rlhfkit.feedback.entities.TaskView` is one).

    A Protocol rather than the entity itself: the entities module validates task type names against
    the registry, so the task types must not import it back.
    """

    @property
    def prompt(self) -> Any: ...

    @property
    def responses(self) -> Sequence[ShownResponse]: ...

    @property
    def aspects(self) -> tuple[str, ...]: ...


class SimulatedAnnotator(Protocol):
    """Judgments a simulated panel gives (`rlhfkit.loop.annotators.SimulatedPanel` is one).

    Defined here and implemented by the loop, so the feedback app never imports the loop. `who`
    names the panel member answering.
    """

    def judge_pair(self, prompt: str, a: str, b: str, who: str) -> Choice:
        """The member's choice between responses `a` and `b`."""
        ...

    def rank(self, prompt: str, responses: list[str], who: str) -> list[int]:
        """Indices of `responses`, best first."""
        ...

    def rate(self, prompt: str, response: str, who: str) -> int:
        """A rating on the 1-7 Likert scale."""
        ...


@dataclass(frozen=True)
class ItemAnswers:
    """An item with the answers given to it (canonical payloads): what export builders read."""

    item_id: int
    """Database id."""
    task_type: str
    """Task type of the item."""
    prompt: Any
    """Prompt text or conversation."""
    refs: tuple[int, ...]
    """Response ids in canonical order."""
    texts: dict[int, str]
    """Response id -> text."""
    answers: tuple[tuple[str, dict[str, Any]], ...]
    """(annotator name, payload) per judgment, oldest first."""

    def payloads(self) -> list[dict[str, Any]]:
        """The answers without their annotators."""
        return [payload for _, payload in self.answers]


Normalizer: TypeAlias = Callable[[Any, TaskContext], dict[str, Any]]
"""Validate an answer and return its canonical form (raises Invalid / TooLarge)."""
FormReader: TypeAlias = Callable[[FormData, ShownTask], dict[str, Any]]
"""HTML form fields -> the answer they encode (validated afterwards by the normalizer)."""
Builder: TypeAlias = Callable[[ItemAnswers, Aggregator], list[Record]]
"""An item's answers -> training records of one kind (free-text builders: one per answer)."""
SimulatedAnswer: TypeAlias = Callable[[SimulatedAnnotator, ShownTask, str], dict[str, Any]]
"""(panel, task, member name) -> the member's canonical answer."""
UnitFn: TypeAlias = Callable[[dict[str, Any], tuple[int, ...]], dict[str, Any]]
"""(canonical answer, the item's response ids) -> {unit name: value}."""
Remapper: TypeAlias = Callable[[dict[str, Any], Mapping[int, int]], dict[str, Any]]
"""Rename the response references of a canonical answer (gold answers are imported by position)."""


# ------------------------------------------------------------------ shared checks


def as_object(payload: Any) -> dict[str, Any]:
    """The payload, if it is a JSON object."""
    if not isinstance(payload, dict):
        raise Invalid("the answer must be a JSON object")
    return payload


def response_ref(value: Any, ctx: TaskContext, what: str) -> int:
    """A reference to one of the task's responses, as an int."""
    # JSON sends ids as numbers, HTML forms as text: accept 12 and "12", never True or 1.5.
    if isinstance(value, int) and not isinstance(value, bool):
        ref = value
    elif isinstance(value, str) and re.fullmatch(r"[0-9]{1,19}", value.strip()):
        # ASCII digits only: '²'.isdigit() is True but int('²') raises (a 500 before).
        ref = int(value)
    else:
        raise Invalid(f"{what}: {value!r} is not a response of this task")
    if ref not in ctx.response_ids:
        raise Invalid(f"{what}: {value!r} is not a response of this task")
    return ref


def answer_text(value: Any, ctx: TaskContext, what: str, *, allow_empty: bool = False) -> str:
    """Free text within the size limit, with Windows line ends made Unix ones."""
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text")
    if len(value) > ctx.max_text_chars:
        raise TooLarge(f"{what} is {len(value)} characters; the limit is {ctx.max_text_chars}")
    text = value.replace("\r\n", "\n")
    if not allow_empty and not text.strip():
        raise Invalid(f"{what} must not be empty")
    return text


def harm_flags(value: Any, ctx: TaskContext) -> dict[str, list[str]]:
    """``{"id": [label, ...]}`` with known labels, sorted; responses without a flag are left out."""
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("flags must be an object {response: [label, ...]}")
    out: dict[str, list[str]] = {}
    for key, labels in value.items():
        ref = response_ref(key, ctx, "flags")
        if not isinstance(labels, list) or any(label not in HARM_LABELS for label in labels):
            raise Invalid(f"flags of response {key} must be a list drawn from {list(HARM_LABELS)}")
        if labels:
            out[str(ref)] = sorted(set(labels))
    return out


def common_answer(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """The optional fields every task type accepts: harm flags and a comment."""
    out: dict[str, Any] = {}
    flags = harm_flags(payload.get("flags"), ctx)
    if flags:
        out["flags"] = flags
    comment = payload.get("comment")
    if comment not in (None, ""):
        out["comment"] = answer_text(comment, ctx, "comment")
    return out


def form_text(form: FormData, key: str) -> str:
    """A text field of a form ('' when absent or an upload)."""
    value = form.get(key, "")
    return value if isinstance(value, str) else ""


def by_id(task: ShownTask) -> list[ShownResponse]:
    """The task's responses in canonical (id) order: simulated answers never see the display order."""
    return sorted(task.responses, key=lambda r: r.id)


def remap_keys(answer: Mapping[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    """A dict keyed by response (``{"0": ...}``) re-keyed through `mapping`."""
    return {str(mapping[int(k)]): v for k, v in answer.items()}


def remap_common(payload: dict[str, Any], mapping: Mapping[int, int]) -> dict[str, Any]:
    """The payload with its harm flags re-keyed (what every task type's remap starts from)."""
    if "flags" not in payload:
        return dict(payload)
    return {**payload, "flags": remap_keys(payload["flags"], mapping)}


def texts_as_demos(item: ItemAnswers, _agg: Aggregator) -> list[Record]:
    """One demonstration per written answer (``{"text"}``): free text is never aggregated."""
    return [Demonstration(item.prompt, p["text"]) for p in item.payloads()]


# ------------------------------------------------------------------ the definition


@dataclass(frozen=True)
class TaskType:
    """Everything of one task type; the registry (`rlhfkit.feedback.tasks.TASK_TYPES`) maps names to these."""

    name: str
    """Registry key, stored in items and judgments."""
    title: str
    """Human name shown in pages."""
    normalize: Normalizer
    """Validate an answer and return its canonical form."""
    read_form: FormReader
    """The answer an HTML task form encodes (harm flags and the comment are read for every type)."""
    template: str
    """Template of the answer widgets, included by ``task.html``."""
    shortcuts_template: str
    """Rows of the keyboard-shortcut help of this type, included by ``task.html``."""
    min_responses: int = 1
    """Fewest candidate responses an item of this type may have."""
    max_responses: int | None = None
    """Most candidate responses (None: no limit)."""
    builders: Mapping[RecordKind, Builder] = field(default_factory=dict)
    """Record kind -> builder of training records from an item's answers (kinds not listed: none)."""
    simulate: SimulatedAnswer | None = None
    """The simulated panel's answer (None: free text, the panel gives such tasks back)."""
    agreement_units: UnitFn | None = None
    """Answer -> {unit: value} compared with other annotators and gold (None: free text, no QC)."""
    agreement_tolerance: float | None = None
    """None: a unit agrees when equal to the majority; a number: when within it of the median."""
    alpha_units: UnitFn | None = None
    """Answer -> {unit: value} pooled into Krippendorff's alpha (None: not reported)."""
    alpha_metrics: tuple[AlphaMetric, ...] = ()
    """Krippendorff difference functions to report for this type."""
    remap: Remapper = remap_common
    """Rename response references in a canonical answer (position -> id for gold imports)."""
    flags_panel: bool = True
    """Offer the optional harm-flags panel beside the answer (False where the answer is the flags)."""

    def __post_init__(self) -> None:
        if self.min_responses < 0:
            raise ValueError("min_responses must be >= 0")
        if self.max_responses is not None and self.max_responses < self.min_responses:
            raise ValueError("max_responses must be >= min_responses")

    def check_response_count(self, count: int) -> None:
        """Raise Invalid when an item has a number of responses this type cannot use."""
        if count < self.min_responses or (self.max_responses is not None and count > self.max_responses):
            upper = "any number" if self.max_responses is None else str(self.max_responses)
            raise Invalid(f"a {self.name} item needs {self.min_responses}..{upper} responses, got {count}")
