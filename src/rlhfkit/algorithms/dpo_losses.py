"""Direct preference optimisation losses (DPO and variants) over sequence log-probabilities.

Every pairwise variant is ``fn(batch: PreferenceLogps, beta: float, **hyper) -> DPOLossOutput`` with
per-pair losses ``(B,)``; the trainer takes their mean (as TRL's DPOTrainer does). Inputs are
log-probs SUMMED over response tokens; variants that need length-averaged log-probs divide by
``chosen_lengths`` / ``rejected_lengths`` themselves.

Implicit-reward convention (used for logging and reward accuracy): ``beta * (logp - ref_logp)``
for reference-based losses, ``beta * mean_token_logp`` for the reference-free SimPO and ORPO, both
as in TRL. Notation below: ``d = (logp_c - ref_c) - (logp_r - ref_r)``, ``sigma`` the logistic.
"""

from __future__ import annotations

import inspect
from collections.abc import Callable
from dataclasses import dataclass
from typing import Literal, NamedTuple, TypeVar

import torch
import torch.nn.functional as F
from torch import Tensor

from rlhfkit.algorithms.common import log1mexp
from rlhfkit.algorithms.reward_losses import plackett_luce


@dataclass(frozen=True)
class PreferenceLogps:
    """Sequence log-probabilities of a batch of (chosen, rejected) pairs, each field ``(B,)``."""

    chosen_logps: Tensor
    """Policy log-prob of the chosen response, summed over its tokens."""
    rejected_logps: Tensor
    """Policy log-prob of the rejected response, summed over its tokens."""
    ref_chosen_logps: Tensor | None = None
    """Reference-model log-prob of the chosen response (summed); None for reference-free losses."""
    ref_rejected_logps: Tensor | None = None
    """Reference-model log-prob of the rejected response (summed); None for reference-free losses."""
    chosen_lengths: Tensor | None = None
    """Number of response tokens of the chosen response (IPO, SimPO, ORPO average by it)."""
    rejected_lengths: Tensor | None = None
    """Number of response tokens of the rejected response."""
    chosen_nll: Tensor | None = None
    """Mean per-token negative log-likelihood of the chosen response (the SFT term of ORPO)."""

    def __post_init__(self) -> None:
        shape = self.chosen_logps.shape
        if len(shape) != 1:
            raise ValueError(f"chosen_logps must be (B,), got {tuple(shape)}")
        for name in (
            "rejected_logps",
            "ref_chosen_logps",
            "ref_rejected_logps",
            "chosen_lengths",
            "rejected_lengths",
            "chosen_nll",
        ):
            value = getattr(self, name)
            if value is not None and value.shape != shape:
                raise ValueError(f"{name} has shape {tuple(value.shape)}, expected {tuple(shape)}")
        if (self.ref_chosen_logps is None) != (self.ref_rejected_logps is None):
            raise ValueError("give both ref_chosen_logps and ref_rejected_logps, or neither")

    def logratios(self) -> tuple[Tensor, Tensor]:
        """``(logp_c - ref_c, logp_r - ref_r)``; raises if the reference log-probs are missing."""
        if self.ref_chosen_logps is None or self.ref_rejected_logps is None:
            raise ValueError("this loss needs reference log-probs (ref_chosen_logps, ref_rejected_logps)")
        return self.chosen_logps - self.ref_chosen_logps, self.rejected_logps - self.ref_rejected_logps

    def average_logps(self) -> tuple[Tensor, Tensor]:
        """Length-averaged policy log-probs ``(logp_c / len_c, logp_r / len_r)``."""
        chosen_len, rejected_len = self.lengths()
        return self.chosen_logps / chosen_len, self.rejected_logps / rejected_len

    def lengths(self) -> tuple[Tensor, Tensor]:
        """Token counts as floats clamped to >= 1; raises if missing."""
        if self.chosen_lengths is None or self.rejected_lengths is None:
            raise ValueError("this loss needs chosen_lengths and rejected_lengths (token counts)")
        dtype = self.chosen_logps.dtype
        return self.chosen_lengths.to(dtype).clamp(min=1.0), self.rejected_lengths.to(dtype).clamp(min=1.0)


