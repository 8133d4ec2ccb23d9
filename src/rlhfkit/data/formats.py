"""Row -> record parsing: one small function per input format, the format detected per row.

Accepted formats (a file may mix them; each row is detected on its own keys):

=====================================  ==============================================  ============
format                                 keys                                            native kind
=====================================  ==============================================  ============
rlhfkit prompts / TRL prompt-only      ``prompt`` (text or conversation)               prompts
rlhfkit demos                          ``prompt, response``                            demos
TRL prompt-completion                  ``prompt, completion`` (text or conversational) demos
TRL language modeling                  ``text``                                        demos
TRL conversational language modeling   ``messages``                                    demos
rlhfkit pairs / TRL preference         ``prompt, chosen, rejected, margin?, tie?``     pairs
                                       (``ref_chosen_logps?, ref_rejected_logps?``)
TRL implicit-prompt preference         ``chosen, rejected`` (text or conversational)   pairs
HH-RLHF dialogue                       ``chosen, rejected`` (``"\\n\\nHuman: ..."``)   pairs
rlhfkit rankings                       ``prompt, responses`` (best first)              rankings
rlhfkit ratings                        ``prompt, response, rating, scale?, aspects?``  ratings
=====================================  ==============================================  ============

In rlhfkit's own formats a prompt is text or a conversation (``[{"role", "content"}, ...]``) and
responses are always text; TRL's conversational formats hold each response as a list with one
assistant message instead. Messages keep only ``role`` (system, user or assistant) and ``content``.

TRL's unpaired preference format (``prompt, completion, label``, for KTO) is rejected with a
`DataError`: rlhfkit's reward models and DPO need paired responses.

Conversions, applied only where unambiguous: any kind loads as ``"prompts"`` (its prompt); pairs
load as ``"demos"`` (SFT on the chosen side). Rankings and ratings are never turned into pairs here:
that choice (all K(K-1)/2 pairs, margins from rating gaps...) belongs to the training collators.

Language-modeling rows (``{"text"}``) become demonstrations with prompt ``""``: the whole text is the
response, so SFT trains on every token (there is no prompt to mask). Such rows have no prompt and so
cannot be loaded as ``"prompts"``.

Every row is fully validated in its own format before conversion, so an invalid pair is invalid
whether it is loaded as pairs, demos or prompts.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any, NoReturn, get_args

import rlhfkit.data.fields as f
from rlhfkit.data.fields import Row, RowContext
from rlhfkit.data.hh import common_prefix, looks_like_dialogue, split_dialogues
from rlhfkit.data.records import (
    Comparison,
    Demonstration,
    Prompt,
    PromptText,
    Ranking,
    Rating,
    Record,
    RecordKind,
)

REF_COLUMNS = ("ref_chosen_logps", "ref_rejected_logps")
"""TRL's columns of precomputed reference log-probs (``DPOConfig(precompute_ref_log_probs=True)``)."""

KINDS: tuple[RecordKind, ...] = get_args(RecordKind)
"""Every record kind a loader can be asked for."""

_NEEDS: dict[RecordKind, tuple[str, ...]] = {
    "prompts": ("prompt",),
    "demos": ("response", "prompt"),
    "pairs": ("chosen", "rejected", "prompt"),
    "rankings": ("responses", "prompt"),
    "ratings": ("rating", "response", "prompt"),
}
"""Canonical fields of each kind, the kind-specific ones first (they are what a wrong row lacks)."""


# ---- shared pieces ----------------------------------------------------------------------------


def _reply(row: Row, key: str, prompt: PromptText, ctx: RowContext) -> str:
    """A response next to an explicit prompt: text (rlhfkit, TRL standard) or, after a conversation
    prompt, also a list holding one assistant message (TRL conversational)."""
    value = f.require(row, key, ctx)
    if not isinstance(value, list):
        return f.check_text(value, key, ctx)
    if not isinstance(prompt, list):
        raise ctx.error(key, "a conversational response needs a conversational 'prompt'", "wrong type")
    return f.assistant_reply(value, key, ctx)


def _comparison(prompt: PromptText, chosen: str, rejected: str, row: Row, ctx: RowContext) -> Comparison:
    f.distinct(chosen, rejected, ctx)
    margin = None
    if f.has(row, "margin"):
        margin = f.check_number(row["margin"], "margin", ctx)
        if margin < 0:
            message = f"margin must be >= 0 (how much better chosen is), got {margin:g}"
            raise ctx.error("margin", message, "invalid value")
    tie = f.optional_bool(row, "tie", ctx, default=False)
    return Comparison(
        prompt, chosen, rejected, margin=margin, tie=tie, source=ctx.source, ref_logps=_ref_logps(row, ctx)
    )


