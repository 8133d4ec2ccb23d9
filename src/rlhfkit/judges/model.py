"""A judge run in-process: any model rlhfkit loads (the bundled SmolLM2, a run directory, ``tiny``).

The verdict comes from the logits: one forward pass over the rendered question gives the next-token
distribution, from which the option labels' tokens (spelled with and without a leading space) are
read. The answer text is the most likely option, so a text readout agrees with it; no sampling is
needed, which makes the model judge deterministic.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any

import torch

from rlhfkit.config import ConfigError
from rlhfkit.data.chat import encode_prompt
from rlhfkit.judges.base import Answer


@dataclass
class ModelJudge:
    """A causal LM answering judge questions from its next-token logits."""

    model: Any
    """The loaded model (``transformers`` causal LM)."""
    tokenizer: Any
    """Its tokenizer (with a chat template, or the plain dialogue transcript of `render_prompt`)."""
    source: str
    """What was loaded (the cache key's judge name)."""
    max_prompt_length: int = 1024
    """Questions longer than this many tokens are cut from the left."""

    @property
    def name(self) -> str:
        return f"model:{self.source}"

    def option_tokens(self, options: tuple[str, ...]) -> dict[str, list[int]]:
        """Option label -> the first token ids of its spellings (``"A"``, ``" A"``) that spell the label
        alone (a byte-level tokenizer's first token of ``" A"`` is the blank, shared by every option)."""
        out: dict[str, list[int]] = {}
        for option in options:
            ids = {self.tokenizer(s, add_special_tokens=False)["input_ids"][0] for s in (option, " " + option)}
            out[option] = sorted(t for t in ids if self.tokenizer.decode([t]).strip().lower() == option.lower())
            if not out[option]:  # its probability would read as 0 and the verdict as certain: refuse instead
                raise ConfigError(
                    f"the judge's tokenizer spells the answer {option!r} with several tokens; a model judge reads "
                    "one token per answer: choose single-token labels (e.g. judge.score_labels=[yes,no])"
                )
        return out

    @torch.no_grad()
    def answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer:
        ids, _ = encode_prompt(self.tokenizer, messages, self.max_prompt_length)
        device = next(self.model.parameters()).device
        logits = self.model(input_ids=torch.tensor([ids], device=device)).logits[0, -1].float()  # (V,)
        logp = torch.log_softmax(logits, dim=-1)
        logprobs: dict[str, float] = {}
        best, best_lp = options[0], -float("inf")
        for option, token_ids in self.option_tokens(options).items():
            for t in token_ids:
                logprobs[self.tokenizer.decode([t])] = lp = float(logp[t])
                if lp > best_lp:
                    best, best_lp = option, lp
        return Answer(text=best, logprobs=logprobs)


def load_model_judge(name: str, *, device: str = "cpu", dtype: str = "auto") -> ModelJudge:
    """Load MODEL (bundled name, directory, hub id or ``tiny:SEED``) as a judge."""
    from rlhfkit.models.loading import load_model

    loaded = load_model(name, dtype=dtype, device=device)
    loaded.model.eval()
    return ModelJudge(loaded.model, loaded.tokenizer, str(name))
