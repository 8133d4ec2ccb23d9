"""The reward-model objective over a batch: the chosen losses per kind, ensembles and centering.

Every loss comes from the name tables of `rlhfkit.algorithms.reward_losses`; the small adapters here
only gather each kind's rewards from the batch rows and pass the arguments that loss takes. All
losses run on (n, K) tensors, one column per head, so an ensemble of K heads costs one trunk pass.
Head k's per-example losses are weighted by its bootstrap counts (`rlhfkit.train.reward.data.bootstrap_weights`).

Also here: `FeatureCache`, the trunk features of a frozen trunk computed once per sequence.
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import torch
from safetensors.torch import load_file, save_file
from torch import Tensor, nn

from rlhfkit.algorithms.reward_losses import (
    PAIRWISE_LOSSES,
    RANKING_LOSSES,
    RATING_LOSSES,
    increasing_thresholds,
    reward_centering,
)
from rlhfkit.files import write_atomic
from rlhfkit.train.reward.data import RewardBatch, RewardData


class LossParams(nn.Module):
    """Learnable parameters of the losses (not of the reward model), one set per head.

    ``log_nu`` (K,): Davidson's tie propensity, nu = 1 at the start. ``thresholds_raw`` (K, C-1): the
    ordinal cut points before `increasing_thresholds`, starting 1 apart and centred on 0.
    """

    def __init__(self, n_heads: int, davidson: bool = False, n_classes: int = 0) -> None:
        super().__init__()
        self.log_nu = nn.Parameter(torch.zeros(n_heads)) if davidson else None
        self.thresholds_raw = None
        if n_classes >= 2:
            first = torch.full((n_heads, 1), -(n_classes - 2) / 2.0)
            steps = torch.full((n_heads, n_classes - 2), math.log(math.e - 1.0))  # softplus^-1(1)
            self.thresholds_raw = nn.Parameter(torch.cat([first, steps], dim=1))


@dataclass(frozen=True)
class ObjectiveSpec:
    """Which loss each kind of judgment trains with, and the extras."""

    pairwise: str = "bradley_terry"
    """A name of PAIRWISE_LOSSES."""
    ranking: str = "all_pairs"
    """A name of RANKING_LOSSES."""
    rating: str = "regression"
    """A name of RATING_LOSSES."""
    use_margins: bool = True
    """Subtract the data's margins in the Bradley-Terry losses (davidson has no margin)."""
    center_coef: float = 0.0
    """Weight of the reward-centering penalty (0 = off)."""


# ---- per-kind adapters: (rewards (S, K), targets, params, spec) -> per-example losses (n, K) -------


def _pair_loss(rewards: Tensor, t: dict[str, Tensor], params: LossParams, spec: ObjectiveSpec) -> Tensor:
    r_a, r_b = rewards[t["rows"][:, 0]], rewards[t["rows"][:, 1]]  # (n, K)
    margin = t["margin"][:, None].to(rewards.dtype) if spec.use_margins else None
    tie = t["tie"][:, None]
    args: dict[str, Callable[[], dict]] = {
        "bradley_terry": lambda: {"margin": margin},
        "ties_half": lambda: {"tie": tie, "margin": margin},
        "davidson": lambda: {"tie": tie, "log_nu": params.log_nu},
    }
    return PAIRWISE_LOSSES[spec.pairwise](r_a, r_b, **args[spec.pairwise]())


def _ranking_loss(rewards: Tensor, t: dict[str, Tensor], params: LossParams, spec: ObjectiveSpec) -> Tensor:
    scores = rewards[t["rows"]].transpose(1, 2)  # (n, items, K) -> (n, K, items): heads are batch rows
    return RANKING_LOSSES[spec.ranking](scores, t["mask"][:, None, :])


def rating_classes(low: float, high: float) -> int:
    """Classes of an ordinal scale with unit steps: [1, 7] -> 7."""
    return round(high - low) + 1


def ordinal_classes(data: RewardData) -> int:
    """Classes C of the ordinal loss: every rating must share one scale and lie on its unit steps."""
    ratings = [ex for ex in data.examples if ex.kind == "ratings"]
    scales = {ex.scale for ex in ratings}
    if len(scales) != 1:
        raise ValueError(f"rating_loss=ordinal needs one rating scale, the data has {sorted(scales)}")
    low, high = scales.pop()
    if low != round(low) or high != round(high):
        raise ValueError(f"rating_loss=ordinal needs an integer scale, got [{low:g}, {high:g}]")
    off_step = [ex.rating for ex in ratings if ex.rating != round(ex.rating)]
    if off_step:
        raise ValueError(
            f"rating_loss=ordinal needs whole-number ratings, got e.g. {off_step[0]:g}; use rating_loss=regression"
        )
    return rating_classes(low, high)


def _rating_loss(rewards: Tensor, t: dict[str, Tensor], params: LossParams, spec: ObjectiveSpec) -> Tensor:
    pred = rewards[t["rows"]]  # (n, K)
    low, high = t["low"], t["high"]
    if spec.rating == "regression":
        # Targets rescaled per row, so rows on different scales share one [0, 1] target range.
        target = ((t["rating"] - low) / (high - low)).to(pred.dtype)[:, None]
        return RATING_LOSSES["regression"](pred, target, 0.0, 1.0)
    if params.thresholds_raw is None:
        raise ValueError("rating_loss=ordinal needs LossParams built with n_classes >= 2 (the ordinal cut points)")
    index = (t["rating"] - low).round().long()
    cols = [
        RATING_LOSSES["ordinal"](pred[:, k], index, increasing_thresholds(params.thresholds_raw[k]))
        for k in range(pred.shape[1])
    ]
    return torch.stack(cols, dim=1)


