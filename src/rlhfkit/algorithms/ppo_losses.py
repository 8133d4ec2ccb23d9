"""PPO clipped policy and value losses (Schulman et al. 2017, "Proximal Policy Optimization").

All inputs are ``(B, T)`` per-token tensors with a ``(B, T)`` response mask. Losses reduce with the
token-mean over every valid token of the batch (:func:`masked_mean` with ``dim=None``), the
convention of TRL's PPO trainer and of Huang et al. 2024.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.common import masked_mean, masked_var


class PolicyLossOutput(NamedTuple):
    """Result of :func:`policy_loss_clipped`."""

    loss: Tensor
    """Scalar loss to minimise (differentiable w.r.t. ``logp``)."""
    clip_frac: Tensor
    """Scalar, detached: fraction of valid tokens where the clipped term was the active one."""
    approx_kl: Tensor
    """Scalar, detached: token-mean of ``0.5 * (logp - old_logp)^2`` (k2 estimator)."""


class ValueLossOutput(NamedTuple):
    """Result of :func:`value_loss_clipped`."""

    loss: Tensor
    """Scalar loss to minimise (differentiable w.r.t. ``values``)."""
    clip_frac: Tensor
    """Scalar, detached: fraction of valid tokens where the clipped error was the larger one."""


def _check_shapes(*tensors: Tensor) -> None:
    shape = tensors[0].shape
    if any(t.shape != shape for t in tensors):
        raise ValueError(f"all inputs must share one shape, got {[tuple(t.shape) for t in tensors]}")


def policy_loss_clipped(
    logp: Tensor, old_logp: Tensor, advantages: Tensor, mask: Tensor, clip_eps: float
) -> PolicyLossOutput:
    """Clipped surrogate objective, negated (Schulman et al. 2017, eq. 7).

    ``ratio = exp(logp - old_logp)``;
    ``loss = token_mean(max(-A * ratio, -A * clip(ratio, 1 - eps, 1 + eps)))``.

    ``approx_kl`` is the k2 estimator ``0.5 * (logp - old_logp)^2`` averaged over valid tokens (as
    TRL's PPO trainer logs it); it tracks how far this epoch moved the policy from the sampling one.

    Args:
        logp: ``(B, T)`` log-probs of the sampled tokens under the current policy.
        old_logp: ``(B, T)`` the same under the policy that sampled them (no gradient).
        advantages: ``(B, T)`` advantages (usually whitened).
        mask: ``(B, T)`` response-token mask.
        clip_eps: clip range epsilon, > 0.
    """
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    _check_shapes(logp, old_logp, advantages, mask)
    log_ratio = logp - old_logp
    ratio = torch.exp(log_ratio)
    unclipped = -advantages * ratio
    clipped = -advantages * torch.clamp(ratio, 1.0 - clip_eps, 1.0 + clip_eps)
    loss = masked_mean(torch.maximum(unclipped, clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((clipped > unclipped).to(logp.dtype), mask)
        approx_kl = masked_mean(0.5 * log_ratio**2, mask)
    return PolicyLossOutput(loss=loss, clip_frac=clip_frac, approx_kl=approx_kl)


def value_loss_clipped(
    values: Tensor, old_values: Tensor, returns: Tensor, mask: Tensor, clip_eps: float
) -> ValueLossOutput:
    """Clipped value loss (Schulman et al. 2017 code; Huang et al. 2024, "value function loss
    clipping").

    ``v_clip = old + clip(v - old, -eps, eps)``;
    ``loss = 0.5 * token_mean(max((v - R)^2, (v_clip - R)^2))``.

    Args:
        values: ``(B, T)`` current critic values.
        old_values: ``(B, T)`` values at rollout time (no gradient).
        returns: ``(B, T)`` GAE returns.
        mask: ``(B, T)`` response-token mask.
        clip_eps: how far the value may move from ``old_values`` before clipping, > 0.
    """
    if clip_eps <= 0:
        raise ValueError(f"clip_eps must be > 0, got {clip_eps}")
    _check_shapes(values, old_values, returns, mask)
    clipped_values = old_values + torch.clamp(values - old_values, -clip_eps, clip_eps)
    err = (values - returns) ** 2
    err_clipped = (clipped_values - returns) ** 2
    loss = 0.5 * masked_mean(torch.maximum(err, err_clipped), mask)
    with torch.no_grad():
        clip_frac = masked_mean((err_clipped > err).to(values.dtype), mask)
    return ValueLossOutput(loss=loss, clip_frac=clip_frac)


def explained_variance(values: Tensor, returns: Tensor, mask: Tensor) -> Tensor:
    """``1 - Var[R - V] / Var[R]`` over valid tokens (scalar, detached).

    1 is a perfect critic, 0 is no better than predicting the mean, negative is worse. NaN when the
    returns are constant (the ratio is undefined).
    """
    _check_shapes(values, returns, mask)
    with torch.no_grad():
        var_returns = masked_var(returns, mask)
        if var_returns.item() == 0.0:
            return torch.full_like(var_returns, float("nan"))
        return 1.0 - masked_var(returns - values, mask) / var_returns
