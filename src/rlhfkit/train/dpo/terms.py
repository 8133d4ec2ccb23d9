"""A batch's DPO loss terms: every better/worse pair under a pairwise loss, or whole rankings.

U units (pairs or rankings: what the step's loss averages over) and P pairs (what is logged).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.dpo_losses import DPO_LOSSES, PreferenceLogps, plackett_luce_dpo
from rlhfkit.train.dpo.batches import pair_indices
from rlhfkit.train.dpo.config import DPOSettings


class PreferenceTerms(NamedTuple):
    """A batch's loss terms and what is logged about it. U units (pairs or rankings), P pairs."""

    losses: Tensor
    """(U,) loss per unit; the step minimises their mean."""
    chosen_rewards: Tensor
    """(P,) detached implicit reward of the better response of each pair."""
    rejected_rewards: Tensor
    """(P,) detached implicit reward of the worse response."""
    chosen_logps: Tensor
    """(P,) detached summed policy log-prob of the better response."""
    rejected_logps: Tensor
    """(P,) detached summed policy log-prob of the worse response."""


def pairwise_terms(
    logps: Tensor, lengths: Tensor, ref: Tensor | None, sizes: Sequence[int], cfg: DPOSettings
) -> PreferenceTerms:
    """`cfg.loss` on every better/worse pair of each group; logps, lengths, ref are (n_responses,)."""
    better, worse = (i.to(logps.device) for i in pair_indices(sizes))
    token_counts = lengths.to(logps.dtype).clamp(min=1)
    batch = PreferenceLogps(
        chosen_logps=logps[better],
        rejected_logps=logps[worse],
        ref_chosen_logps=None if ref is None else ref[better],
        ref_rejected_logps=None if ref is None else ref[worse],
        chosen_lengths=lengths[better],
        rejected_lengths=lengths[worse],
        chosen_nll=-logps[better] / token_counts[better],  # mean token NLL (ORPO's and SimPO's SFT term)
    )
    out = DPO_LOSSES[cfg.loss](batch, cfg.beta, **cfg.hyperparameters())
    return PreferenceTerms(
        out.losses, out.chosen_rewards, out.rejected_rewards, logps[better].detach(), logps[worse].detach()
    )


def plackett_luce_terms(
    logps: Tensor, lengths: Tensor, ref: Tensor | None, sizes: Sequence[int], cfg: DPOSettings
) -> PreferenceTerms:
    """The Plackett-Luce DPO loss of each whole ranking; rewards are logged pair by pair."""
    if ref is None:
        raise ValueError("plackett_luce needs reference log-probs")
    rows = torch.tensor([g for g, n in enumerate(sizes) for _ in range(n)], device=logps.device)
    cols = torch.tensor([j for n in sizes for j in range(n)], device=logps.device)
    shape = (len(sizes), max(sizes))
    policy = logps.new_zeros(shape).index_put((rows, cols), logps)
    reference = logps.new_zeros(shape).index_put((rows, cols), ref.to(logps.dtype))
    mask = torch.zeros(shape, dtype=torch.bool, device=logps.device).index_put((rows, cols), torch.tensor(True))
    out = plackett_luce_dpo(policy, reference, mask, cfg.beta)
    rewards = out.rewards[rows, cols]  # back to flat response order
    better, worse = (i.to(logps.device) for i in pair_indices(sizes))
    return PreferenceTerms(out.losses, rewards[better], rewards[worse], logps[better].detach(), logps[worse].detach())


class RankingMode(NamedTuple):
    terms: Callable[[Tensor, Tensor, Tensor | None, Sequence[int], DPOSettings], PreferenceTerms]
    """Loss terms of a batch."""
    units: Callable[[Sequence[int]], int]
    """How many loss units (the mean's denominator) groups of these sizes hold."""


RANKING_MODES: dict[str, RankingMode] = {
    "pairs": RankingMode(pairwise_terms, lambda sizes: sum(n * (n - 1) // 2 for n in sizes)),
    "plackett_luce": RankingMode(plackett_luce_terms, len),
}
"""How a group of responses becomes loss terms (the keys of `rlhfkit.train.dpo.config.RankingsAs`)."""


class MetricSums:
    """Running sums of a step's (or an evaluation's) loss and pair statistics."""

    def __init__(self) -> None:
        self.loss = self.units = self.pairs = 0.0
        self.sums: dict[str, float] = {}

    def add(self, terms: PreferenceTerms) -> None:
        self.loss += float(terms.losses.detach().sum())
        self.units += terms.losses.numel()
        self.pairs += terms.chosen_rewards.numel()
        margin = terms.chosen_rewards - terms.rejected_rewards
        for name, value in (
            ("chosen_reward", terms.chosen_rewards),
            ("rejected_reward", terms.rejected_rewards),
            ("reward_margin", margin),
            ("reward_accuracy", (margin > 0).float()),
            ("chosen_logp", terms.chosen_logps),
            ("rejected_logp", terms.rejected_logps),
        ):
            self.sums[name] = self.sums.get(name, 0.0) + float(value.float().sum())

    def reduce(self, all_sum: Callable[[dict[str, float]], dict[str, float]]) -> None:
        """Replace the sums by their totals over every process (`Run.all_sum`)."""
        totals = all_sum({"loss": self.loss, "units": self.units, "pairs": self.pairs, **self.sums})
        self.loss, self.units, self.pairs = totals.pop("loss"), totals.pop("units"), totals.pop("pairs")
        self.sums = totals

    def means(self, prefix: str) -> dict[str, float]:
        out = {f"{prefix}/loss": self.loss / max(1.0, self.units)}
        out.update({f"{prefix}/{k}": v / max(1.0, self.pairs) for k, v in self.sums.items()})
        return out
