"""Reward-model training losses over scalar rewards for comparisons, ties, rankings and ratings.

Every loss returns one value per example, shape ``(B,)``; the trainer takes the mean. Inputs are
the reward model's scalar outputs.

Calling conventions by table:

* ``PAIRWISE_LOSSES``: ``bradley_terry(r_chosen, r_rejected, margin=None)``,
  ``bradley_terry_ties(r_a, r_b, tie, margin=None)``, ``davidson(r_a, r_b, tie, log_nu)``; in the
  two tie-aware losses ``r_a`` is the preferred response whenever ``tie`` is False.
* ``RANKING_LOSSES``: ``fn(scores (B, K), mask (B, K) | None)``, column 0 the best.
* ``RATING_LOSSES``: ``rating_regression(pred, rating, low, high)``,
  ``ordinal_thresholds(pred, rating_index, thresholds)``.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Literal

import torch
import torch.nn.functional as F
from torch import Tensor

from rlhfkit.algorithms.common import log1mexp


def bradley_terry(r_chosen: Tensor, r_rejected: Tensor, margin: Tensor | None = None) -> Tensor:
    """Bradley-Terry pairwise loss ``-log sigmoid(r_c - r_r - margin)``, ``(B,) -> (B,)``.

    Ouyang et al. 2022 (InstructGPT) eq. 1; the margin (how much better the chosen one is, larger
    for stronger preferences) is Touvron et al. 2023 (Llama 2) eq. 2. The mean over the batch equals
    TRL RewardTrainer's loss.
    """
    diff = r_chosen - r_rejected
    if margin is not None:
        diff = diff - margin
    return -F.logsigmoid(diff)


def bradley_terry_ties(r_a: Tensor, r_b: Tensor, tie: Tensor, margin: Tensor | None = None) -> Tensor:
    """Bradley-Terry where a tie counts as half a win each way, ``(B,) -> (B,)``.

    Non-tie rows (``r_a`` preferred): ``-log sigmoid(d - margin)`` with ``d = r_a - r_b``.
    Tie rows: ``0.5 * (-log sigmoid(d) - log sigmoid(-d))``, minimised at ``d = 0``; the margin does
    not apply to ties. This is the BT likelihood with a soft label of 1/2.
    """
    diff = r_a - r_b
    win = bradley_terry(r_a, r_b, margin)
    half = 0.5 * (-F.logsigmoid(diff) - F.logsigmoid(-diff))
    return torch.where(tie.bool(), half, win)


def davidson(r_a: Tensor, r_b: Tensor, tie: Tensor, log_nu: Tensor) -> Tensor:
    """Davidson (1970) model of paired comparisons with ties, negative log-likelihood ``(B,)``.

    With ``nu = exp(log_nu) > 0`` and ``D = e^{r_a} + e^{r_b} + nu * e^{(r_a + r_b) / 2}``:
    ``P(a > b) = e^{r_a} / D`` and ``P(tie) = nu * e^{(r_a + r_b) / 2} / D``. Non-tie rows assume
    ``r_a`` won. Computed in log space (logsumexp), so large rewards do not overflow.

    Args:
        r_a, r_b: ``(B,)`` rewards, ``r_a`` the winner of non-tie rows.
        tie: ``(B,)`` bool.
        log_nu: scalar learnable tie parameter (log of nu, so nu stays positive).
    """
    tie_logit = log_nu + 0.5 * (r_a + r_b)
    log_denominator = torch.logsumexp(torch.stack([r_a, r_b, tie_logit.expand_as(r_a)]), dim=0)
    log_p = torch.where(tie.bool(), tie_logit, r_a) - log_denominator
    return -log_p


def _reverse_logcumsumexp(x: Tensor) -> Tensor:
    """``out[..., k] = logsumexp(x[..., k:])`` along the last dim."""
    return torch.logcumsumexp(x.flip(-1), dim=-1).flip(-1)


def plackett_luce(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """Plackett-Luce negative log-likelihood of a ranking, ``(B, K) -> (B,)``.

    ``-sum_k [s_k - log sum_{j >= k} e^{s_j}]`` over the valid columns, column 0 being the best
    (Plackett 1975; Luce 1959; the K-way reward loss of Zhu et al. 2023). Masked columns are absent
    from the ranking, so rankings of different lengths share one padded tensor. For K = 2 this is
    :func:`bradley_terry`.
    """
    valid = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.bool()
    neg_inf = torch.full_like(scores, float("-inf"))
    masked_scores = torch.where(valid, scores, neg_inf)
    tail_lse = _reverse_logcumsumexp(masked_scores)
    # Masked slots (and the empty tail after the last item) are -inf; keep them out of the sum.
    terms = torch.where(valid, scores - torch.where(valid, tail_lse, scores), torch.zeros_like(scores))
    return -terms.sum(dim=-1)


def all_pairs_bradley_terry(scores: Tensor, mask: Tensor | None = None) -> Tensor:
    """InstructGPT ranking loss: mean over the ``C(K, 2)`` ordered pairs of the BT loss, ``(B,)``.

    Ouyang et al. 2022 eq. 1: for every pair ``i < j`` of valid columns (``i`` ranked higher),
    ``-log sigmoid(s_i - s_j)``, divided by the number of valid pairs of the row. A row with fewer
    than two valid items gives 0.
    """
    k = scores.shape[-1]
    valid = torch.ones_like(scores, dtype=torch.bool) if mask is None else mask.bool()
    upper = torch.triu(torch.ones(k, k, dtype=torch.bool, device=scores.device), diagonal=1)
    pair_valid = valid.unsqueeze(-1) & valid.unsqueeze(-2) & upper
    diffs = scores.unsqueeze(-1) - scores.unsqueeze(-2)
    pair_losses = torch.where(pair_valid, -F.logsigmoid(diffs), torch.zeros_like(diffs))
    n_pairs = pair_valid.sum(dim=(-1, -2)).clamp(min=1).to(scores.dtype)
    return pair_losses.sum(dim=(-1, -2)) / n_pairs


def rating_regression(pred: Tensor, rating: Tensor, low: float, high: float) -> Tensor:
    """Squared error against an absolute rating rescaled to [0, 1], ``(B,) -> (B,)``.

    ``(pred - (rating - low) / (high - low))^2``: a Likert rating in ``[low, high]`` becomes a target
    in [0, 1] so the reward scale does not depend on the rating scale of the form.
    """
    if high <= low:
        raise ValueError(f"need high > low, got low={low}, high={high}")
    target = (rating.to(pred.dtype) - low) / (high - low)
    return (pred - target) ** 2


def increasing_thresholds(raw: Tensor) -> Tensor:
    """Map unconstrained parameters ``(C - 1,)`` to strictly increasing ordinal thresholds.

    ``theta_0 = raw_0`` and ``theta_c = theta_{c-1} + softplus(raw_c)``, so gradient steps can never
    break the ordering. Initialise ``raw`` with e.g. ``torch.zeros(C - 1)``.
    """
    if raw.dim() != 1 or raw.numel() == 0:
        raise ValueError(f"raw thresholds must be a non-empty 1-D tensor, got shape {tuple(raw.shape)}")
    steps = torch.cat([raw[:1], F.softplus(raw[1:])])
    return torch.cumsum(steps, dim=0)


def ordinal_thresholds(pred: Tensor, rating_index: Tensor, thresholds: Tensor) -> Tensor:
    """Cumulative-link (ordered logit) negative log-likelihood, ``(B,) -> (B,)``.

    McCullagh 1980, "Regression models for ordinal data": with increasing thresholds
    ``theta_0 < ... < theta_{C-2}``, ``P(y <= c) = sigmoid(theta_c - f)``, so
    ``P(y = c) = sigmoid(theta_c - f) - sigmoid(theta_{c-1} - f)`` (with ``theta_{-1} = -inf`` and
    ``theta_{C-1} = +inf``). The difference is taken in log space for accuracy.

    Args:
        pred: ``(B,)`` reward ``f``.
        rating_index: ``(B,)`` long class index in ``[0, C)``.
        thresholds: ``(C - 1,)`` strictly increasing (build them with :func:`increasing_thresholds`).
    """
    n_cuts = thresholds.numel()
    if n_cuts == 0:
        raise ValueError("need at least one threshold (two classes)")
    if n_cuts > 1 and not bool((thresholds[1:] > thresholds[:-1]).all()):
        raise ValueError("thresholds must be strictly increasing; build them with increasing_thresholds()")
    idx = rating_index.long()
    if bool((idx < 0).any()) or bool((idx > n_cuts).any()):
        raise ValueError(f"rating_index must lie in [0, {n_cuts}]")
    upper = thresholds[idx.clamp(max=n_cuts - 1)]
    lower = thresholds[(idx - 1).clamp(min=0)]
    log_p_lowest = F.logsigmoid(upper - pred)  # class 0: P(y <= 0)
    log_p_highest = F.logsigmoid(pred - lower)  # class C-1: 1 - P(y <= C-2)
    is_middle = (idx > 0) & (idx < n_cuts)
    log_cdf_upper = F.logsigmoid(upper - pred)
    log_cdf_lower = F.logsigmoid(lower - pred)
    # Edge rows get a harmless -1 so log1mexp's gradient stays finite where where() discards it.
    gap = torch.where(is_middle, log_cdf_lower - log_cdf_upper, torch.full_like(pred, -1.0))
    log_p_middle = log_cdf_upper + log1mexp(gap)
    log_p = torch.where(idx == 0, log_p_lowest, torch.where(idx == n_cuts, log_p_highest, log_p_middle))
    return -log_p


def reward_centering(r_chosen: Tensor, r_rejected: Tensor | None = None, coef: float = 0.01) -> Tensor:
    """Auxiliary penalty keeping rewards centred on 0 (scalar).

    Eisenstein et al. 2023, "Helping or Herding? Reward Model Ensembles Mitigate but do not
    Eliminate Reward Hacking", eq. 1: ``coef * mean((r_c + r_r)^2)``, identical to TRL's
    ``center_rewards_coefficient`` term. With ``r_rejected=None`` it is ``coef * mean(r^2)`` over
    single rewards (e.g. rankings or ratings). The BT losses only see differences, so without it
    the reward offset drifts freely. Eisenstein et al. use coef = 0.01.
    """
    total = r_chosen if r_rejected is None else r_chosen + r_rejected
    return coef * torch.mean(total**2)


PairwiseLossName = Literal["bradley_terry", "ties_half", "davidson"]
"""The keys of `PAIRWISE_LOSSES`, as a type for config fields."""

PAIRWISE_LOSSES: dict[str, Callable[..., Tensor]] = {
    "bradley_terry": bradley_terry,
    "ties_half": bradley_terry_ties,
    "davidson": davidson,
}
"""Pairwise losses by name (see the module docstring for their arguments)."""

RankingLossName = Literal["all_pairs", "plackett_luce"]
"""The keys of `RANKING_LOSSES`, as a type for config fields."""

RANKING_LOSSES: dict[str, Callable[[Tensor, Tensor | None], Tensor]] = {
    "plackett_luce": plackett_luce,
    "all_pairs": all_pairs_bradley_terry,
}
"""K-way ranking losses by name: ``fn(scores (B, K), mask (B, K) | None) -> (B,)``."""

RatingLossName = Literal["regression", "ordinal"]
"""The keys of `RATING_LOSSES`, as a type for config fields."""

RATING_LOSSES: dict[str, Callable[..., Tensor]] = {
    "regression": rating_regression,
    "ordinal": ordinal_thresholds,
}
"""Absolute-rating losses by name (see the module docstring for their arguments)."""
