"""One base model in memory for the PPO policy, its reference and its critic.

TRL's PPO trainer holds four networks (policy, reference, value model, reward model). Here the
policy, the reference and the value function share one set of base weights:

- ``lora`` (default): the policy is the base plus LoRA adapters; the reference is the same model with
  the adapters switched off (``with model.disable_adapter():``), so it costs no memory at all;
- ``top_layers``: only the top N transformer blocks train. The reference then needs the *original*
  top N blocks, so a frozen copy of just those blocks is kept and swapped into the block list while
  the reference runs (everything below them is frozen and therefore shared); memory = N blocks;
- ``full``: every weight trains, and the reference is a separate frozen copy of the whole model.

In every mode the value head reads the policy's own final hidden states (`ActorCritic.forward`), so
one trunk pass yields the log-probs of the sampled tokens and their values.

Below the lowest trained block the policy and the reference are the same frozen network (LoRA on the
top blocks only, or ``top_layers``). `ActorCritic.trunk` runs those blocks once per rollout; passing
its output to `forward` and `reference_logps` runs only the blocks above, for the reference and for
every PPO epoch (`frozen_blocks` says how many blocks that skips; 0 = none).
"""

from __future__ import annotations

import contextlib
import copy
import logging
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Literal, NamedTuple

import torch
from torch import Tensor, nn

from rlhfkit.algorithms.common import entropy_from_logits, logprobs_from_logits
from rlhfkit.config import require
from rlhfkit.models.adapters import LoRAConfig, apply_lora, decoder_layers
from rlhfkit.models.lm import (
    Prefix,
    frozen_bottom_blocks,
    hidden_states,
    output_head,
    prefix_is_exact,
    response_logprobs,
    trunk_states,
)
from rlhfkit.models.value import ValueHead

log = logging.getLogger("rlhfkit")


class PolicyOutput(NamedTuple):
    """What one trunk pass over (prompt + response) rows gives, at the R response positions."""

    logps: Tensor
    """(B, R) log-probs of the response tokens at the sampling temperature."""
    values: Tensor | None
    """(B, R) value of the state before each response token (None without a value head: GRPO, RLOO)."""
    entropy: Tensor | None
    """(B, R) entropy of the policy's next-token distribution, when asked for."""


class ActorCritic(nn.Module):
    """The policy (`policy`), its value head (`value_head`) and whatever the reference needs.

    `reference_model` holds the frozen full copy (``full`` mode) and `reference_layers` the frozen
    copies of the trained top blocks (``top_layers`` mode); both are submodules so that they follow
    the model across devices, and neither has trainable parameters, so checkpoints skip them.
    """

    def __init__(
        self,
        policy: nn.Module,
        value_head: ValueHead | None,
        mode: str,
        *,
        value_trunk_grad: bool = True,
        reference_model: nn.Module | None = None,
        reference_layers: nn.ModuleList | None = None,
        frozen_blocks: int = 0,
    ) -> None:
        super().__init__()
        self.policy = policy
        self.value_head = value_head
        self.mode = mode
        self.value_trunk_grad = value_trunk_grad
        self.reference_model = reference_model
        self.reference_layers = reference_layers
        self.frozen_blocks = frozen_blocks

    @torch.no_grad()
    def trunk(self, input_ids: Tensor, attention_mask: Tensor, *, shared_columns: int = 0) -> Tensor | None:
        """(B, T, H) output of the `frozen_blocks` bottom blocks, shared by policy and reference and
        unchanged by training; None when no block is skipped. `shared_columns`: see `trunk_states`
        (the prompt's columns, for rows that repeat a prompt)."""
        if not self.frozen_blocks:
            return None
        return trunk_states(
            self.policy, input_ids, attention_mask, self.frozen_blocks, shared_columns=shared_columns
        ).states

    def _prefix(self, trunk: Tensor | None) -> Prefix | None:
        return None if trunk is None else Prefix(self.frozen_blocks, trunk)

    def forward(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        response_start: int,
        *,
        temperature: float = 1.0,
        with_entropy: bool = False,
        trunk: Tensor | None = None,
        share_prompt: bool = False,
    ) -> PolicyOutput:
        """Log-probs, values (and entropy) of the response positions from ONE pass of the trunk.

        ``input_ids``/``attention_mask`` are ``(B, P + R)`` with responses starting at column
        ``response_start`` = P. Position t-1's hidden state predicts token t and is the state whose
        value V(s_t) is estimated. The output head runs on response positions only, and the logits
        are divided by the sampling temperature (Huang et al. 2024, detail 10). `trunk` (from
        `self.trunk` on the same rows and columns) skips the frozen bottom blocks. `share_prompt`: rows
        repeating a prompt (a group) run its columns once (`rlhfkit.models.lm.hidden_states`).
        """
        shared = response_start if share_prompt else 0
        h = hidden_states(self.policy, input_ids, attention_mask, prefix=self._prefix(trunk), shared_columns=shared)
        h = h[:, response_start - 1 : -1]  # (B, R, H)
        logits = output_head(self.policy)(h).float() / temperature  # (B, R, V)
        logps = logprobs_from_logits(logits, input_ids[:, response_start:])
        values = None if self.value_head is None else self.value_head(h if self.value_trunk_grad else h.detach())
        entropy = entropy_from_logits(logits) if with_entropy else None
        return PolicyOutput(logps, values, entropy)

    @torch.no_grad()
    def reference_logps(
        self,
        input_ids: Tensor,
        attention_mask: Tensor,
        response_start: int,
        *,
        temperature: float = 1.0,
        trunk: Tensor | None = None,
        share_prompt: bool = False,
    ) -> Tensor:
        """(B, R) log-probs of the response tokens under the frozen reference policy."""
        with REFERENCE_VIEWS[self.mode](self) as reference:
            logps, _ = response_logprobs(
                reference,
                input_ids,
                attention_mask,
                response_start,
                temperature=temperature,
                prefix=self._prefix(trunk),
                shared_columns=response_start if share_prompt else 0,
            )
        return logps


