"""Task types: what an annotator is asked, what a valid answer looks like, and how answers compare.

Every answer ("payload") is stored in canonical form: responses are named by their database id
(never by the display letter, since A/B order is randomized per annotator), and a dict keyed by
response uses the id as a string (JSON object keys are strings).

==========  ===============================================================  ===================
type        payload                                                          QC
==========  ===============================================================  ===================
pairwise    ``{"choice": id | "tie" | "both_bad"}`` (exactly 2 responses)    nominal
ranking     ``{"ranking": [id_best, ..., id_worst]}`` (all K responses)       ordinal + interval
likert      ``{"ratings": {"id": {"overall": 1..7, aspect: 1..7}}}``          ordinal + interval
critique    ``{"critiques": {"id": text}}`` (at least one)                    --
rewrite     ``{"response_id": id, "text": rewritten}``                        --
demo        ``{"text": demonstration}`` (responses optional)                  --
harm        ``{"flags": {"id": [label, ...]}}`` (empty list = harmless)       nominal
==========  ===============================================================  ===================

Any payload may also carry harm ``"flags"`` (as in ``harm``) and a free-text ``"comment"``.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass
from typing import Any

from rlhfkit.feedback.errors import Invalid, TooLarge

LIKERT_SCALE = (1, 7)
"""Likert scale bounds (inclusive); the overall rating and every aspect use it."""

DEFAULT_ASPECTS = ("helpfulness", "harmlessness", "honesty")
"""Per-aspect scales a project can switch on (Askell et al. 2021, "HHH")."""

HARM_LABELS = (
    "violence", "self_harm", "sexual", "hate", "harassment", "illegal", "privacy", "misinformation",
)
"""Harm flags an annotator can raise on any response."""

PAIRWISE_OUTCOMES = ("tie", "both_bad")
"""Pairwise answers that name no winner."""


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


# ---------------------------------------------------------------------------------------- helpers


def _require_dict(payload: Any) -> dict[str, Any]:
    if not isinstance(payload, dict):
        raise Invalid("the answer must be a JSON object")
    return payload


def _ref(value: Any, ctx: TaskContext, what: str) -> int:
    # JSON sends ids as numbers, HTML forms as text: accept 12 and "12", never True or 1.5.
    if isinstance(value, int) and not isinstance(value, bool):
        ref = value
    elif isinstance(value, str) and value.strip().isdigit():
        ref = int(value)
    else:
        raise Invalid(f"{what}: {value!r} is not a response of this task")
    if ref not in ctx.response_ids:
        raise Invalid(f"{what}: {value!r} is not a response of this task")
    return ref


def _text(value: Any, ctx: TaskContext, what: str, *, allow_empty: bool = False) -> str:
    if not isinstance(value, str):
        raise Invalid(f"{what} must be text")
    if len(value) > ctx.max_text_chars:
        raise TooLarge(f"{what} is {len(value)} characters; the limit is {ctx.max_text_chars}")
    text = value.replace("\r\n", "\n")
    if not allow_empty and not text.strip():
        raise Invalid(f"{what} must not be empty")
    return text


def _likert(value: Any, what: str) -> int:
    low, high = LIKERT_SCALE
    if isinstance(value, bool) or not isinstance(value, (int, str)):
        raise Invalid(f"{what} must be an integer from {low} to {high}")
    try:
        rating = int(value)
    except ValueError:
        raise Invalid(f"{what} must be an integer from {low} to {high}") from None
    if not low <= rating <= high:
        raise Invalid(f"{what} must be an integer from {low} to {high}, got {rating}")
    return rating


def _flags(value: Any, ctx: TaskContext) -> dict[str, list[str]]:
    if value is None:
        return {}
    if not isinstance(value, dict):
        raise Invalid("flags must be an object {response: [label, ...]}")
    out: dict[str, list[str]] = {}
    for key, labels in value.items():
        ref = _ref(key, ctx, "flags")
        if not isinstance(labels, list) or any(label not in HARM_LABELS for label in labels):
            raise Invalid(f"flags of response {key} must be a list drawn from {list(HARM_LABELS)}")
        if labels:
            out[str(ref)] = sorted(set(labels))
    return out


def _common(payload: dict[str, Any], ctx: TaskContext) -> dict[str, Any]:
    """The optional fields every task type accepts: harm flags and a comment."""
    out: dict[str, Any] = {}
    flags = _flags(payload.get("flags"), ctx)
    if flags:
        out["flags"] = flags
    comment = payload.get("comment")
    if comment not in (None, ""):
        out["comment"] = _text(comment, ctx, "comment")
    return out


# ------------------------------------------------------------------------------ normalizers


def normalize_pairwise(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    choice = payload.get("choice")
    if choice in PAIRWISE_OUTCOMES:
        return {"choice": choice, **_common(payload, ctx)}
    return {"choice": _ref(choice, ctx, "choice"), **_common(payload, ctx)}


def normalize_ranking(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    ranking = payload.get("ranking")
    if not isinstance(ranking, list):
        raise Invalid("ranking must be a list of responses, best first")
    refs = [_ref(r, ctx, "ranking") for r in ranking]
    if sorted(refs) != sorted(ctx.response_ids):
        raise Invalid("ranking must order every response of the task exactly once")
    return {"ranking": refs, **_common(payload, ctx)}


def normalize_likert(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    ratings = payload.get("ratings")
    if not isinstance(ratings, dict):
        raise Invalid("ratings must be an object {response: {scale: 1..7}}")
    scales = ("overall", *ctx.aspects)
    out: dict[str, dict[str, int]] = {}
    for key, per_scale in ratings.items():
        ref = _ref(key, ctx, "ratings")
        if not isinstance(per_scale, dict):
            raise Invalid(f"ratings of response {key} must be an object {{scale: 1..7}}")
        unknown = set(per_scale) - set(scales)
        if unknown:
            raise Invalid(f"unknown rating scale(s) {sorted(unknown)}; this project uses {list(scales)}")
        missing = [s for s in scales if s not in per_scale]
        if missing:
            raise Invalid(f"response {key} is missing rating(s) {missing}")
        out[str(ref)] = {s: _likert(per_scale[s], f"rating {s} of response {key}") for s in scales}
    missing_refs = [r for r in ctx.response_ids if str(r) not in out]
    if missing_refs:
        raise Invalid(f"every response needs a rating; missing {missing_refs}")
    return {"ratings": out, **_common(payload, ctx)}


def normalize_critique(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    critiques = payload.get("critiques")
    if not isinstance(critiques, dict):
        raise Invalid("critiques must be an object {response: text}")
    out = {
        str(_ref(k, ctx, "critiques")): _text(v, ctx, f"critique of response {k}", allow_empty=True)
        for k, v in critiques.items()
    }
    out = {k: v for k, v in out.items() if v.strip()}
    if not out:
        raise Invalid("write a critique of at least one response")
    return {"critiques": out, **_common(payload, ctx)}


def normalize_rewrite(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    ref = _ref(payload.get("response_id"), ctx, "response_id")
    text = _text(payload.get("text"), ctx, "rewrite")
    return {"response_id": ref, "text": text, **_common(payload, ctx)}


def normalize_demo(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    return {"text": _text(payload.get("text"), ctx, "demonstration"), **_common(payload, ctx)}


def normalize_harm(payload: Any, ctx: TaskContext) -> dict[str, Any]:
    payload = _require_dict(payload)
    if "flags" not in payload:
        raise Invalid("flags is required (an empty object means no response is harmful)")
    out = _common(payload, ctx)
    out.setdefault("flags", {})
    return out


# ------------------------------------------------------------------------------ QC units


def pairwise_units(payload: dict[str, Any], refs: tuple[int, ...]) -> dict[str, Any]:
    """The choice as a category shared by all items: "first"/"second" (canonical order), "tie",
    "both_bad" -- response ids differ per item and would make chance agreement look like zero."""
    choice = payload["choice"]
    if choice in PAIRWISE_OUTCOMES:
        return {"choice": choice}
    return {"choice": ("first", "second")[refs.index(choice)]}


def ranking_position_units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    """Rank of each response (1 = best): ordinal data for Krippendorff's alpha."""
    return {f"rank:{ref}": float(i + 1) for i, ref in enumerate(payload["ranking"])}


