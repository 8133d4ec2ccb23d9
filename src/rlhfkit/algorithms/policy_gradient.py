"""The critic-free policy loss: a clipped surrogate per token, then one of the loss aggregations.

Per token (Schulman et al. 2017, eq. 7, with the clip range split in two as in DAPO, Yu et al. 2025,
"clip-higher"): ``l_t = max(-A_t * r_t, -A_t * clip(r_t, 1 - eps_low, 1 + eps_high))``, where the
ratio ``r_t`` is per token (PPO, GRPO) or per sequence (GSPO, Zheng et al. 2025), both tables below.

Aggregation turns the ``(B, T)`` per-token losses of ONE micro-batch into its share of the optimizer
step's loss. Every divisor is a count over the WHOLE step (all micro-batches of the accumulation
window and all processes), carried in `StepCounts`: summing the micro-batches' shares gives the
step's loss however the step is split, which is what makes micro-batch 8 x accumulation 1 equal
micro-batch 1 x accumulation 8 when responses differ in length (dividing each micro-batch by its own
token count, as OpenRLHF did until 2026, weights short responses up).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal, NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.common import masked_mean, masked_sum


class StepCounts(NamedTuple):
    """Counts over a whole optimizer step, the divisors of every aggregation."""

    tokens: float
    """Valid response tokens in the step (on several processes: the global count / world size, as each
    process's gradient is then averaged). 0 means nothing to divide: the loss sum is 0 too."""
    sequences: float
    """Responses in the step (the same convention)."""
    max_tokens: int
    """The response-length budget (``max_new_tokens``): Dr. GRPO's constant normaliser."""


def token_mean(loss: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """Every valid token of the step weighs the same (DAPO; TRL's ``loss_type="dapo"``)."""
    return masked_sum(loss, mask) / (counts.tokens or 1.0)


def seq_mean_token_mean(loss: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """Mean over each response's tokens, then over the step's responses (the original GRPO, Shao et al.
    2024, eq. 3): a short response's tokens weigh more than a long one's."""
    return masked_mean(loss, mask, dim=1).sum() / (counts.sequences or 1.0)


def seq_mean_token_sum_norm(loss: Tensor, mask: Tensor, counts: StepCounts) -> Tensor:
    """Sum over each response's tokens divided by a constant (the length budget), mean over responses
    (Dr. GRPO, Liu et al. 2025): no length bias in either direction."""
    return masked_sum(loss, mask) / ((counts.sequences or 1.0) * max(counts.max_tokens, 1))


LossAggregation = Literal["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"]
"""The names in :data:`LOSS_AGGREGATIONS`."""

LOSS_AGGREGATIONS: dict[str, Callable[[Tensor, Tensor, StepCounts], Tensor]] = {
    "token_mean": token_mean,
    "seq_mean_token_mean": seq_mean_token_mean,
    "seq_mean_token_sum_norm": seq_mean_token_sum_norm,
}
"""Loss aggregations by name: ``fn(per_token_loss (B, T), mask (B, T), StepCounts) -> scalar`` share."""


# --- ratios --------------------------------------------------------------------------------------


def token_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """``exp(logp_t - old_logp_t)`` per token."""
    return torch.exp(logp - old_logp)


def sequence_ratio(logp: Tensor, old_logp: Tensor, mask: Tensor) -> Tensor:
    """GSPO's length-normalised sequence ratio ``s_i = exp(mean_t(logp_t - old_logp_t))`` (Zheng et al.
    2025, eq. 7), at every token as ``sg[s_i] * exp(logp_t - sg[logp_t])`` (their GSPO-token form, eq. 13):
    equal to ``s_i`` in value, with each token's gradient scaled by the sequence's ratio."""
    seq_log_ratio = masked_mean(logp - old_logp, mask, dim=1).detach()
    return torch.exp(seq_log_ratio.unsqueeze(1) + logp - logp.detach())


RatioLevel = Literal["token", "sequence"]
"""The names in :data:`RATIOS`."""

RATIOS: dict[str, Callable[[Tensor, Tensor, Tensor], Tensor]] = {
    "token": token_ratio,
    "sequence": sequence_ratio,
}
"""Importance ratios by name: ``fn(logp, old_logp, mask) -> (B, T)``."""


class ClippedLoss(NamedTuple):
    """Result of :func:`clipped_token_loss`."""

    loss: Tensor
    """(B, T) per-token loss (0 at padding), to be aggregated."""
    clip_low: Tensor
    """(B, T) bool: the ratio fell below ``1 - eps_low`` where the advantage is negative (clip active)."""
    clip_high: Tensor
    """(B, T) bool: the ratio rose above ``1 + eps_high`` where the advantage is positive (clip active)."""


def clipped_token_loss(
    logp: Tensor,
    old_logp: Tensor,
    advantages: Tensor,
    mask: Tensor,
    *,
    eps_low: float,
    eps_high: float,
    ratio: RatioLevel = "token",
) -> ClippedLoss:
    """The clipped surrogate per token, negated (module docstring), with asymmetric clip bounds."""
    if eps_low <= 0 or eps_high <= 0:
        raise ValueError(f"clip bounds must be > 0, got eps_low={eps_low}, eps_high={eps_high}")
    if not (logp.shape == old_logp.shape == advantages.shape == mask.shape):
        raise ValueError("logp, old_logp, advantages and mask must share one (B, T) shape")
    r = RATIOS[ratio](logp, old_logp, mask)
    unclipped = -advantages * r
    clipped = -advantages * torch.clamp(r, 1.0 - eps_low, 1.0 + eps_high)
    valid = mask.bool()
    loss = torch.where(valid, torch.maximum(unclipped, clipped), torch.zeros_like(unclipped))
    with torch.no_grad():
        active = clipped > unclipped
        low = active & (advantages < 0) & (r < 1.0 - eps_low) & valid
        high = active & (advantages > 0) & (r > 1.0 + eps_high) & valid
    return ClippedLoss(loss, low, high)