def _ref_logps(row: Row, ctx: RowContext) -> tuple[float, float] | None:
    """TRL's precomputed reference log-probs (both columns, or neither)."""
    present = [key for key in REF_COLUMNS if f.has(row, key)]
    if not present:
        return None
    if len(present) == 1:
        missing = REF_COLUMNS[1 - REF_COLUMNS.index(present[0])]
        raise ctx.error(missing, f"missing field (a row with {present[0]} needs both)", "missing field")
    chosen, rejected = (f.check_number(row[key], key, ctx) for key in REF_COLUMNS)
    return chosen, rejected


def _scale(row: Row, ctx: RowContext) -> tuple[float, float]:
    if not f.has(row, "scale"):
        return ctx.rating_scale
    value = row["scale"]
    if not isinstance(value, list | tuple) or len(value) != 2:
        raise ctx.error("scale", f"expected [low, high], got {value!r}", "invalid scale")
    low, high = (f.check_number(v, "scale", ctx) for v in value)
    if not low < high:
        raise ctx.error("scale", f"expected low < high, got [{low:g}, {high:g}]", "invalid scale")
    return low, high


def _aspects(row: Row, ctx: RowContext) -> dict[str, float] | None:
    if not f.has(row, "aspects"):
        return None
    value = row["aspects"]
    if not isinstance(value, dict):
        message = f"expected an object of name: number, got {type(value).__name__}"
        raise ctx.error("aspects", message, "wrong type")
    return {str(name): f.check_number(v, f"aspects.{name}", ctx) for name, v in value.items()}


# ---- one parser per format --------------------------------------------------------------------


def parse_prompt_only(row: Row, ctx: RowContext) -> Prompt:
    return Prompt(f.prompt(row, "prompt", ctx), source=ctx.source)


def parse_demonstration(row: Row, ctx: RowContext) -> Demonstration:
    prompt = f.prompt(row, "prompt", ctx)
    return Demonstration(prompt, _reply(row, "response", prompt, ctx), source=ctx.source)


def parse_prompt_completion(row: Row, ctx: RowContext) -> Demonstration:
    prompt = f.prompt(row, "prompt", ctx)
    return Demonstration(prompt, _reply(row, "completion", prompt, ctx), source=ctx.source)


def parse_language_modeling(row: Row, ctx: RowContext) -> Demonstration:
    return Demonstration("", f.text(row, "text", ctx), source=ctx.source)


def parse_messages(row: Row, ctx: RowContext) -> Demonstration:
    """Prompt = every message before the final assistant message; response = its content."""
    messages = f.check_messages(f.require(row, "messages", ctx), "messages", ctx)
    prompt, response = f.final_assistant(messages, "messages", ctx)
    return Demonstration(prompt, response, source=ctx.source)


def parse_preference(row: Row, ctx: RowContext) -> Comparison:
    prompt = f.prompt(row, "prompt", ctx)
    chosen = _reply(row, "chosen", prompt, ctx)
    rejected = _reply(row, "rejected", prompt, ctx)
    return _comparison(prompt, chosen, rejected, row, ctx)


def parse_implicit_text(row: Row, ctx: RowContext) -> Comparison:
    """Prompt = the longest common prefix of the two texts (character by character)."""
    chosen, rejected = f.text(row, "chosen", ctx), f.text(row, "rejected", ctx)
    f.distinct(chosen, rejected, ctx)
    prompt = common_prefix(chosen, rejected)
    if not prompt.strip():
        message = "chosen and rejected share no common prefix to use as the prompt"
        raise ctx.error("prompt", message, "no common prompt")
    n = len(prompt)
    return _comparison(
        prompt, f.check_text(chosen[n:], "chosen", ctx), f.check_text(rejected[n:], "rejected", ctx), row, ctx
    )


