"""Parsing items and prompts from JSONL uploads.

One JSON object per line. Accepted item shapes (``id``, ``task_type``, ``gold`` and ``models`` are
optional everywhere):

* ``{"prompt": P, "responses": ["...", "..."]}`` (``candidates`` is accepted as a synonym),
* any preference row the trainers read (`rlhfkit.data.formats`): ``{"prompt": P, "chosen": "...",
  "rejected": "..."}`` (TRL standard), TRL conversational rows (``"chosen": [{"role": "assistant",
  "content": "..."}]`` after a conversation prompt, or whole conversations with the prompt implicit)
  and HH-RLHF dialogues. Each becomes a pairwise item with the prompt and two replies the trainers
  would train on (the display order is randomized per annotator anyway),
* ``{"prompt": P}`` (no responses: a demonstration-writing task).

``P`` is plain text or a conversation ``[{"role": "user", "content": "..."}, ...]``. ``gold`` is the
known answer in the task type's payload form, naming responses by their 0-based position, e.g.
``{"choice": 0}`` or ``{"ranking": [2, 0, 1]}``. Every error names its line; an upload with any bad
line is rejected as a whole.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import Any

from rlhfkit.data import safejson
from rlhfkit.feedback.entities import NewItem
from rlhfkit.feedback.errors import Invalid, TooLarge

CHAT_ROLES = ("system", "user", "assistant")
"""Roles allowed in conversation prompts."""

MAX_REPORTED_ERRORS = 20
"""Errors listed in one rejection message."""


@dataclass(frozen=True)
class TextLimits:
    """Size limits applied to imported and submitted text."""

    max_prompt_chars: int = 100_000
    """Longest prompt (all turns together)."""
    max_response_chars: int = 100_000
    """Longest candidate response."""
    max_items_per_upload: int = 200_000
    """Most lines in one import."""

    def __post_init__(self) -> None:
        if min(self.max_prompt_chars, self.max_response_chars, self.max_items_per_upload) < 1:
            raise ValueError("text limits must be >= 1")


def check_prompt(prompt: Any, limits: TextLimits) -> Any:
    """Validate a prompt (text or conversation) and return it."""
    if isinstance(prompt, str):
        size = len(prompt)
        if not prompt.strip():
            raise Invalid("prompt must not be empty")
    elif isinstance(prompt, list) and prompt:
        for message in prompt:
            if (
                not isinstance(message, dict)
                or set(message) != {"role", "content"}
                or message["role"] not in CHAT_ROLES
                or not isinstance(message["content"], str)
            ):
                raise Invalid('a conversation prompt is a list of {"role": system|user|assistant, "content": text}')
        size = sum(len(m["content"]) for m in prompt)
    else:
        raise Invalid("prompt must be text or a non-empty list of messages")
    if size > limits.max_prompt_chars:
        raise TooLarge(f"prompt is {size} characters; the limit is {limits.max_prompt_chars}")
    return prompt


def check_responses(responses: Any, limits: TextLimits) -> tuple[str, ...]:
    """Validate a list of candidate responses."""
    if not isinstance(responses, list) or not all(isinstance(r, str) for r in responses):
        raise Invalid("responses must be a list of strings")
    for r in responses:
        if len(r) > limits.max_response_chars:
            raise TooLarge(f"a response is {len(r)} characters; the limit is {limits.max_response_chars}")
    return tuple(responses)


def _preference(obj: dict[str, Any], limits: TextLimits) -> tuple[Any, tuple[str, ...]]:
    """A preference row read exactly as the trainers read it -> (prompt, (chosen, rejected))."""
    from rlhfkit.data.errors import DataError
    from rlhfkit.data.fields import RowContext
    from rlhfkit.data.formats import parse_row
    from rlhfkit.data.records import Comparison, Source

    try:
        record = parse_row(obj, "pairs", RowContext(Source("upload", 0)))
    except DataError as e:
        raise Invalid(f"field '{e.field}': {e.message}") from None
    assert isinstance(record, Comparison)  # parse_row(..., "pairs") builds comparisons only
    return check_prompt(record.prompt, limits), check_responses([record.chosen, record.rejected], limits)


def item_from_json(obj: Any, limits: TextLimits) -> NewItem:
    """One JSONL object -> NewItem (raises Invalid/TooLarge with a message, without line number)."""
    if not isinstance(obj, dict):
        raise Invalid("each line must be a JSON object")
    if "chosen" in obj or "rejected" in obj:
        prompt, responses = _preference(obj, limits)
        task_type = obj.get("task_type", "pairwise")
    elif "prompt" not in obj:
        raise Invalid('missing "prompt"')
    else:
        prompt = check_prompt(obj["prompt"], limits)
        responses = check_responses(obj.get("responses", obj.get("candidates", [])), limits)
        task_type = obj.get("task_type")
    external_id = obj.get("id")
    if external_id is not None and not isinstance(external_id, (str, int)):
        raise Invalid('"id" must be a string or an integer')
    gold = obj.get("gold")
    if gold is not None and not isinstance(gold, dict):
        raise Invalid('"gold" must be an object in the task type\'s answer form')
    models = obj.get("models", [])
    if not isinstance(models, list) or not all(m is None or isinstance(m, str) for m in models):
        raise Invalid('"models" must be a list of model names')
    if task_type is not None and not isinstance(task_type, str):
        raise Invalid('"task_type" must be a string')
    return NewItem(
        prompt=prompt,
        responses=responses,
        task_type=task_type,
        gold=gold,
        external_id=None if external_id is None else str(external_id),
        models=tuple(models),
    )


def _raise_collected(errors: list[str], too_large: bool) -> None:
    shown = errors[:MAX_REPORTED_ERRORS]
    more = len(errors) - len(shown)
    message = "; ".join(shown) + (f"; and {more} more errors" if more else "")
    raise (TooLarge if too_large else Invalid)(message)


def parse_items_jsonl(text: str, limits: TextLimits) -> list[NewItem]:
    """Parse a whole upload, reporting every bad line (first 20) at once."""
    items: list[NewItem] = []
    errors: list[str] = []
    too_large = False
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        if len(items) + len(errors) >= limits.max_items_per_upload:
            raise TooLarge(f"an upload may hold at most {limits.max_items_per_upload} items")
        try:
            items.append(item_from_json(safejson.loads(line), limits))
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg})")
        except safejson.JsonLimitError as exc:
            errors.append(f"line {number}: JSON outside the limits ({exc})")
        except (Invalid, TooLarge) as exc:
            too_large = too_large or isinstance(exc, TooLarge)
            errors.append(f"line {number}: {exc.message}")
    if errors:
        _raise_collected(errors, too_large)
    if not items:
        raise Invalid("the upload holds no items")
    return items


def parse_prompts(text: str, limits: TextLimits) -> list[Any]:
    """Prompts for generation: JSONL objects with "prompt", or else one plain-text prompt per line."""
    prompts: list[Any] = []
    errors: list[str] = []
    for number, line in enumerate(text.split("\n"), start=1):
        if not line.strip():
            continue
        try:
            obj = safejson.loads(line) if line.lstrip().startswith("{") else {"prompt": line.strip()}
            if not isinstance(obj, dict) or "prompt" not in obj:
                raise Invalid('a JSON line must be an object with "prompt"')
            prompts.append(check_prompt(obj["prompt"], limits))
        except json.JSONDecodeError as exc:
            errors.append(f"line {number}: not valid JSON ({exc.msg})")
        except safejson.JsonLimitError as exc:
            errors.append(f"line {number}: JSON outside the limits ({exc})")
        except (Invalid, TooLarge) as exc:
            errors.append(f"line {number}: {exc.message}")
    if errors:
        _raise_collected(errors, too_large=False)
    if not prompts:
        raise Invalid("no prompts given")
    return prompts
