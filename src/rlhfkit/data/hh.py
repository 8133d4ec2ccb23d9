"""The HH-RLHF dialogue format (Bai et al., 2022, "Training a Helpful and Harmless Assistant with
Reinforcement Learning from Human Feedback", arXiv:2204.05862).

A row is ``{"chosen": DIALOGUE, "rejected": DIALOGUE}`` where a dialogue is the whole conversation as
one string, ``"\\n\\nHuman: ...\\n\\nAssistant: ..."`` repeated. The two dialogues share every turn
except the last Assistant reply, so the prompt is their common prefix up to (and including) the last
``"\\n\\nAssistant:"`` inside it, and the responses are what follows.

Things seen in the real data (harmless-base test split) that this parser keeps as they are:

* two Assistant turns in a row (``"\\n\\nAssistant: X\\n\\nAssistant: Y"``): kept as two assistant
  messages, because merging them would invent a turn boundary that annotators did not see;
* a reply that itself contains ``"\\n\\nAssistant:"`` or an inline ``"Human:"`` (the model continued
  the dialogue on its own): the split point is taken inside the *shared* prefix, so such text stays
  part of the response it belongs to;
* an empty final reply (the dialogue ends with ``"\\n\\nAssistant: "``): an empty response, which the
  caller rejects like any other empty text.
"""

from __future__ import annotations

import re
from typing import Any

from rlhfkit.data.fields import RowContext
from rlhfkit.data.records import Message

HUMAN = "Human:"
ASSISTANT = "\n\nAssistant:"
_TURN = re.compile(r"\n\n(Human|Assistant):")
_ROLES = {"Human": "user", "Assistant": "assistant"}


def looks_like_dialogue(value: Any) -> bool:
    """Whether a ``chosen`` value is an HH dialogue string rather than a plain response."""
    return isinstance(value, str) and value.lstrip().startswith(HUMAN) and ASSISTANT in value


def _normalised(dialogue: str) -> str:
    # Some copies of the data drop the leading blank line; restore it so every turn has a marker.
    return "\n\n" + dialogue.lstrip()


def common_prefix(a: str, b: str) -> str:
    """Longest common prefix, character by character."""
    n = next((i for i, (x, y) in enumerate(zip(a, b, strict=False)) if x != y), min(len(a), len(b)))
    return a[:n]


def dialogue_messages(text: str, field: str, ctx: RowContext) -> list[Message]:
    """``"\\n\\nHuman: a\\n\\nAssistant: b..."`` -> ``[{"role": "user", "content": "a"}, ...]``, stripped."""
    parts = _TURN.split(text)
    if parts[0].strip():
        raise ctx.error(field, "text before the first 'Human:' turn", "invalid dialogue")
    roles, contents = parts[1::2], parts[2::2]
    return [{"role": _ROLES[r], "content": c.strip()} for r, c in zip(roles, contents, strict=True)]


def split_dialogues(chosen: str, rejected: str, ctx: RowContext) -> tuple[list[Message], str, str]:
    """(prompt conversation, chosen reply, rejected reply) of an HH row; replies are stripped."""
    chosen, rejected = _normalised(chosen), _normalised(rejected)
    shared = len(common_prefix(chosen, rejected))
    cut = chosen.rfind(ASSISTANT, 0, shared)
    if cut < 0:
        raise ctx.error("rejected", "chosen and rejected share no 'Assistant:' turn", "no common prompt")
    prompt = dialogue_messages(chosen[:cut], "chosen", ctx)
    start = cut + len(ASSISTANT)
    return prompt, chosen[start:].strip(), rejected[start:].strip()