def parse_implicit_conversation(row: Row, ctx: RowContext) -> Comparison:
    """Prompt = the shared leading messages; responses = the two final assistant messages."""
    chosen = f.check_messages(f.require(row, "chosen", ctx), "chosen", ctx)
    rejected = f.check_messages(f.require(row, "rejected", ctx), "rejected", ctx)
    prompt, chosen_reply = f.final_assistant(chosen, "chosen", ctx)
    rejected_prompt, rejected_reply = f.final_assistant(rejected, "rejected", ctx)
    if prompt != rejected_prompt:
        raise ctx.error(
            "rejected",
            "chosen and rejected conversations differ before their final assistant message",
            "mismatched conversations",
        )
    return _comparison(prompt, chosen_reply, rejected_reply, row, ctx)


def parse_hh_dialogue(row: Row, ctx: RowContext) -> Comparison:
    prompt, chosen, rejected = split_dialogues(f.text(row, "chosen", ctx), f.text(row, "rejected", ctx), ctx)
    chosen = f.check_text(chosen, "chosen", ctx)
    rejected = f.check_text(rejected, "rejected", ctx)
    return _comparison(prompt, chosen, rejected, row, ctx)


def parse_ranking(row: Row, ctx: RowContext) -> Ranking:
    prompt = f.prompt(row, "prompt", ctx)
    value = f.require(row, "responses", ctx)
    if not isinstance(value, list | tuple):
        message = f"expected a list of responses, got {type(value).__name__}"
        raise ctx.error("responses", message, "wrong type")
    responses = [f.check_text(item, f"responses[{i}]", ctx) for i, item in enumerate(value)]
    if len(responses) < 2:
        message = f"a ranking needs at least two responses, got {len(responses)}"
        raise ctx.error("responses", message, "too few responses")
    first_at: dict[str, int] = {}
    for i, response in enumerate(responses):
        j = first_at.setdefault(response.strip(), i)
        if j != i:
            raise ctx.error(f"responses[{i}]", f"duplicate of responses[{j}]", "duplicate responses")
    return Ranking(prompt, tuple(responses), source=ctx.source)


def parse_rating(row: Row, ctx: RowContext) -> Rating:
    prompt = f.prompt(row, "prompt", ctx)
    response = f.text(row, "response", ctx)
    rating = f.check_number(f.require(row, "rating", ctx), "rating", ctx)
    low, high = _scale(row, ctx)
    if not low <= rating <= high:
        message = f"rating {rating:g} outside the scale [{low:g}, {high:g}]"
        raise ctx.error("rating", message, "rating outside scale")
    return Rating(prompt, response, rating, (low, high), _aspects(row, ctx), source=ctx.source)


def parse_unpaired(row: Row, ctx: RowContext) -> NoReturn:
    raise ctx.error(
        "label",
        "TRL's unpaired preference format (prompt, completion, label; used by KTO) is not supported: "
        "rlhfkit needs paired chosen/rejected responses",
        "unsupported format",
    )


def parse_half_pair(row: Row, ctx: RowContext) -> NoReturn:
    missing = "rejected" if f.has(row, "chosen") else "chosen"
    raise ctx.error(missing, "missing field", "missing field")


# ---- detection --------------------------------------------------------------------------------


@dataclass(frozen=True)
class RowFormat:
    """One accepted input format."""

    name: str
    """Human-readable name, used in error messages."""
    key: str
    """The field that identifies the format, named in errors about the row as a whole."""
    matches: Callable[[Row], bool]
    """Whether a row is in this format (tried in table order; the first match wins)."""
    parse: Callable[[Row, RowContext], Record]
    """Validates the row and builds its native record (or raises: formats with no `kinds`)."""
    kinds: tuple[RecordKind, ...]
    """Kinds this format can be loaded as: its native kind, then the allowed conversions."""


def _keys(*keys: str) -> Callable[[Row], bool]:
    """Predicate: the row has every one of `keys`."""
    return lambda row: all(f.has(row, key) for key in keys)


def _implicit(row: Row) -> bool:
    return not f.has(row, "prompt") and f.has(row, "chosen") and f.has(row, "rejected")


def _implicit_dialogue(row: Row) -> bool:
    return _implicit(row) and looks_like_dialogue(row["chosen"])


def _implicit_conversation(row: Row) -> bool:
    return _implicit(row) and isinstance(row["chosen"], list)


def _half_pair(row: Row) -> bool:
    return f.has(row, "chosen") != f.has(row, "rejected")


_PAIRS: tuple[RecordKind, ...] = ("pairs", "demos", "prompts")
_DEMOS: tuple[RecordKind, ...] = ("demos", "prompts")