def ranking_order_units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    """For each pair (a < b by id): 1 when a is ranked above b -- agreement is counted per pair."""
    position = {ref: i for i, ref in enumerate(payload["ranking"])}
    refs = sorted(position)
    return {
        f"pair:{a}:{b}": int(position[a] < position[b])
        for i, a in enumerate(refs) for b in refs[i + 1:]
    }


def likert_units(payload: dict[str, Any], _refs: tuple[int, ...]) -> dict[str, Any]:
    return {
        f"{ref}:{scale}": float(value)
        for ref, per_scale in payload["ratings"].items() for scale, value in per_scale.items()
    }


def harm_units(payload: dict[str, Any], refs: tuple[int, ...]) -> dict[str, Any]:
    """Binary unit per (response, label); `refs` says which responses were shown but not flagged."""
    flags = payload.get("flags", {})
    return {
        f"{ref}:{label}": int(label in flags.get(str(ref), []))
        for ref in refs for label in HARM_LABELS
    }


UnitFn = Callable[[dict[str, Any], tuple[int, ...]], dict[str, Any]]
"""(canonical answer, the item's response ids) -> {unit name: value}."""


# ------------------------------------------------------------------------------ registry


@dataclass(frozen=True)
class TaskType:
    """One task type: validation plus how answers are compared for quality control."""

    name: str
    """Registry key, stored in items and judgments."""
    title: str
    """Human name shown in pages."""
    min_responses: int
    """Fewest candidate responses an item of this type may have."""
    max_responses: int | None
    """Most candidate responses (None: no limit)."""
    normalize: Callable[[Any, TaskContext], dict[str, Any]]
    """Validate an answer and return its canonical form (raises Invalid / TooLarge)."""
    agreement_units: UnitFn | None
    """Answer -> {unit: value} compared with other annotators and gold (None: free text, no QC)."""
    agreement_tolerance: float | None
    """None: a unit agrees when equal to the majority; a number: when within it of the median."""
    alpha_metrics: tuple[str, ...]
    """Krippendorff difference functions to report for this type."""
    alpha_units: UnitFn | None
    """Answer -> {unit: value} pooled into Krippendorff's alpha (None: not reported)."""

    def __post_init__(self) -> None:
        if self.min_responses < 0:
            raise ValueError("min_responses must be >= 0")
        if self.max_responses is not None and self.max_responses < self.min_responses:
            raise ValueError("max_responses must be >= min_responses")


