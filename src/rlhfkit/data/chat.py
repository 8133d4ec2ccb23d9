"""Chat formatting and tokenization of (prompt, response) pairs.

The chat template comes from the tokenizer. A prompt is rendered with ``add_generation_prompt=True``
and the response is tokenized separately and appended, followed by the EOS token.

Whether a prompt goes through the template is a `ChatTemplate` choice (`TEMPLATE_RULES`). Trainers
default to 'auto', TRL's semantics (``trl.data_utils.maybe_apply_chat_template``): a conversational
prompt (a list of messages) is templated, a *standard* plain-text prompt is used as the text it is,
with the response appended directly. 'always' templates both (a plain prompt becomes one user turn:
what rlhfkit did before the choice existed, and what sampling from a chat model does), 'never' neither. Tokenizing the two
parts separately is what makes loss masking exact: every prompt token is known to be a prompt token,
with no guessing where a template's boundary fell after BPE merges across it.
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Literal, cast

from transformers import PreTrainedTokenizerBase

from rlhfkit.data.records import PromptText

IGNORE = -100
"""Label of positions that carry no loss (PyTorch's cross-entropy ``ignore_index``)."""


def as_messages(prompt: PromptText) -> list[dict[str, str]]:
    return [{"role": "user", "content": prompt}] if isinstance(prompt, str) else list(prompt)


ChatTemplate = Literal["auto", "always", "never"]
"""The keys of `TEMPLATE_RULES`, as a type for config fields."""

TEMPLATE_RULES: dict[str, Callable[[PromptText], bool]] = {
    "auto": lambda prompt: isinstance(prompt, list),
    "always": lambda prompt: True,
    "never": lambda prompt: False,
}
"""Choice -> whether a prompt goes through the tokenizer's chat template ('auto': conversations only)."""


def transcript(prompt: PromptText) -> str:
    """A prompt outside any chat template: plain text as it is; a conversation as an HH-RLHF style
    transcript ending where the assistant's reply begins."""
    if isinstance(prompt, str):
        return prompt
    turns = "".join(f"\n\n{'Human' if m['role'] == 'user' else m['role'].capitalize()}: {m['content']}" for m in prompt)
    return turns + "\n\nAssistant:"


def render_prompt(
    tokenizer: PreTrainedTokenizerBase, prompt: PromptText, chat_template: ChatTemplate = "always"
) -> str:
    """The prompt as the model sees it, ending where the assistant's reply begins."""
    if TEMPLATE_RULES[chat_template](prompt) and getattr(tokenizer, "chat_template", None):
        # tokenize=False returns the rendered text; the annotated return type covers every mode.
        return cast(str, tokenizer.apply_chat_template(as_messages(prompt), add_generation_prompt=True, tokenize=False))
    if chat_template == "always":  # a base model without a chat template: a dialogue transcript
        return transcript(as_messages(prompt))
    return transcript(prompt)


def describe_templating(prompts: Sequence[PromptText], chat_template: ChatTemplate) -> str:
    """One log line: how many prompts go through the chat template under `chat_template`, and why."""
    rule = TEMPLATE_RULES[chat_template]
    templated = sum(rule(p) for p in prompts)
    conversational = sum(isinstance(p, list) for p in prompts)
    return (
        f"chat_template={chat_template}: {templated} of {len(prompts)} prompts through the chat template, "
        f"{len(prompts) - templated} as plain text ({conversational} conversational, "
        f"{len(prompts) - conversational} standard plain-text rows)"
    )


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
    tokenizer: PreTrainedTokenizerBase,
    prompt: PromptText,
    max_prompt_length: int | None = None,
    chat_template: ChatTemplate = "always",
) -> tuple[list[int], bool]:
    """Token ids of the rendered prompt, cut from the LEFT to `max_prompt_length` (the end of a
    prompt, next to the reply, matters most). Returns (ids, truncated)."""
    ids = tokenizer(render_prompt(tokenizer, prompt, chat_template), add_special_tokens=False)["input_ids"]
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
    chat_template: ChatTemplate = "always",
) -> Encoded:
    """Tokenize prompt + response + EOS into at most `max_length` tokens.

    The prompt is cut from the left to `max_prompt_length` (default: half of `max_length`) only when
    the whole would not fit; the response is then cut from the right.
    """
    prompt_ids, _ = encode_prompt(tokenizer, prompt, chat_template=chat_template)
    response_ids = tokenizer(response, add_special_tokens=False)["input_ids"] + [tokenizer.eos_token_id]
    truncated = False
    if len(prompt_ids) + len(response_ids) > max_length:
        limit = max_prompt_length if max_prompt_length is not None else max_length // 2
        if len(prompt_ids) > limit:
            prompt_ids, truncated = prompt_ids[len(prompt_ids) - limit :], True
        response_ids = response_ids[: max(1, max_length - len(prompt_ids))]
    return Encoded(prompt_ids=prompt_ids, response_ids=response_ids, prompt_truncated=truncated)