class DPOLossOutput(NamedTuple):
    """Per-pair results of a preference loss."""

    losses: Tensor
    """``(B,)`` loss per pair; minimise the mean."""
    chosen_rewards: Tensor
    """``(B,)`` detached implicit reward of the chosen response."""
    rejected_rewards: Tensor
    """``(B,)`` detached implicit reward of the rejected response."""


def _reference_rewards(batch: PreferenceLogps, beta: float) -> tuple[Tensor, Tensor]:
    chosen, rejected = batch.logratios()
    return beta * chosen.detach(), beta * rejected.detach()


def _smoothed_sigmoid(logits: Tensor, label_smoothing: float) -> Tensor:
    """``-(1 - eps) log sigma(z) - eps log sigma(-z)``: BCE against the soft label ``1 - eps``."""
    return -(1.0 - label_smoothing) * F.logsigmoid(logits) - label_smoothing * F.logsigmoid(-logits)


F_ = TypeVar("F_", bound=Callable[..., "DPOLossOutput"])


def reference_free(fn: F_) -> F_:
    """Mark a loss that never reads reference log-probs: training it needs no reference pass."""
    fn.reference_free = True  # type: ignore[attr-defined]
    return fn


def _check_smoothing(label_smoothing: float, upper: float) -> None:
    if not 0.0 <= label_smoothing < upper:
        raise ValueError(f"label_smoothing must lie in [0, {upper}), got {label_smoothing}")


def sigmoid_loss(batch: PreferenceLogps, beta: float) -> DPOLossOutput:
    """DPO (Rafailov et al. 2023, eq. 7): ``-log sigma(beta * d)``.

    TRL: ``loss_type="sigmoid"`` in DPOTrainer (same formula).
    """
    chosen, rejected = batch.logratios()
    losses = -F.logsigmoid(beta * (chosen - rejected))
    return DPOLossOutput(losses, *_reference_rewards(batch, beta))


def cdpo_loss(batch: PreferenceLogps, beta: float, *, label_smoothing: float = 0.1) -> DPOLossOutput:
    """Conservative DPO (Mitchell 2023, "A note on DPO with noisy preferences"):
    ``-(1 - eps) log sigma(beta d) - eps log sigma(-beta d)``, i.e. DPO with labels flipped with
    probability eps.

    TRL: ``loss_type="sigmoid"`` with ``label_smoothing=eps`` in releases up to 0.2x (the newest
    DPOTrainer dropped smoothing from "sigmoid" and keeps this form only inside its "aot" losses).
    """
    _check_smoothing(label_smoothing, 0.5)
    chosen, rejected = batch.logratios()
    losses = _smoothed_sigmoid(beta * (chosen - rejected), label_smoothing)
    return DPOLossOutput(losses, *_reference_rewards(batch, beta))


def robust_loss(batch: PreferenceLogps, beta: float, *, label_smoothing: float = 0.1) -> DPOLossOutput:
    """Robust DPO (Chowdhury et al. 2024, "Provably Robust DPO: Aligning Language Models with
    Noisy Feedback", the rDPO loss):
    ``[-(1 - eps) log sigma(beta d) + eps log sigma(-beta d)] / (1 - 2 eps)``, an unbiased estimate
    of the clean DPO loss when a fraction eps of the labels is flipped.

    TRL: ``loss_type="robust"`` (same formula, ``label_smoothing`` in [0, 0.5)).
    """
    _check_smoothing(label_smoothing, 0.5)
    chosen, rejected = batch.logratios()
    z = beta * (chosen - rejected)
    losses = (-(1.0 - label_smoothing) * F.logsigmoid(z) + label_smoothing * F.logsigmoid(-z)) / (
        1.0 - 2.0 * label_smoothing
    )
    return DPOLossOutput(losses, *_reference_rewards(batch, beta))


