"""PPO clipped policy and value losses (Schulman et al. 2017, "Proximal Policy Optimization").

All inputs are ``(B, T)`` per-token tensors with a ``(B, T)`` response mask. Losses reduce with the
token-mean over every valid token of the batch (:func:`masked_mean` with ``dim=None``), the
convention of TRL's PPO trainer and of Huang et al. 2024.
"""

from __future__ import annotations

from typing import NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.common import masked_mean


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


def explained_variance_sums(values: Tensor, returns: Tensor, mask: Tensor) -> list[float]:
    """``[n, sum R, sum R^2, sum E, sum E^2]`` over valid tokens, E = R - V, in float64: summed over
    processes, `explained_variance_from_sums` gives the explained variance of the whole step, the same
    on every process (a per-process value is undefined on a process whose returns are all equal)."""
    _check_shapes(values, returns, mask)
    with torch.no_grad():
        m = mask.to(torch.float64)
        r, e = returns.to(torch.float64), (returns - values).to(torch.float64)
        return [float(x) for x in (m.sum(), (r * m).sum(), (r * r * m).sum(), (e * m).sum(), (e * e * m).sum())]


def explained_variance_from_sums(sums: list[float]) -> float:
    """``1 - Var[E] / Var[R]`` from `explained_variance_sums` (NaN when the returns are constant). Both
    variances count the same tokens, so Bessel's correction cancels: the unbiased ratio is the same."""
    n, r, r2, e, e2 = sums
    var_returns = r2 / n - (r / n) ** 2 if n else 0.0
    if var_returns <= 1e-12 * max(1.0, r2 / max(n, 1.0)):  # constant up to float64 rounding
        return float("nan")
    return 1.0 - (e2 / n - (e / n) ** 2) / var_returns
