"""Forward passes that compute only what a loss needs.

A causal LM's output head is a (hidden x vocab) matmul: for SmolLM2 (576 x 49152) it costs about a
fifth of the model's FLOPs per token. SFT needs logits only at response positions and RLHF only the
log-prob of the sampled token, so these helpers run the decoder once and apply the head just where
it is needed, then reduce vocab-sized tensors to per-token numbers right away.
"""

from __future__ import annotations

import torch
from torch import nn

from rlhfkit.algorithms.common import entropy_from_logits, logprobs_from_logits


def base_model(model: nn.Module) -> nn.Module:
    """The transformers model under DDP / peft wrappers (peft's LoRA layers stay injected)."""
    inner = getattr(model, "module", model)  # DDP / accelerate wrappers
    return inner.get_base_model() if hasattr(inner, "peft_config") else inner


def hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
) -> torch.Tensor:
    """Last-layer hidden states (B, T, H) from the decoder trunk, without the output head.

    `attention_mask` is the usual (B, T) padding mask, or a (B, 1, T, T) boolean mask (True = may
    attend) for rows that pack several sequences; those also pass their own `position_ids` (B, T).
    """
    decoder = base_model(model).get_decoder()
    out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
    return out.last_hidden_state


def output_head(model: nn.Module) -> nn.Module:
    return base_model(model).get_output_embeddings()


def token_nll_sum(model: nn.Module, batch: dict[str, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
    """Summed next-token NLL over labelled positions, and their count.

    batch: ``input_ids`` (B, T), ``attention_mask`` (B, T), ``labels`` (B, T) with -100 where no loss.
    Logits at position t predict token t+1, so labels are shifted left by one.
    """
    h = hidden_states(model, batch["input_ids"], batch["attention_mask"])  # (B, T, H)
    targets = batch["labels"][:, 1:]  # (B, T-1)
    keep = targets != -100
    logits = output_head(model)(h[:, :-1][keep])  # (N, V), only labelled positions
    nll = nn.functional.cross_entropy(logits.float(), targets[keep], reduction="sum")
    return nll, keep.sum()


def response_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, R) of the tokens at positions ``response_start:`` under `model`.

    Rows are left-padded prompts followed by right-padded responses (the layout generation
    produces), so every response starts at the same column. Logits are divided by the sampling
    `temperature` first, so the log-probs are those of the distribution that was sampled
    (Huang et al. 2024, detail 10).
    """
    h = hidden_states(model, input_ids, attention_mask)[:, response_start - 1 : -1]  # (B, R, H)
    logits = output_head(model)(h).float() / temperature  # (B, R, V)
    logps = logprobs_from_logits(logits, input_ids[:, response_start:])
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logps, entropy