def hinge_loss(batch: PreferenceLogps, beta: float) -> DPOLossOutput:
    """SLiC-style hinge on the DPO logit (Zhao et al. 2023, SLiC-HF calibration loss; Liu et al. 2023, RSO):
    ``relu(1 - beta * d)``.

    TRL: ``loss_type="hinge"`` (same formula).
    """
    chosen, rejected = batch.logratios()
    losses = torch.relu(1.0 - beta * (chosen - rejected))
    return DPOLossOutput(losses, *_reference_rewards(batch, beta))


def ipo_loss(batch: PreferenceLogps, beta: float) -> DPOLossOutput:
    """IPO (Azar et al. 2023, eq. 17) with beta as tau: ``(d_avg - 1 / (2 beta))^2``.

    As in TRL's current DPOTrainer (``loss_type="ipo"``), the log-ratios are LENGTH-AVERAGED:
    ``d_avg = (logp_c - ref_c) / len_c - (logp_r - ref_r) / len_r`` (lengths clamped to >= 1); TRL
    notes the IPO authors confirmed this normalisation. The logged rewards stay ``beta * (logp -
    ref_logp)`` on summed log-probs, also as TRL logs them.
    """
    chosen, rejected = batch.logratios()
    chosen_len, rejected_len = batch.lengths()
    delta = chosen / chosen_len - rejected / rejected_len
    losses = (delta - 1.0 / (2.0 * beta)) ** 2
    return DPOLossOutput(losses, *_reference_rewards(batch, beta))


@reference_free
def simpo_loss(
    batch: PreferenceLogps,
    beta: float,
    *,
    gamma: float = 0.5,
    label_smoothing: float = 0.0,
    sft_weight: float = 0.0,
) -> DPOLossOutput:
    """SimPO (Meng et al. 2024, eq. 6), reference-free:
    ``-log sigma(beta * (avg_c - avg_r) - gamma)`` with ``avg = logp / length``.

    TRL: CPOTrainer ``loss_type="simpo"``, whose ``simpo_gamma`` is this ``gamma`` (it writes the
    logit as ``beta * (avg_c - avg_r - gamma / beta)``, the same thing) and whose label smoothing
    is the cDPO form. CPOTrainer also adds ``cpo_alpha`` times the chosen NLL; ``sft_weight`` plays
    that role here (0 = pure SimPO, which is TRL with ``cpo_alpha=0``), using ``chosen_nll``.
    Rewards: ``beta * avg``, as TRL.
    """
    _check_smoothing(label_smoothing, 0.5)
    avg_chosen, avg_rejected = batch.average_logps()
    losses = _smoothed_sigmoid(beta * (avg_chosen - avg_rejected) - gamma, label_smoothing)
    if sft_weight != 0.0:
        if batch.chosen_nll is None:
            raise ValueError("simpo with sft_weight != 0 needs chosen_nll")
        losses = losses + sft_weight * batch.chosen_nll
    return DPOLossOutput(losses, beta * avg_chosen.detach(), beta * avg_rejected.detach())


@reference_free
def orpo_loss(batch: PreferenceLogps, beta: float) -> DPOLossOutput:
    """ORPO (Hong et al. 2024, eqs. 6-7), reference-free; ``beta`` is the paper's lambda:
    ``nll_c - beta * log sigma(log_odds)``, with average log-probs ``a`` and
    ``log_odds = (a_c - a_r) - (log(1 - e^{a_c}) - log(1 - e^{a_r}))``.

    TRL: ORPOTrainer computes the same odds-ratio term from length-averaged log-probs and the loss
    ``nll - mean(beta * log sigma(log_odds))``. Its NLL is the token-mean cross-entropy over all
    chosen tokens of the batch, whereas ``chosen_nll`` here is per pair; the two means agree when
    the chosen responses have equal lengths. Rewards: ``beta * avg``, as TRL.
    """
    if batch.chosen_nll is None:
        raise ValueError("orpo needs chosen_nll (mean token NLL of the chosen response)")
    avg_chosen, avg_rejected = batch.average_logps()
    # log1mexp is the accurate log(1 - p); avg log-probs are < 0 for any non-degenerate model.
    log_odds = (avg_chosen - avg_rejected) - (log1mexp(avg_chosen) - log1mexp(avg_rejected))
    losses = batch.chosen_nll - beta * F.logsigmoid(log_odds)
    return DPOLossOutput(losses, beta * avg_chosen.detach(), beta * avg_rejected.detach())