KIND_LOSSES: dict[str, Callable[[Tensor, dict[str, Tensor], LossParams, ObjectiveSpec], Tensor]] = {
    "pairs": _pair_loss,
    "rankings": _ranking_loss,
    "ratings": _rating_loss,
}
"""Kind of judgment -> adapter calling the chosen loss of `reward_losses` on that kind's rows."""


def per_example_losses(rewards: Tensor, batch: RewardBatch, params: LossParams, spec: ObjectiveSpec) -> Tensor:
    """(S, K) rewards of the batch rows -> (B, K) loss of every example under every head."""
    out = rewards.new_zeros(len(batch.example_ids), rewards.shape[1])
    for kind, targets in batch.groups.items():
        out = out.index_copy(0, targets["slot"], KIND_LOSSES[kind](rewards, targets, params, spec))
    return out


def centering_penalty(rewards: Tensor, batch: RewardBatch, coef: float) -> Tensor:
    """Eisenstein et al. 2023 centering: on (chosen + rejected) for pairs, on single rewards otherwise."""
    terms = []
    for kind, t in batch.groups.items():
        if kind == "pairs":
            terms.append(reward_centering(rewards[t["rows"][:, 0]], rewards[t["rows"][:, 1]], coef))
        else:
            rows = t["rows"][t["mask"]] if "mask" in t else t["rows"]  # rankings: only the real items
            terms.append(reward_centering(rewards[rows], None, coef))
    return torch.stack(terms).mean()


def objective(
    rewards: Tensor,
    batch: RewardBatch,
    weights: Tensor,
    params: LossParams,
    spec: ObjectiveSpec,
    *,
    divisor: float | None = None,
) -> tuple[Tensor, dict[str, float]]:
    """Scalar training loss and batch metrics.

    ``loss = mean_k sum_i w[i, k] * l[i, k] / divisor (+ centering)``: each head's bootstrap-weighted
    loss (weights average 1, so the scale stays that of a mean), averaged over the heads. `divisor`
    defaults to the batch's example count (the batch mean); a step of several micro-batches or
    processes passes its share of the step's global count (`Run.divisor`), so the step's gradient is
    that of the mean over the whole step. The centering penalty, a batch mean, is weighted by the
    batch's share of the step. rewards: (S, K); weights: (B, K) bootstrap counts of the batch's examples.
    """
    losses = per_example_losses(rewards, batch, params, spec)
    share = 1.0 if divisor is None else losses.shape[0] / divisor
    loss = (weights.to(losses.dtype) * losses).sum(dim=0).mean() / (divisor or losses.shape[0])
    if spec.center_coef > 0:
        loss = loss + share * centering_penalty(rewards, batch, spec.center_coef)
    metrics = {"train/loss": float(loss.detach())}
    if "pairs" in batch.groups:
        t = batch.groups["pairs"]
        delta = (rewards[t["rows"][:, 0]] - rewards[t["rows"][:, 1]]).detach().mean(dim=1)
        decided = ~t["tie"]
        if bool(decided.any()):
            metrics["train/accuracy"] = float((delta[decided] > 0).float().mean())
            metrics["train/margin"] = float(delta[decided].mean())
    return loss, metrics


class FeatureCache:
    """Trunk features (N, H) of every sequence, filled the first time a batch needs them.

    Valid only while the trunk is frozen: then a sequence's features never change, so the trunk runs
    once per sequence for the whole run and every later epoch costs only the heads. It is saved in
    the run directory with a fingerprint of the trunk and the data, so a resumed run reuses it.
    """

    def __init__(self, n_sequences: int, hidden: int, fingerprint: str) -> None:
        self.features = torch.zeros(n_sequences, hidden)
        self.filled = torch.zeros(n_sequences, dtype=torch.bool)
        self.fingerprint = fingerprint
        self.hits = 0
        self.misses = 0

    def lookup(self, batch: RewardBatch, compute: Callable[[Tensor, Tensor], Tensor]) -> Tensor:
        """(S, H) features of the batch rows; `compute(ids, mask)` runs the trunk on the missing rows."""
        missing = (~self.filled[batch.seq_ids]).nonzero().flatten()
        if len(missing):
            mask = batch.attention_mask[missing]
            width = int(mask.sum(dim=1).max())  # rows are right-padded: drop all-padding columns
            with torch.no_grad():
                new = compute(batch.input_ids[missing, :width], mask[:, :width]).float().cpu()
            rows = batch.seq_ids[missing]
            self.features[rows] = new
            self.filled[rows] = True
        self.misses += len(missing)
        self.hits += len(batch.seq_ids) - len(missing)
        return self.features[batch.seq_ids]

    def save(self, path: Path) -> None:
        index = self.filled.nonzero().flatten()
        tensors = {"index": index, "features": self.features[index].contiguous()}
        write_atomic(path, lambda tmp: save_file(tensors, str(tmp), metadata={"fingerprint": self.fingerprint}))

    def load(self, path: Path) -> bool:
        """Fill from `path` when it was written for the same trunk and data; returns whether it was used."""
        if not path.exists():
            return False
        from safetensors import safe_open

        with safe_open(str(path), "pt") as f:
            if (f.metadata() or {}).get("fingerprint") != self.fingerprint:
                return False
        tensors = load_file(str(path))
        self.features[tensors["index"]] = tensors["features"]
        self.filled[tensors["index"]] = True
        return True


def data_fingerprint(model_name: str, data: RewardData) -> str:
    """A hash of the trunk's name and every tokenized sequence: what the cached features depend on."""
    h = hashlib.sha256(model_name.encode())
    h.update(json.dumps(data.sequences).encode())
    return h.hexdigest()[:32]