# --- the reference, per mode -------------------------------------------------------------------


@contextlib.contextmanager
def _adapters_off(ac: ActorCritic) -> Iterator[nn.Module]:
    with ac.policy.disable_adapter():  # type: ignore[operator]  # peft's, not declared on nn.Module
        yield ac.policy


@contextlib.contextmanager
def _original_top_layers(ac: ActorCritic) -> Iterator[nn.Module]:
    layers = decoder_layers(ac.policy)
    assert ac.reference_layers is not None
    start = len(layers) - len(ac.reference_layers)
    trained = [layers[start + i] for i in range(len(ac.reference_layers))]
    try:
        for i, frozen in enumerate(ac.reference_layers):
            layers[start + i] = frozen
        yield ac.policy
    finally:
        for i, module in enumerate(trained):
            layers[start + i] = module


@contextlib.contextmanager
def _separate_copy(ac: ActorCritic) -> Iterator[nn.Module]:
    assert ac.reference_model is not None
    yield ac.reference_model


REFERENCE_VIEWS: dict[str, Callable[[ActorCritic], contextlib.AbstractContextManager[nn.Module]]] = {
    "lora": _adapters_off,
    "top_layers": _original_top_layers,
    "full": _separate_copy,
}
"""Policy mode -> a context manager yielding a module that computes the reference policy."""


# --- building the policy, per mode -------------------------------------------------------------


def _frozen(module: nn.Module) -> nn.Module:
    for p in module.parameters():
        p.requires_grad_(False)
    return module.eval()


def _build_lora(
    model: nn.Module, value_head: ValueHead | None, *, lora: LoRAConfig, value_trunk_grad: bool, **_: object
) -> ActorCritic:
    policy = apply_lora(model, lora)
    return ActorCritic(policy, value_head, "lora", value_trunk_grad=value_trunk_grad)


def _build_top_layers(
    model: nn.Module, value_head: ValueHead | None, *, train_layers: int, value_trunk_grad: bool, **_: object
) -> ActorCritic:
    layers = decoder_layers(model)
    if not 0 < train_layers <= len(layers):
        raise ValueError(f"train_layers must be in [1, {len(layers)}] for this model, got {train_layers}")
    _frozen(model)  # embeddings, the bottom blocks, the final norm and the (often tied) output head
    top = list(layers)[len(layers) - train_layers :]
    copies = nn.ModuleList(_frozen(copy.deepcopy(layer)) for layer in top)
    for layer in top:
        layer.requires_grad_(True)
    return ActorCritic(model, value_head, "top_layers", value_trunk_grad=value_trunk_grad, reference_layers=copies)


