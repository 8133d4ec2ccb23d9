"""Forward passes that compute only what a loss needs.

A causal LM's output head is a (hidden x vocab) matmul: for SmolLM2 (576 x 49152) it costs about a
fifth of the model's FLOPs per token. SFT needs logits only at response positions and RLHF only the
log-prob of the sampled token, so these helpers run the decoder once and apply the head just where
it is needed, then reduce vocab-sized tensors to per-token numbers right away.

When the bottom blocks of a decoder are frozen (LoRA on the top blocks only, or only the top blocks
trained) their output does not change during training. `trunk_states` computes it once and
`hidden_states(..., prefix=...)` resumes the decoder from it, so a PPO rollout runs the frozen blocks
once for the policy, the reference and every update epoch instead of every time.
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any, NamedTuple, cast

import torch
from torch import nn
from transformers import PreTrainedModel

from rlhfkit.algorithms.common import entropy_from_logits, logprobs_from_logits


def base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model under DDP / peft wrappers (peft's LoRA layers stay injected)."""
    inner: Any = getattr(model, "module", model)  # DDP / accelerate wrappers
    return cast(PreTrainedModel, inner.get_base_model() if hasattr(inner, "peft_config") else inner)


class Prefix(NamedTuple):
    """The residual stream after the bottom `blocks` decoder blocks (before the final norm)."""

    blocks: int
    """How many bottom blocks produced `states`."""
    states: torch.Tensor
    """(B, T, H) their output for the rows and columns of the batch it is used with."""


@contextlib.contextmanager
def decoder_slice(decoder: nn.Module, start: int, stop: int | None, *, final_norm: bool) -> Iterator[nn.Module]:
    """Let `decoder` run only its blocks ``start:stop`` (and skip its final norm when `final_norm` is
    False) inside the block; the original blocks and norm are put back on exit.

    Works on decoders whose blocks are ``decoder.layers`` and whose final norm is ``decoder.norm``
    (Llama, Mistral, Qwen and their kin); `prefix_is_exact` checks that a given model qualifies.
    """
    layers, norm = cast(nn.ModuleList, decoder.layers), decoder.norm
    try:
        decoder.layers = nn.ModuleList(list(layers)[start:stop])
        if not final_norm:
            decoder.norm = nn.Identity()
        yield decoder
    finally:
        decoder.layers, decoder.norm = layers, norm


def trunk_states(model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, blocks: int) -> Prefix:
    """The output of the bottom `blocks` decoder blocks (B, T, H), before any final norm."""
    decoder = base_model(model).get_decoder()
    with decoder_slice(decoder, 0, blocks, final_norm=False):
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, use_cache=False)
    return Prefix(blocks, out.last_hidden_state)


def hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    prefix: Prefix | None = None,
) -> torch.Tensor:
    """Last-layer hidden states (B, T, H) from the decoder trunk, without the output head.

    `attention_mask` is the usual (B, T) padding mask, or a (B, 1, T, T) boolean mask (True = may
    attend) for rows that pack several sequences; those also pass their own `position_ids` (B, T).
    With a `prefix` (from `trunk_states` on the same rows and columns) the decoder starts above the
    blocks that produced it: the residual stream enters where the embeddings would, and the causal
    mask and rotary positions are rebuilt from `attention_mask` as usual.
    """
    decoder = base_model(model).get_decoder()
    if prefix is None:
        out = decoder(input_ids=input_ids, attention_mask=attention_mask, position_ids=position_ids, use_cache=False)
        return out.last_hidden_state
    with decoder_slice(decoder, prefix.blocks, None, final_norm=True):
        out = decoder(
            inputs_embeds=prefix.states, attention_mask=attention_mask, position_ids=position_ids, use_cache=False
        )
    return out.last_hidden_state


def frozen_bottom_blocks(model: nn.Module) -> int:
    """How many bottom decoder blocks hold no trainable parameter (0 when the embeddings train)."""
    from rlhfkit.models.adapters import decoder_layers

    base = base_model(model)
    if any(p.requires_grad for p in base.get_input_embeddings().parameters()):
        return 0
    count = 0
    for layer in decoder_layers(model):
        if any(p.requires_grad for p in layer.parameters()):
            break
        count += 1
    return count


@torch.no_grad()
def prefix_is_exact(model: nn.Module, blocks: int, *, atol: float = 1e-4) -> bool:
    """Whether resuming `model`'s decoder from `trunk_states` gives the hidden states of a full pass.

    Checked on two short rows (one left-padded) before a trainer relies on it: a decoder that keeps
    its blocks elsewhere, scales or adds position embeddings to its input, or has no final ``norm``
    fails (or raises) here, and the caller then runs every block every time.
    """
    decoder = base_model(model).get_decoder()
    if not (isinstance(getattr(decoder, "layers", None), nn.ModuleList) and hasattr(decoder, "norm")):
        return False
    device = next(model.parameters()).device
    vocab = int(cast(nn.Embedding, base_model(model).get_input_embeddings()).weight.shape[0])
    ids = (torch.arange(16, device=device).view(2, 8) * 7 + 3) % vocab
    mask = torch.ones_like(ids)
    mask[1, :3] = 0
    try:
        full = hidden_states(model, ids, mask)
        resumed = hidden_states(model, ids, mask, prefix=trunk_states(model, ids, mask, blocks))
    except (TypeError, ValueError, AttributeError, RuntimeError):
        return False
    keep = mask.bool()
    return bool(torch.allclose(full[keep].float(), resumed[keep].float(), atol=atol, rtol=1e-4))


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
    prefix: Prefix | None = None,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, R) of the tokens at positions ``response_start:`` under `model`.

    Rows are left-padded prompts followed by right-padded responses (the layout generation
    produces), so every response starts at the same column. Logits are divided by the sampling
    `temperature` first, so the log-probs are those of the distribution that was sampled
    (Huang et al. 2024, detail 10). `prefix`: see `hidden_states`.
    """
    h = hidden_states(model, input_ids, attention_mask, prefix=prefix)[:, response_start - 1 : -1]  # (B, R, H)
    logits = output_head(model)(h).float() / temperature  # (B, R, V)
    logps = logprobs_from_logits(logits, input_ids[:, response_start:])
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logps, entropy