FORMATS: dict[str, RowFormat] = {
    fmt.name: fmt
    for fmt in (
        # Order matters: specific key sets before the subsets they contain.
        RowFormat("unpaired preference", "label", _keys("label", "completion"), parse_unpaired, ()),
        RowFormat("ranking", "responses", _keys("responses"), parse_ranking, ("rankings", "prompts")),
        RowFormat("rating", "rating", _keys("rating"), parse_rating, ("ratings", "prompts")),
        RowFormat("half pair", "chosen", _half_pair, parse_half_pair, ()),
        RowFormat("HH-RLHF dialogue", "chosen", _implicit_dialogue, parse_hh_dialogue, _PAIRS),
        RowFormat(
            "implicit-prompt conversational preference",
            "chosen",
            _implicit_conversation,
            parse_implicit_conversation,
            _PAIRS,
        ),
        RowFormat("implicit-prompt preference", "chosen", _implicit, parse_implicit_text, _PAIRS),
        RowFormat("preference", "chosen", _keys("chosen"), parse_preference, _PAIRS),
        RowFormat("conversational language modeling", "messages", _keys("messages"), parse_messages, _DEMOS),
        RowFormat("prompt-completion", "completion", _keys("completion"), parse_prompt_completion, _DEMOS),
        RowFormat("demonstration", "response", _keys("response"), parse_demonstration, _DEMOS),
        # No prompt to mask or to generate from: demos only (see the module docstring).
        RowFormat("language modeling", "text", _keys("text"), parse_language_modeling, ("demos",)),
        RowFormat("prompt-only", "prompt", _keys("prompt"), parse_prompt_only, ("prompts",)),
    )
}
"""Every accepted format by name, in detection order."""


def detect_format(row: Row) -> RowFormat | None:
    """The first format of `FORMATS` whose keys the row has, or None."""
    return next((fmt for fmt in FORMATS.values() if fmt.matches(row)), None)


# ---- conversion -------------------------------------------------------------------------------


def _same(record: Any) -> Record:
    return record


def _prompt_of(record: Demonstration | Comparison | Ranking | Rating) -> Prompt:
    return Prompt(record.prompt, source=record.source)


def _chosen_demo(record: Comparison) -> Demonstration:
    return Demonstration(record.prompt, record.chosen, source=record.source)


CONVERSIONS: dict[tuple[type, RecordKind], Callable[[Any], Record]] = {
    (Prompt, "prompts"): _same,
    (Demonstration, "demos"): _same,
    (Demonstration, "prompts"): _prompt_of,
    (Comparison, "pairs"): _same,
    (Comparison, "demos"): _chosen_demo,
    (Comparison, "prompts"): _prompt_of,
    (Ranking, "rankings"): _same,
    (Ranking, "prompts"): _prompt_of,
    (Rating, "ratings"): _same,
    (Rating, "prompts"): _prompt_of,
}
"""(native record type, requested kind) -> conversion; a missing entry is not allowed."""


def _wrong_kind(row: Row, kind: RecordKind, fmt: RowFormat | None, ctx: RowContext) -> Exception:
    keys = ", ".join(sorted(k for k in row if f.has(row, k))) or "none"
    missing = [key for key in _NEEDS[kind] if not f.has(row, key)]
    field = missing[0] if missing else (fmt.key if fmt else "prompt")
    if fmt is None:
        message = f"missing field '{field}': no known row format has keys: {keys}"
        return ctx.error(field, message, "missing field")
    loads_as = " or ".join(fmt.kinds)
    scored = fmt.key in ("responses", "rating")
    note = "; collators turn rankings and ratings into pairs" if kind == "pairs" and scored else ""
    lead = f"missing field '{field}': " if missing else ""
    return ctx.error(
        field,
        f"{lead}a {fmt.name} row (keys: {keys}) loads as {loads_as}, not as {kind}{note}",
        "missing field" if missing else "unsupported conversion",
    )


def parse_row(row: Row, kind: RecordKind, ctx: RowContext) -> Record:
    """The record of `kind` that one row holds, or a `DataError` located at ``ctx.source``."""
    if kind not in KINDS:
        raise ValueError(f"unknown record kind {kind!r}; expected one of {', '.join(KINDS)}")
    fmt = detect_format(row)
    if fmt is None or (fmt.kinds and kind not in fmt.kinds):
        raise _wrong_kind(row, kind, fmt, ctx)
    record = fmt.parse(row, ctx)  # formats without kinds always raise here
    return CONVERSIONS[(type(record), kind)](record)