def _build_full(model: nn.Module, value_head: ValueHead | None, *, value_trunk_grad: bool, **_: object) -> ActorCritic:
    reference = _frozen(copy.deepcopy(model))
    model.requires_grad_(True)
    return ActorCritic(model, value_head, "full", value_trunk_grad=value_trunk_grad, reference_model=reference)


PolicyMode = Literal["lora", "top_layers", "full"]
"""The keys of `POLICY_MODES`, as a type for config fields."""

POLICY_MODES: dict[str, Callable[..., ActorCritic]] = {
    "lora": _build_lora,
    "top_layers": _build_top_layers,
    "full": _build_full,
}
"""Policy mode -> builder ``fn(base_model, value_head, lora=, train_layers=, value_trunk_grad=)``."""


def build_actor_critic(
    model: nn.Module,
    value_head: ValueHead | None,
    mode: str,
    *,
    lora: LoRAConfig,
    train_layers: int,
    value_trunk_grad: bool,
    cache_frozen_trunk: bool = False,
) -> ActorCritic:
    """Policy + reference + value on the base `model` (see the module docstring). Dropout stays off:
    the model is put in eval mode for good, so log-probs at rollout and update time agree
    (Huang et al. 2024, detail 13). With `cache_frozen_trunk`, `frozen_blocks` is set to the number
    of frozen bottom blocks the policy shares with its reference, if resuming this decoder from a
    cached trunk is exact (`prefix_is_exact`); otherwise it stays 0."""
    if mode not in POLICY_MODES:
        raise ValueError(f"unknown policy_mode {mode!r}; choose from {sorted(POLICY_MODES)}")
    ac = POLICY_MODES[mode](model, value_head, lora=lora, train_layers=train_layers, value_trunk_grad=value_trunk_grad)
    ac.eval()
    # In full mode the reference is a separate copy, but the embeddings train there, so nothing is shared.
    blocks = frozen_bottom_blocks(ac.policy) if cache_frozen_trunk else 0
    if blocks and prefix_is_exact(ac.policy, blocks):
        ac.frozen_blocks = blocks
    elif blocks:
        log.warning(
            "cache_frozen_trunk: this model's decoder cannot resume from cached block outputs; "
            "every pass runs all blocks"
        )
    return ac


@dataclass(frozen=True)
class PolicyModeSettings:
    """What of the policy trains and how the reference is kept, as config fields: a base of the settings
    of every trainer built on `ActorCritic` (PPO, GRPO / RLOO)."""

    policy_mode: PolicyMode = "lora"
    """What trains: 'lora' (adapters; reference = adapters off), 'top_layers' (the top `train_layers`
    blocks; reference = a frozen copy of just those blocks) or 'full' (everything; reference = a full copy)."""
    lora: LoRAConfig = LoRAConfig(layers=8)
    """Adapters for policy_mode=lora (lora.r=16, lora.alpha=32, ...). By default only the top 8 blocks get
    adapters, so the update's backward pass and its saved activations stop there (lora.layers=0: every block)."""
    train_layers: int = 2
    """Top transformer blocks trained in policy_mode=top_layers."""
    cache_frozen_trunk: bool = True
    """Run the frozen bottom blocks (below lora.layers or train_layers) once per rollout and reuse their
    output for the reference and every update pass: the same numbers for less compute, at the memory of
    rollout x tokens x hidden floats (false: run every block in every pass)."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # cooperative: a config mixes this in
        if parent is not None:
            parent()
        require(self.train_layers > 0, f"train_layers must be positive, got {self.train_layers}")

    def build(self, base: nn.Module, value_head: ValueHead | None, *, value_trunk_grad: bool = True) -> ActorCritic:
        """Policy + reference (+ value head) on `base`, as these settings say (`build_actor_critic`)."""
        return build_actor_critic(
            base,
            value_head,
            self.policy_mode,
            lora=self.lora,
            train_layers=self.train_layers,
            value_trunk_grad=value_trunk_grad,
            cache_frozen_trunk=self.cache_frozen_trunk,
        )
