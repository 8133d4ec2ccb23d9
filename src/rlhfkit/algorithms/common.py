"""Masked reductions, whitening and log-prob helpers shared by every RLHF loss.

Shapes: B = batch, T = tokens, V = vocabulary. A *mask* is a bool or 0/1 float tensor of the same
shape as the values it masks; positions where it is 0/False are padding and never contribute.
"""

from __future__ import annotations

import math

import torch
from torch import Tensor

WHITEN_EPS = 1e-8
"""Variance floor of :func:`masked_whiten` (Huang et al. 2024, "The N+ implementation details of RLHF
with PPO", detail on advantage whitening uses 1e-8)."""

_LOG_HALF = -math.log(2.0)


def _as_float_mask(mask: Tensor, like: Tensor) -> Tensor:
    """Cast ``mask`` to the floating dtype of ``like`` so it can weight values."""
    if mask.shape != like.shape:
        raise ValueError(f"mask shape {tuple(mask.shape)} != values shape {tuple(like.shape)}")
    dtype = like.dtype if like.is_floating_point() else torch.float32
    return mask.to(dtype)


def masked_sum(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Sum of ``x`` over the positions where ``mask`` is set.

    Args:
        x: values, any shape, e.g. ``(B, T)``.
        mask: same shape as ``x``.
        dim: reduce this dimension only; ``None`` reduces everything to a scalar.
    """
    m = _as_float_mask(mask, x)
    # where() rather than x * m: padding may hold inf/nan (e.g. -inf log-probs) and 0 * inf = nan.
    masked = torch.where(m.bool(), x, torch.zeros_like(x))
    return masked.sum() if dim is None else masked.sum(dim=dim)


def masked_mean(x: Tensor, mask: Tensor, dim: int | None = None) -> Tensor:
    """Mean of ``x`` over the positions where ``mask`` is set.

    A slice with no valid position gives 0 (the count is clamped to 1) instead of NaN, so an empty
    response cannot poison a whole batch.

    Args:
        x: values, e.g. ``(B, T)``.
        mask: same shape as ``x``.
        dim: reduce this dimension only (``(B, T)`` with ``dim=1`` gives ``(B,)``); ``None`` gives a
            scalar: the token-mean over every valid position of the batch.
    """
    total = masked_sum(x, mask, dim)
    count = _as_float_mask(mask, x)
    count = count.sum() if dim is None else count.sum(dim=dim)
    return total / count.clamp(min=1.0)


def masked_var(x: Tensor, mask: Tensor, unbiased: bool = True) -> Tensor:
    """Variance of ``x`` over all valid positions (scalar).

    With ``unbiased=True`` the Bessel correction n / (n - 1) is applied, n being the number of valid
    positions, as in the PPO implementations of Huang et al. 2024 and TRL.

    Raises:
        ValueError: if fewer than 2 positions are valid and ``unbiased`` is set (undefined variance).
    """
    mean = masked_mean(x, mask)
    var = masked_mean((x - mean) ** 2, mask)
    if not unbiased:
        return var
    n = _as_float_mask(mask, x).sum()
    if n.item() < 2:
        raise ValueError("masked_var(unbiased=True) needs at least 2 valid positions")
    return var * n / (n - 1)


def masked_whiten(x: Tensor, mask: Tensor, shift_mean: bool = True) -> Tensor:
    """Normalise ``x`` to zero mean and unit variance over the valid positions.

    ``(x - mean) / sqrt(var + 1e-8)`` with the unbiased masked variance (Huang et al. 2024, "The N+
    implementation details of RLHF with PPO", advantage whitening). With ``shift_mean=False`` the
    mean is added back, i.e. only the scale changes; this is what PPO does to *rewards* so that the
    sign of a reward is preserved.

    Masked positions are set to 0 in the output so that padding never leaks into later sums.

    Args:
        x: values, e.g. advantages ``(B, T)``.
        mask: same shape as ``x``.
        shift_mean: subtract the mean (True) or keep it (False).
    """
    mean = masked_mean(x, mask)
    var = masked_var(x, mask)
    whitened = (x - mean) * torch.rsqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))


def log1mexp(x: Tensor) -> Tensor:
    """``log(1 - exp(x))`` for ``x < 0``, accurate over the whole range.

    Maechler 2012, "Accurately computing log(1 - exp(-|a|))": use ``log(-expm1(x))`` near 0 and
    ``log1p(-exp(x))`` far from it. Each branch sees a clamped input so the branch that ``where``
    discards cannot produce inf/NaN gradients.
    """
    near_zero = x > _LOG_HALF
    a = torch.log(-torch.expm1(x.clamp(min=_LOG_HALF)))
    b = torch.log1p(-torch.exp(x.clamp(max=_LOG_HALF)))
    return torch.where(near_zero, a, b)


def _float_row(row: Tensor) -> Tensor:
    """One row of logits in at least float32 (copies only when the input is bf16/fp16)."""
    return row if row.dtype in (torch.float32, torch.float64) else row.float()


def logprobs_from_logits(logits: Tensor, labels: Tensor, *, ignore_index: int = -100) -> Tensor:
    """Log-probability of each label token: ``log_softmax(logits)[..., label]``.

    Computed as ``logit[label] - logsumexp(logits)`` one batch row at a time, so the only
    ``(T, V)``-sized temporary is for a single row; for bf16/fp16 logits that row is upcast to
    float32, so no full float32 copy of the ``(B, T, V)`` tensor (nor a full ``log_softmax`` output)
    is ever materialised. The result is float32 for low-precision inputs (float64 stays float64)
    because these values are summed over hundreds of tokens downstream.

    Args:
        logits: ``(B, T, V)``, position ``t`` scoring ``labels[:, t]`` (shift before calling).
        labels: ``(B, T)`` token ids in ``[0, V)``; positions equal to ``ignore_index`` give 0.
        ignore_index: label value marking padding (the Hugging Face convention is -100).

    Returns:
        ``(B, T)`` log-probabilities.
    """
    if logits.shape[:-1] != labels.shape:
        raise ValueError(f"logits {tuple(logits.shape)} and labels {tuple(labels.shape)} disagree")
    ignored = labels == ignore_index
    safe_labels = labels.masked_fill(ignored, 0)
    rows = []
    for row_logits, row_labels in zip(logits, safe_labels, strict=True):
        lf = _float_row(row_logits)
        picked = lf.gather(-1, row_labels.unsqueeze(-1)).squeeze(-1)
        rows.append(picked - torch.logsumexp(lf, dim=-1))
    out = torch.stack(rows)
    return out.masked_fill(ignored, 0.0)


def entropy_from_logits(logits: Tensor) -> Tensor:
    """Entropy of the categorical distribution at each position, ``(B, T, V) -> (B, T)``.

    ``H = logsumexp(l) - sum_v softmax(l)_v * l_v`` (the same identity TRL and OpenRLHF use), row by
    row in float32 for the same memory reason as :func:`logprobs_from_logits`.
    """
    rows = []
    for row_logits in logits:
        lf = _float_row(row_logits)
        probs = torch.softmax(lf, dim=-1)
        rows.append(torch.logsumexp(lf, dim=-1) - (probs * lf).sum(dim=-1))
    return torch.stack(rows)


def sequence_logps(token_logps: Tensor, mask: Tensor, average: bool = False) -> Tensor:
    """Per-sequence log-probability from per-token ones.

    Args:
        token_logps: ``(B, T)`` token log-probabilities.
        mask: ``(B, T)`` response-token mask.
        average: divide by the number of valid tokens (the length-normalised log-prob used by
            SimPO, ORPO and TRL's IPO); an empty row gives 0.

    Returns:
        ``(B,)`` summed (or averaged) log-probabilities.
    """
    if average:
        return masked_mean(token_logps, mask, dim=1)
    return masked_sum(token_logps, mask, dim=1)


def masked_moments(x: Tensor, mask: Tensor) -> Tensor:
    """``[sum, sum of squares, count]`` of ``x`` over the valid positions: a (3,) float64 tensor that
    adds up across shards, so shards (one per process) can be whitened with the statistics of their
    union (`whiten_with_moments`)."""
    m = _as_float_mask(mask, x).double()
    xd = x.double() * m
    return torch.stack([xd.sum(), (xd * xd).sum(), m.sum()])


def whiten_with_moments(x: Tensor, mask: Tensor, moments: Tensor, shift_mean: bool = True) -> Tensor:
    """`masked_whiten` with the mean and the unbiased variance taken from `moments` (those of
    `masked_moments`, possibly summed over every shard of a batch) instead of from ``x`` alone."""
    total, squares, n = (float(v) for v in moments)
    if n < 2:
        raise ValueError(f"whitening needs at least 2 valid positions, got {n:.0f}")
    mean = total / n
    var = max(0.0, (squares - n * mean * mean) / (n - 1))  # one pass in float64: the shards' sums add
    whitened = (x - mean) / math.sqrt(var + WHITEN_EPS)
    if not shift_mean:
        whitened = whitened + mean
    return torch.where(mask.bool(), whitened, torch.zeros_like(whitened))
