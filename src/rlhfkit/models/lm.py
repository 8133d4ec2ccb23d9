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
import functools
import inspect
from collections.abc import Callable, Iterator
from typing import Any, Concatenate, NamedTuple, ParamSpec, TypeVar, cast

import torch
from torch import nn
from transformers import PreTrainedModel

from rlhfkit.algorithms.common import entropy_from_logits, logprobs_from_logits

ROOT_FORWARD = "rlhfkit_root_forward"
"""The attribute of a model sharded by FSDP2 (`rlhfkit.train.fsdp`) that runs a function as a forward
of its root: FSDP2 gathers the root's weights (embeddings, final norm, output head) only around such a
forward, and the helpers below call the decoder and the head themselves."""

M = TypeVar("M", bound=nn.Module)
P = ParamSpec("P")
R = TypeVar("R")


def through_root(fn: Callable[Concatenate[M, P], R]) -> Callable[Concatenate[M, P], R]:
    """`fn(model, ...)`, run as a forward of `model`'s root when `model` is sharded (see `ROOT_FORWARD`);
    also a method's decorator (`model` is then ``self``)."""

    @functools.wraps(fn)
    def wrapper(model: M, /, *args: P.args, **kwargs: P.kwargs) -> R:
        call = getattr(model, ROOT_FORWARD, None)
        return fn(model, *args, **kwargs) if call is None else call(fn, model, *args, **kwargs)

    return wrapper


def base_model(model: nn.Module) -> PreTrainedModel:
    """The transformers model under DDP / peft wrappers (peft's LoRA layers stay injected)."""
    inner: Any = getattr(model, "module", model)  # DDP / accelerate wrappers
    # peft leaves `peft_config` on the model it wraps too: only the wrapper has get_base_model
    return cast(PreTrainedModel, inner.get_base_model() if hasattr(inner, "get_base_model") else inner)


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


