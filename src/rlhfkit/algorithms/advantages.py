"""Per-token rewards and the advantage estimators: GAE (PPO, with a critic) and the critic-free ones
(GRPO, RLOO, REINFORCE++, REINFORCE++-baseline), all in one table, :data:`ADVANTAGE_ESTIMATORS`.

Shapes: B = batch, T = response tokens. Masks are right-padded (each row's valid tokens come first);
left padding also works for :func:`gae` and :func:`ppo_token_rewards`, holes inside a row do not.
Critic-free estimators see a batch laid out as consecutive groups of ``group_size`` samples of one prompt.
"""

from __future__ import annotations

import inspect
import math
from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.common import masked_moments, masked_whiten, whiten_with_moments


def _last_valid_index(mask: Tensor) -> tuple[Tensor, Tensor]:
    """Index of the last valid token of each row of a ``(B, T)`` mask and whether the row has one."""
    valid = mask.bool()
    positions = torch.arange(1, mask.shape[1] + 1, device=mask.device)
    # Largest (position + 1) over valid tokens; 0 means the row is empty.
    last_plus_one = (valid.long() * positions).max(dim=1).values
    return (last_plus_one - 1).clamp(min=0), last_plus_one > 0


def ppo_token_rewards(scores: Tensor, kl: Tensor, mask: Tensor, beta: float) -> Tensor:
    """Per-token PPO reward: ``-beta * kl`` at every response token, plus the reward-model score at
    the last valid token of each row.

    Ziegler et al. 2019, sec. 2.2: ``R(x, y) = r(x, y) - beta * KL``, with the KL spread over tokens
    and the sequence-level score credited to the final token (as torchtune's ``get_rewards_ppo`` and
    TRL's PPO trainer do). Rows with no valid token get all zeros.

    Args:
        scores: ``(B,)`` reward-model scores.
        kl: ``(B, T)`` per-token KL estimate (e.g. :func:`rlhfkit.algorithms.kl.kl_k1`).
        mask: ``(B, T)`` response-token mask.
        beta: KL coefficient (``KLController.value``).

    Returns:
        ``(B, T)`` rewards, 0 at masked positions.
    """
    if kl.shape != mask.shape or scores.shape != kl.shape[:1]:
        raise ValueError(
            f"shapes disagree: scores {tuple(scores.shape)}, kl {tuple(kl.shape)}, mask {tuple(mask.shape)}"
        )
    valid = mask.bool()
    rewards = torch.where(valid, -beta * kl, torch.zeros_like(kl))
    last, has_token = _last_valid_index(mask)
    bonus = torch.where(has_token, scores.to(rewards.dtype), torch.zeros_like(scores, dtype=rewards.dtype))
    return rewards.scatter_add(1, last.unsqueeze(1), bonus.unsqueeze(1))


def gae(rewards: Tensor, values: Tensor, mask: Tensor, gamma: float, lam: float) -> tuple[Tensor, Tensor]:
    """Generalized Advantage Estimation (Schulman et al. 2016, eqs. 11-16).

    ``delta_t = r_t + gamma * V_{t+1} - V_t`` and ``A_t = delta_t + gamma * lam * A_{t+1}``, where the
    value after the last valid token is 0 (the episode ends there) and the recursion does not carry
    across padding. Returns are ``A_t + V_t`` (the lambda-return the critic regresses on).

    A reverse scan over T with vectorised batch operations; differentiable, though callers normally
    run it under ``torch.no_grad()``.

    Args:
        rewards: ``(B, T)`` per-token rewards (:func:`ppo_token_rewards`).
        values: ``(B, T)`` critic values of the states before each token.
        mask: ``(B, T)`` response-token mask.
        gamma: discount in [0, 1].
        lam: GAE lambda in [0, 1].

    Returns:
        ``(advantages, returns)``, both ``(B, T)`` with 0 at masked positions.
    """
    if not (0.0 <= gamma <= 1.0 and 0.0 <= lam <= 1.0):
        raise ValueError(f"gamma and lam must lie in [0, 1], got gamma={gamma}, lam={lam}")
    if rewards.shape != values.shape or values.shape != mask.shape:
        raise ValueError(
            f"shapes disagree: rewards {tuple(rewards.shape)}, values {tuple(values.shape)}, mask {tuple(mask.shape)}"
        )
    valid = mask.bool()
    zeros = torch.zeros_like(values)
    v = torch.where(valid, values, zeros)
    r = torch.where(valid, rewards, zeros)
    m = valid.to(values.dtype)
    batch, length = values.shape
    next_value = values.new_zeros(batch)
    next_valid = values.new_zeros(batch)
    carry = values.new_zeros(batch)
    columns: list[Tensor] = []
    for t in reversed(range(length)):
        delta = r[:, t] + gamma * next_value - v[:, t]
        # next_valid == 0 at the last valid token: the episode ends, nothing flows back.
        carry = delta + gamma * lam * next_valid * carry
        columns.append(carry)
        next_value, next_valid = v[:, t], m[:, t]
    advantages = torch.stack(columns[::-1], dim=1) * m
    returns = (advantages + v) * m
    return advantages, returns


