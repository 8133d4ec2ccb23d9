"""Chat formatting and tokenization of (prompt, response) pairs.

The chat template comes from the tokenizer. A prompt is rendered with ``add_generation_prompt=True``
and the response is tokenized separately and appended, followed by the EOS token. Tokenizing the two
parts separately is what makes loss masking exact: every prompt token is known to be a prompt token,
with no guessing where a template's boundary fell after BPE merges across it.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import cast

from transformers import PreTrainedTokenizerBase

from rlhfkit.data.records import PromptText

IGNORE = -100
"""Label of positions that carry no loss (PyTorch's cross-entropy ``ignore_index``)."""


def as_messages(prompt: PromptText) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


def render_prompt(tokenizer: PreTrainedTokenizerBase, prompt: PromptText) -> str:
    """The prompt as the model sees it, ending where the assistant's reply begins."""
    if getattr(tokenizer, "chat_template", None):
        # tokenize=False returns the rendered text; the annotated return type covers every mode.
        return cast(str, tokenizer.apply_chat_template(as_messages(prompt), add_generation_prompt=True, tokenize=False))
    # A base model without a chat template: a plain dialogue transcript in the HH-RLHF style.
    turns = "".join(
        f"\n\n{'Human' if m['role'] == 'user' else m['role'].capitalize()}: {m['content']}" for m in as_messages(prompt)
    )
    return turns + "\n\nAssistant:"


@dataclass(frozen=True)
class Encoded:
    """One tokenized example: prompt ids followed by response ids (response ends with EOS)."""

    prompt_ids: list[int]
    response_ids: list[int]
    prompt_truncated: bool
    """Whether tokens were cut from the left of the prompt to fit `max_length`."""

    @property
    def input_ids(self) -> list[int]:
        return self.prompt_ids + self.response_ids

    @property
    def labels(self) -> list[int]:
        return [IGNORE] * len(self.prompt_ids) + self.response_ids


def encode_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: PromptText, max_prompt_length: int | None = None
) -> tuple[list[int], bool]:
    """Token ids of the rendered prompt, cut from the LEFT to `max_prompt_length` (the end of a
    prompt, next to the reply, matters most). Returns (ids, truncated)."""
    ids = tokenizer(render_prompt(tokenizer, prompt), add_special_tokens=False)["input_ids"]
    if max_prompt_length is not None and len(ids) > max_prompt_length:
        return ids[len(ids) - max_prompt_length :], True
    return ids, False


def encode_pair(
    tokenizer: PreTrainedTokenizerBase,
    prompt: PromptText,
    response: str,
    *,
    max_length: int,
    max_prompt_length: int | None = None,
) -> Encoded:
    """Tokenize prompt + response + EOS into at most `max_length` tokens.

    The prompt is cut from the left to `max_prompt_length` (default: half of `max_length`) only when
    the whole would not fit; the response is then cut from the right.
    """
    prompt_ids, _ = encode_prompt(tokenizer, prompt)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = False
    if len(prompt_ids) + len(response_ids) > max_length:
        limit = max_prompt_length if max_prompt_length is not None else max_length // 2
        if len(prompt_ids) > limit:
            prompt_ids, truncated = prompt_ids[len(prompt_ids) - limit :], True
        response_ids = response_ids[: max(1, max_length - len(prompt_ids))]
    return Encoded(prompt_ids=prompt_ids, response_ids=response_ids, prompt_truncated=truncated)