DPOLossName = Literal["sigmoid", "cdpo", "robust", "hinge", "ipo", "simpo", "orpo"]
"""The keys of `DPO_LOSSES`, as a type for config fields."""

DPO_LOSSES: dict[str, Callable[..., DPOLossOutput]] = {
    "sigmoid": sigmoid_loss,
    "cdpo": cdpo_loss,
    "robust": robust_loss,
    "hinge": hinge_loss,
    "ipo": ipo_loss,
    "simpo": simpo_loss,
    "orpo": orpo_loss,
}
"""Pairwise preference losses by name: ``fn(batch: PreferenceLogps, beta, **hyper) -> DPOLossOutput``.
A variant's own hyper-parameters are the keyword-only parameters of its function (with defaults);
a function marked `reference_free` never reads reference log-probs."""

REFERENCE_FREE_LOSSES: frozenset[str] = frozenset(
    n for n, fn in DPO_LOSSES.items() if getattr(fn, "reference_free", False)
)
"""Names in :data:`DPO_LOSSES` marked `reference_free` (no reference model needed)."""


def loss_hyperparameters(name: str) -> frozenset[str]:
    """The keyword-only hyper-parameters that ``DPO_LOSSES[name]`` accepts (read from its signature)."""
    params = inspect.signature(DPO_LOSSES[name]).parameters.values()
    return frozenset(p.name for p in params if p.kind is inspect.Parameter.KEYWORD_ONLY)


LOSS_HYPERPARAMETERS: frozenset[str] = frozenset().union(*(loss_hyperparameters(n) for n in DPO_LOSSES))
"""Every hyper-parameter some loss of :data:`DPO_LOSSES` accepts: a DPO config has one field for each."""


class RankingDPOLossOutput(NamedTuple):
    """Per-ranking results of :func:`plackett_luce_dpo`."""

    losses: Tensor
    """``(B,)`` Plackett-Luce negative log-likelihood of each ranking."""
    rewards: Tensor
    """``(B, K)`` detached implicit rewards ``beta * (logp - ref_logp)`` (0 at masked columns)."""


def plackett_luce_dpo(
    policy_logps: Tensor, ref_logps: Tensor, mask: Tensor | None, beta: float
) -> RankingDPOLossOutput:
    """DPO for K-way rankings (Rafailov et al. 2023, appendix A.3, eq. 20).

    The Plackett-Luce likelihood of the ranking under implicit rewards ``beta * (logp - ref_logp)``;
    column 0 is the best response, masked columns are absent. For K = 2 it equals
    :func:`sigmoid_loss`.

    Args:
        policy_logps: ``(B, K)`` summed policy log-probs of the K responses.
        ref_logps: ``(B, K)`` the same under the reference model.
        mask: ``(B, K)`` valid responses, or None when every ranking has K items.
        beta: DPO temperature.
    """
    if policy_logps.shape != ref_logps.shape or policy_logps.dim() != 2:
        raise ValueError(f"need (B, K) inputs of one shape, got {tuple(policy_logps.shape)}, {tuple(ref_logps.shape)}")
    rewards = beta * (policy_logps - ref_logps)
    losses = plackett_luce(rewards, mask)
    detached = rewards.detach()
    if mask is not None:
        detached = torch.where(mask.bool(), detached, torch.zeros_like(detached))
    return RankingDPOLossOutput(losses, detached)


RANKING_DPO_LOSSES: dict[str, Callable[[Tensor, Tensor, Tensor | None, float], RankingDPOLossOutput]] = {
    "plackett_luce_dpo": plackett_luce_dpo,
}
"""K-way preference losses by name: ``fn(policy_logps (B, K), ref_logps (B, K), mask, beta)``."""
