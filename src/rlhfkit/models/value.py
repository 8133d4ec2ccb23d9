"""The PPO value head: a scalar V(s) read from the policy's own trunk.

PPO needs a critic. Ziegler et al. 2019 and TRL keep a second full network for it; rlhfkit puts a
linear head on the policy's final hidden states instead, so one forward pass gives both the
log-probs of the sampled tokens and their values, and no second model sits in memory. The head
starts at zero (every value 0: the advantages at the first step are the plain rewards-to-go) or
from a reward model's head (Ouyang et al. 2022, sec. 3.5 initialize the value function from the
RM), with the reward model's normalization folded in so the initial values are on the scale of the
normalized scores.
"""

from __future__ import annotations

import json
from collections.abc import Callable
from pathlib import Path
from typing import Literal

import torch
from safetensors.torch import load_file
from torch import Tensor, nn


class ValueHead(nn.Module):
    """``(B, T, H) -> (B, T)``: ``V = w . h + b`` at every position, computed in float32."""

    def __init__(self, hidden_size: int) -> None:
        super().__init__()
        self.weight = nn.Parameter(torch.zeros(hidden_size))
        self.bias = nn.Parameter(torch.zeros(()))

    def forward(self, hidden: Tensor) -> Tensor:
        # float32 whatever the trunk ran in: values feed GAE sums over hundreds of tokens.
        return hidden.float() @ self.weight + self.bias


def zero_value_head(hidden_size: int, source: str = "") -> ValueHead:
    """A head whose every value is 0 (weights and bias zero)."""
    return ValueHead(hidden_size)


def value_head_from_reward(hidden_size: int, source: str) -> ValueHead:
    """A head initialized from the reward-model directory `source`.

    ``reward_head.safetensors`` holds ``weight`` (K, H) and ``bias`` (K,); ``reward.json`` the
    normalization ``gain``/``bias`` per head (see `rlhfkit.models.reward`). The normalized ensemble
    mean ``mean_k(gain_k * (w_k . h + b_k) + c_k)`` is linear in ``h``, so it folds into one head:
    ``w = mean_k(gain_k * w_k)``, ``b = mean_k(gain_k * b_k + c_k)``.
    """
    from rlhfkit.models.reward import HEAD_FILE, META_FILE, RewardMeta

    path = Path(source)
    if not (path / HEAD_FILE).is_file() or not (path / META_FILE).is_file():
        raise ValueError(f"value_init=reward needs a reward-model directory; {path} lacks {HEAD_FILE} or {META_FILE}")
    meta = RewardMeta.from_json(json.loads((path / META_FILE).read_text()))
    tensors = load_file(str(path / HEAD_FILE))
    weight, bias = tensors["weight"].float(), tensors["bias"].float()  # (K, H), (K,)
    if weight.shape[1] != hidden_size:
        raise ValueError(
            f"the reward model's hidden size is {weight.shape[1]} but the policy's is {hidden_size}: "
            f"a value head cannot start from it (use value_init=zero)"
        )
    k = weight.shape[0]
    gain = torch.tensor(meta.normalization.gain or (1.0,) * k)
    shift = torch.tensor(meta.normalization.bias or (0.0,) * k)
    head = ValueHead(hidden_size)
    with torch.no_grad():
        head.weight.copy_((gain[:, None] * weight).mean(dim=0))
        head.bias.copy_((gain * bias + shift).mean())
    return head


ValueInit = Literal["zero", "reward"]
"""The keys of `VALUE_INITS`, as a type for config fields."""

VALUE_INITS: dict[str, Callable[[int, str], ValueHead]] = {
    "zero": zero_value_head,
    "reward": value_head_from_reward,
}
"""Value-head initializations by name: ``fn(hidden_size, reward_dir) -> ValueHead``."""


def make_value_head(init: str, hidden_size: int, reward_dir: str = "") -> ValueHead:
    """``VALUE_INITS[init](hidden_size, reward_dir)`` with a clear error for an unknown name."""
    try:
        build = VALUE_INITS[init]
    except KeyError:
        raise ValueError(f"unknown value_init {init!r}; choose from {sorted(VALUE_INITS)}") from None
    return build(hidden_size, reward_dir)