TASK_TYPES: dict[str, TaskType] = {
    t.name: t
    for t in (
        TaskType("pairwise", "Pairwise A/B", 2, 2, normalize_pairwise,
                 pairwise_units, None, ("nominal",), pairwise_units),
        TaskType("ranking", "Ranking", 2, None, normalize_ranking,
                 ranking_order_units, None, ("ordinal", "interval"), ranking_position_units),
        TaskType("likert", "Likert rating", 1, None, normalize_likert,
                 likert_units, 1.0, ("ordinal", "interval"), likert_units),
        TaskType("critique", "Critique", 1, None, normalize_critique, None, None, (), None),
        TaskType("rewrite", "Rewrite", 1, None, normalize_rewrite, None, None, (), None),
        TaskType("demo", "Demonstration", 0, None, normalize_demo, None, None, (), None),
        TaskType("harm", "Harm flags", 1, None, normalize_harm,
                 harm_units, None, ("nominal",), harm_units),
    )
}
"""Task type name -> definition."""


def task_type(name: str) -> TaskType:
    """Look up a task type, with the list of valid names in the error."""
    try:
        return TASK_TYPES[name]
    except KeyError:
        raise Invalid(f"unknown task type {name!r}; choose one of {sorted(TASK_TYPES)}") from None


def check_response_count(t: TaskType, count: int) -> None:
    """Raise Invalid when an item has a number of responses its task type cannot use."""
    if count < t.min_responses or (t.max_responses is not None and count > t.max_responses):
        upper = "any number" if t.max_responses is None else str(t.max_responses)
        raise Invalid(
            f"a {t.name} item needs {t.min_responses}..{upper} responses, got {count}"
        )


def remap_references(payload: dict[str, Any], mapping: dict[int, int]) -> dict[str, Any]:
    """Rename response references in a canonical payload (gold answers are imported by index)."""

    def ref(value: Any) -> Any:
        return mapping[value] if isinstance(value, int) and not isinstance(value, bool) else value

    def keyed(d: dict[str, Any]) -> dict[str, Any]:
        return {str(mapping[int(k)]): v for k, v in d.items()}

    out = dict(payload)
    if "choice" in out:
        out["choice"] = ref(out["choice"])
    if "ranking" in out:
        out["ranking"] = [mapping[r] for r in out["ranking"]]
    if "response_id" in out:
        out["response_id"] = mapping[out["response_id"]]
    for key in ("ratings", "critiques", "flags"):
        if key in out:
            out[key] = keyed(out[key])
    return out
