"""Per-token PPO rewards, Generalized Advantage Estimation and critic-free group advantages.

Shapes: B = batch, T = response tokens. Masks are right-padded (each row's valid tokens come first);
left padding also works for :func:`gae` and :func:`ppo_token_rewards`, holes inside a row do not.
"""

from __future__ import annotations

from collections.abc import Callable

import torch
from torch import Tensor


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


def grpo_advantages(scores: Tensor, group_size: int, eps: float = 1e-6, scale: bool = True) -> Tensor:
    """Group-relative advantages (Shao et al. 2024, DeepSeekMath, eq. 3 / sec. 4.1.2).

    Within each group of ``group_size`` consecutive samples of one prompt:
    ``A_i = (r_i - mean(r)) / (std(r) + eps)``. ``std`` is the unbiased sample standard deviation
    (as in TRL's GRPOTrainer, ``torch.std``). ``scale=False`` drops the division (Dr. GRPO, Liu et
    al. 2025, who argue it biases towards too-easy and too-hard prompts).

    Args:
        scores: ``(B,)`` with ``B = n_prompts * group_size``.
        group_size: samples per prompt, >= 2.
        eps: added to the std so that a group with identical rewards gives 0, not NaN.
        scale: divide by the group std.

    Returns:
        ``(B,)`` advantages, one per sample (broadcast to every token by the trainer).
    """
    grouped = _groups(scores, group_size)
    centered = grouped - grouped.mean(dim=1, keepdim=True)
    if scale:
        centered = centered / (grouped.std(dim=1, keepdim=True) + eps)
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


ADVANTAGE_ESTIMATORS: dict[str, Callable[[Tensor, int], Tensor]] = {
    "grpo": grpo_advantages,
    "rloo": rloo_advantages,
}
"""Critic-free group estimators by name; each is called ``fn(scores (B,), group_size) -> (B,)``."""
