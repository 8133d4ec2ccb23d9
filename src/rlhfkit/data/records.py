"""Typed records: the unit of data every layer of rlhfkit passes around.

A record is plain text, never tokens: tokenization belongs to the collators, because the same
comparison is tokenized differently for a reward model and for a DPO policy.

`prompt` is either a string or a conversation (a list of ``{"role", "content"}`` messages, the
format of TRL's conversational datasets). Responses are always the assistant's text for the final
turn. The JSONL forms written by `to_json` are the canonical rlhfkit formats; loaders also accept
TRL's standard and conversational formats and the HH-RLHF dialogue format.
"""

from __future__ import annotations

from dataclasses import asdict, dataclass, field
from typing import Any, Literal, TypeAlias

Message: TypeAlias = dict[str, str]
"""One chat message: ``{"role": "user" | "assistant" | "system", "content": str}``."""

PromptText: TypeAlias = str | list[Message]
"""A prompt: plain text, or a conversation whose last message is the user's turn."""


@dataclass(frozen=True)
class Source:
    """Where a record came from, so that errors and reports can name it (file and 1-based line)."""

    path: str
    line: int

    def __str__(self) -> str:
        return f"{self.path}:{self.line}"


@dataclass(frozen=True)
class Prompt:
    """A prompt to generate from. JSONL: ``{"prompt": ...}``."""

    prompt: PromptText
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Demonstration:
    """A prompt with a desired response, for SFT. JSONL: ``{"prompt": ..., "response": ...}``."""

    prompt: PromptText
    response: str
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Comparison:
    """A pairwise judgment. JSONL: ``{"prompt", "chosen", "rejected", "margin"?, "tie"?, "ref_chosen_logps"?,
    "ref_rejected_logps"?}``.

    `margin` is how much better `chosen` is (e.g. from a Likert gap, Llama-2 style); `tie` says the
    annotator judged the two equally good, in which case "chosen"/"rejected" carry no order.
    """

    prompt: PromptText
    chosen: str
    rejected: str
    margin: float | None = None
    tie: bool = False
    source: Source | None = field(default=None, compare=False, repr=False)
    ref_logps: tuple[float, float] | None = None
    """Precomputed reference log-probs of (chosen, rejected), summed over each response's tokens (TRL's
    ``ref_chosen_logps`` / ``ref_rejected_logps`` columns); DPO uses them instead of a reference pass."""


@dataclass(frozen=True)
class Ranking:
    """A K-way ranking, best first. JSONL: ``{"prompt": ..., "responses": [best, ..., worst]}``."""

    prompt: PromptText
    responses: tuple[str, ...]
    source: Source | None = field(default=None, compare=False, repr=False)


@dataclass(frozen=True)
class Rating:
    """A scalar rating of one response on a declared scale.

    JSONL: ``{"prompt", "response", "rating", "scale"?: [low, high], "aspects"?: {name: value}}``.
    """

    prompt: PromptText
    response: str
    rating: float
    scale: tuple[float, float] = (1.0, 7.0)
    aspects: dict[str, float] | None = None
    source: Source | None = field(default=None, compare=False, repr=False)


Record: TypeAlias = Prompt | Demonstration | Comparison | Ranking | Rating
RecordKind: TypeAlias = Literal["prompts", "demos", "pairs", "rankings", "ratings"]

Choice: TypeAlias = Literal["a", "b", "tie"]
"""A judge's verdict on two responses: the first ("a"), the second ("b"), or neither ("tie").

Defined with the records because every judge speaks it: simulated annotators, the feedback app's
comparison projects, win rates and leaderboards."""

KIND_OF: dict[type, RecordKind] = {
    Prompt: "prompts",
    Demonstration: "demos",
    Comparison: "pairs",
    Ranking: "rankings",
    Rating: "ratings",
}


def to_json(record: Record) -> dict[str, Any]:
    """The canonical JSONL object of a record (without its source)."""
    out = {k: v for k, v in asdict(record).items() if k != "source"}
    if isinstance(record, Ranking):
        out["responses"] = list(record.responses)
    if isinstance(record, Rating):
        out["scale"] = list(record.scale)
        if record.aspects is None:
            del out["aspects"]
    if isinstance(record, Comparison):
        if record.margin is None:
            del out["margin"]
        if not record.tie:
            del out["tie"]
        ref = out.pop("ref_logps")
        if ref is not None:
            out["ref_chosen_logps"], out["ref_rejected_logps"] = ref
    return out


def prompt_text(prompt: PromptText) -> str:
    """A readable one-string view of a prompt (for reports, keys and logs, never for the model)."""
    if isinstance(prompt, str):
        return prompt
    return "\n".join(f"{m['role']}: {m['content']}" for m in prompt)