def distinct_rows(x: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """(first, index) of the distinct rows of `x` (B, T): ``x[first]`` holds each once, and row i of
    `x` is ``x[first][index[i]]``."""
    distinct, index = torch.unique(x, dim=0, return_inverse=True)
    first = torch.full((distinct.shape[0],), x.shape[0], dtype=torch.long, device=x.device)
    first.scatter_reduce_(0, index, torch.arange(x.shape[0], device=x.device), "amin")
    return first, index


def cache_keyword(model: nn.Module) -> str:
    """The name a forward pass takes its KV cache by: ``cache`` from transformers 5 on, before it
    ``past_key_values``."""
    return "cache" if "cache" in inspect.signature(base_model(model).forward).parameters else "past_key_values"


def returned_cache(out: Any) -> Any:
    """The KV cache a forward pass returned (``out.cache`` from transformers 5 on)."""
    return out.cache if getattr(out, "cache", None) is not None else out.past_key_values


@through_root
def trunk_states(
    model: nn.Module, input_ids: torch.Tensor, attention_mask: torch.Tensor, blocks: int, *, shared_columns: int = 0
) -> Prefix:
    """The output of the bottom `blocks` decoder blocks (B, T, H), before any final norm.
    `shared_columns`: see `hidden_states`."""
    decoder = base_model(model).get_decoder()
    with decoder_slice(decoder, 0, blocks, final_norm=False):
        states = _decoder_pass(model, decoder, input_ids, attention_mask, {"input_ids": input_ids}, shared_columns)
    return Prefix(blocks, states)


@through_root
def hidden_states(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    *,
    position_ids: torch.Tensor | None = None,
    prefix: Prefix | None = None,
    shared_columns: int = 0,
) -> torch.Tensor:
    """Last-layer hidden states (B, T, H) from the decoder trunk, without the output head.

    `attention_mask` is the usual (B, T) padding mask, or a (B, 1, T, T) boolean mask (True = may
    attend) for rows that pack several sequences; those also pass their own `position_ids` (B, T).
    With a `prefix` (from `trunk_states` on the same rows and columns) the decoder starts above the
    blocks that produced it: the residual stream enters where the embeddings would, and the causal
    mask and rotary positions are rebuilt from `attention_mask` as usual.

    With `shared_columns` = P, rows whose first P tokens are the same (a GRPO group: one prompt, its
    responses from column P) run those columns once, and their last T - P columns on a copy of that KV
    cache: a group of 8 responses to a 46-token prompt with 32 new tokens costs 46 + 8 x 32 token
    positions instead of 8 x 78. Causal attention keeps the first P columns from seeing the others, so
    the states are the full pass's up to float rounding, and autograd flows through the copies.
    """
    decoder = base_model(model).get_decoder()
    if prefix is None:
        inputs = {"input_ids": input_ids, "position_ids": position_ids}
        return _decoder_pass(model, decoder, input_ids, attention_mask, inputs, shared_columns)
    with decoder_slice(decoder, prefix.blocks, None, final_norm=True):
        inputs = {"inputs_embeds": prefix.states, "position_ids": position_ids}
        return _decoder_pass(model, decoder, input_ids, attention_mask, inputs, shared_columns)


def _decoder_pass(
    model: nn.Module,
    decoder: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    inputs: dict[str, torch.Tensor | None],
    shared_columns: int,
) -> torch.Tensor:
    """``decoder(**inputs)``'s last hidden states, the first `shared_columns` columns once per distinct
    row of `input_ids` when some repeat (see `hidden_states`).

    The rest of the columns then run on the copied cache with their positions (column numbers, as in
    a pass without a cache) and their causal mask given explicitly: on a decoder sliced above its
    first block the cache's bottom layers stay empty, so the cache cannot tell how long it is."""
    columns = shared_columns if attention_mask.dim() == 2 and inputs.get("position_ids") is None else 0
    if 0 < columns < input_ids.shape[1]:
        first, index = distinct_rows(input_ids[:, :columns])
        if len(first) < input_ids.shape[0]:
            head_inputs = {k: v[first, :columns] for k, v in inputs.items() if v is not None}
            head = decoder(**head_inputs, attention_mask=attention_mask[first, :columns], use_cache=True)
            cache = returned_cache(head)
            cache.batch_select_indices(index)
            width = input_ids.shape[1]
            cols = torch.arange(width, device=input_ids.device)
            rows = cols[columns:, None]  # the tail's query positions
            causal = (cols[None, :] <= rows)[None, None]  # (1, 1, T - P, T)
            tail_mask = causal & attention_mask.bool()[:, None, None, :]  # True = may attend
            tail_inputs = {k: v[:, columns:] for k, v in inputs.items() if v is not None}
            tail = decoder(
                **tail_inputs,
                attention_mask=tail_mask,
                position_ids=rows.T,
                use_cache=True,
                **{cache_keyword(model): cache},
            )
            return torch.cat([head.last_hidden_state[index], tail.last_hidden_state], dim=1)
    return decoder(**inputs, attention_mask=attention_mask, use_cache=False).last_hidden_state


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


@through_root
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


@through_root
def response_logprobs(
    model: nn.Module,
    input_ids: torch.Tensor,
    attention_mask: torch.Tensor,
    response_start: int,
    *,
    temperature: float = 1.0,
    with_entropy: bool = False,
    prefix: Prefix | None = None,
    shared_columns: int = 0,
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Log-probs (B, R) of the tokens at positions ``response_start:`` under `model`.

    Rows are left-padded prompts followed by right-padded responses (the layout generation
    produces), so every response starts at the same column. Logits are divided by the sampling
    `temperature` first, so the log-probs are those of the distribution that was sampled
    (Huang et al. 2024, detail 10). `prefix`, `shared_columns`: see `hidden_states`.
    """
    h = hidden_states(model, input_ids, attention_mask, prefix=prefix, shared_columns=shared_columns)
    h = h[:, response_start - 1 : -1]  # (B, R, H)
    logits = output_head(model)(h).float() / temperature  # (B, R, V)
    logps = logprobs_from_logits(logits, input_ids[:, response_start:])
    entropy = entropy_from_logits(logits) if with_entropy else None
    return logps, entropy