def _groups(scores: Tensor, group_size: int) -> Tensor:
    """``(n_prompts * G,) -> (n_prompts, G)``, validating the layout."""
    if scores.dim() != 1:
        raise ValueError(f"scores must be 1-D (B,), got shape {tuple(scores.shape)}")
    if group_size < 2:
        raise ValueError(f"group_size must be >= 2 for group baselines, got {group_size}")
    if scores.numel() % group_size != 0:
        raise ValueError(f"batch of {scores.numel()} scores is not a multiple of group_size={group_size}")
    return scores.view(-1, group_size)


RewardScale = Literal["group", "batch", "none"]
"""What GRPO divides the centred rewards by: the group's std, the whole batch's std, or nothing (Dr. GRPO)."""


def grpo_advantages(scores: Tensor, group_size: int, eps: float = 1e-6, scale: RewardScale = "group") -> Tensor:
    """Group-relative advantages (Shao et al. 2024, DeepSeekMath, eq. 3 / sec. 4.1.2).

    Within each group of ``group_size`` consecutive samples of one prompt:
    ``A_i = (r_i - mean(r)) / (std(r) + eps)``, ``std`` the sample standard deviation with Bessel's
    correction (TRL's GRPOTrainer, ``torch.std``). ``scale="batch"`` divides by the std of the whole
    batch instead (Hu et al. 2025 argue a group's std is too noisy with small groups); ``scale="none"``
    only centres (Dr. GRPO, Liu et al. 2025: the group std favours too-easy and too-hard prompts).

    Args:
        scores: ``(B,)`` with ``B = n_prompts * group_size``.
        group_size: samples per prompt, >= 2.
        eps: added to the std, so a group with identical rewards gives 0, not NaN.
        scale: 'group', 'batch' or 'none' (above).

    Returns:
        ``(B,)`` advantages, one per sample.
    """
    grouped = _groups(scores, group_size)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if scale == "group":
        centered = centered / (grouped.std(dim=1, keepdim=True) + eps)
    elif scale == "batch":
        centered = centered / (scores.std() + eps)
    elif scale != "none":
        raise ValueError(f"scale must be 'group', 'batch' or 'none', got {scale!r}")
    return centered.reshape(-1)


def rloo_advantages(scores: Tensor, group_size: int) -> Tensor:
    """REINFORCE Leave-One-Out advantages (Ahmadian et al. 2024, "Back to Basics: Revisiting REINFORCE Style
    Optimization for Learning from Human Feedback in LLMs", RLOO estimator).

    ``A_i = r_i - mean_{j != i} r_j = r_i - (sum_j r_j - r_i) / (G - 1)`` within each group of
    ``group_size`` consecutive samples.

    Args:
        scores: ``(B,)`` with ``B = n_prompts * group_size``.
        group_size: samples per prompt, >= 2.

    Returns:
        ``(B,)`` advantages.
    """
    grouped = _groups(scores, group_size)
    others_mean = (grouped.sum(dim=1, keepdim=True) - grouped) / (group_size - 1)
    return (grouped - others_mean).reshape(-1)


def returns_to_go(rewards: Tensor, mask: Tensor, gamma: float = 1.0) -> Tensor:
    """``G_t = sum_{s >= t} gamma^(s - t) r_s`` over each row's valid tokens; 0 at padding."""
    valid = mask.bool()
    r = torch.where(valid, rewards, torch.zeros_like(rewards))
    carry = rewards.new_zeros(rewards.shape[0])
    columns: list[Tensor] = []
    for t in reversed(range(rewards.shape[1])):
        carry = r[:, t] + gamma * carry
        columns.append(carry)
    return torch.where(valid, torch.stack(columns[::-1], dim=1), torch.zeros_like(rewards))


# --- the table -----------------------------------------------------------------------------------


class AdvantageInputs(NamedTuple):
    """What an estimator reads. ``token_rewards`` holds each response's score at its last valid token
    (:func:`ppo_token_rewards`), plus ``-beta * kl_t`` at every token when the KL is in the reward."""

    token_rewards: Tensor
    """(B, T) per-token rewards."""
    mask: Tensor
    """(B, T) response-token mask."""
    group_size: int
    """Samples per prompt: the batch is ``B / group_size`` consecutive groups."""
    values: Tensor | None = None
    """(B, T) critic values (GAE only)."""
    sum_over_processes: Callable[[Tensor], Tensor] | None = None
    """With several processes, each holding its share of the batch: sums a statistics tensor over them,
    so batch-wide quantities (whitening, the batch std) are those of the whole batch. None: one process."""


def _batch_whiten(x: Tensor, mask: Tensor, sum_over_processes: Callable[[Tensor], Tensor] | None) -> Tensor:
    """`masked_whiten` over the whole batch: this process's share, or the union of every process's."""
    if sum_over_processes is None:
        return masked_whiten(x, mask)
    return whiten_with_moments(x, mask, sum_over_processes(masked_moments(x, mask)))


def _per_token(sequence_advantages: Tensor, mask: Tensor) -> Tensor:
    """A sequence's advantage at each of its valid tokens (the outcome-reward convention of GRPO/RLOO)."""
    return sequence_advantages.unsqueeze(1) * mask.to(sequence_advantages.dtype)


def estimate_grpo(x: AdvantageInputs, *, scale_rewards: RewardScale = "group", eps: float = 1e-6) -> Tensor:
    """GRPO: a response's total reward centred by its group (:func:`grpo_advantages`), at every token."""
    total = torch.where(x.mask.bool(), x.token_rewards, torch.zeros_like(x.token_rewards)).sum(dim=1)
    if scale_rewards == "batch" and x.sum_over_processes is not None:  # the std of every process's scores
        total_sum, squares, n = (float(v) for v in x.sum_over_processes(masked_moments(total, torch.ones_like(total))))
        std = math.sqrt(max(0.0, (squares - total_sum**2 / n) / (n - 1)))
        return _per_token(grpo_advantages(total, x.group_size, scale="none") / (std + eps), x.mask)
    return _per_token(grpo_advantages(total, x.group_size, eps=eps, scale=scale_rewards), x.mask)


def estimate_rloo(x: AdvantageInputs) -> Tensor:
    """RLOO: a response's total reward minus the mean of the others of its group, at every token."""
    total = torch.where(x.mask.bool(), x.token_rewards, torch.zeros_like(x.token_rewards)).sum(dim=1)
    return _per_token(rloo_advantages(total, x.group_size), x.mask)


def estimate_reinforce_pp(x: AdvantageInputs, *, gamma: float = 1.0) -> Tensor:
    """REINFORCE++ (Hu et al. 2025): each token's return-to-go (score plus the KL penalties still to
    come), whitened over every valid token of the batch; no critic and no group baseline."""
    return _batch_whiten(returns_to_go(x.token_rewards, x.mask, gamma), x.mask, x.sum_over_processes)


def estimate_reinforce_pp_baseline(x: AdvantageInputs, *, gamma: float = 1.0) -> Tensor:
    """REINFORCE++-baseline (Hu et al. 2025, sec. 3.2): the group's mean total reward is subtracted at
    each response's last token (a per-prompt baseline), then returns-to-go whitened over the batch."""
    total = torch.where(x.mask.bool(), x.token_rewards, torch.zeros_like(x.token_rewards)).sum(dim=1)
    baseline = _groups(total, x.group_size).mean(dim=1, keepdim=True).expand(-1, x.group_size).reshape(-1)
    rewards = ppo_token_rewards(-baseline, torch.zeros_like(x.token_rewards), x.mask, 0.0) + x.token_rewards
    return _batch_whiten(returns_to_go(rewards, x.mask, gamma), x.mask, x.sum_over_processes)


def estimate_gae(x: AdvantageInputs, *, gamma: float = 1.0, lam: float = 0.95) -> Tensor:
    """GAE with the critic's values (PPO); :func:`gae` also gives the returns the critic regresses on."""
    if x.values is None:
        raise ValueError("the 'gae' estimator needs critic values")
    return gae(x.token_rewards, x.values, x.mask, gamma, lam)[0]


AdvantageName = Literal["grpo", "rloo", "reinforce_pp", "reinforce_pp_baseline", "gae"]
"""The names in :data:`ADVANTAGE_ESTIMATORS`."""

ADVANTAGE_ESTIMATORS: dict[str, Callable[..., Tensor]] = {
    "grpo": estimate_grpo,
    "rloo": estimate_rloo,
    "reinforce_pp": estimate_reinforce_pp,
    "reinforce_pp_baseline": estimate_reinforce_pp_baseline,
    "gae": estimate_gae,
}
"""Advantage estimators by name: ``fn(AdvantageInputs, **hyper) -> (B, T)`` advantages, 0 at padding.
Hyper-parameters are keyword-only with defaults (read them with :func:`estimator_hyperparameters`)."""

GROUP_ESTIMATORS = frozenset({"grpo", "rloo", "reinforce_pp_baseline"})
"""Estimators whose baseline is the group, so they need ``group_size >= 2``."""


def estimator_hyperparameters(name: str) -> frozenset[str]:
    """The keyword-only hyper-parameters ``ADVANTAGE_ESTIMATORS[name]`` accepts (from its signature)."""
    params = inspect.signature(ADVANTAGE_ESTIMATORS[name]).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)
