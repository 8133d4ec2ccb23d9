"""A critic-free rollout: groups of responses per prompt, scored, with their advantages.

`collect_group_rollout` turns sampled responses (``group_size`` consecutive rows per prompt) and
their scores into a `GroupRollout`: the reference's log-probs (only when a KL is asked for), the
sampling policy's log-probs (only when the update needs them: several passes or minibatches per
rollout, or a KL in the reward), per-token rewards, advantages from the estimator table, and the
loss mask. The math is `rlhfkit.algorithms.advantages`.
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable, Mapping
from typing import NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    GROUP_ESTIMATORS,
    AdvantageInputs,
    ppo_token_rewards,
)
from rlhfkit.algorithms.kl import KL_ESTIMATORS
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.rollout.collect import Autocast
from rlhfkit.rollout.experience import compact
from rlhfkit.rollout.generate import Samples


class GroupRollout(NamedTuple):
    """One step's experience for a critic-free update. B = prompts x group_size rows, P + R columns."""

    input_ids: Tensor
    """(B, P + R) long: left-padded prompt tokens, then the response, pad after the stop."""
    attention_mask: Tensor
    """(B, P + R) long: 1 on real prompt and response tokens."""
    response_mask: Tensor
    """(B, R) long: 1 on the response's tokens (up to and including its EOS)."""
    loss_mask: Tensor
    """(B, R) long: the response tokens the loss reads: `response_mask` without the rows left out
    (groups whose scores are all equal, for group baselines; truncated responses with mask_truncated)."""
    advantages: Tensor
    """(B, R) float: each token's advantage."""
    logps: Tensor | None
    """(B, R) float: log-probs under the sampling policy; None when the update's first pass is the
    sampling policy itself (one pass, one minibatch) and takes them from its own forward, detached."""
    ref_logps: Tensor | None
    """(B, R) float: log-probs under the reference; None when beta = 0."""
    trunk: Tensor | None = None
    """(B, P + R, H) float: the frozen bottom blocks' output, reused by every pass (None: nothing frozen)."""

    @property
    def response_start(self) -> int:
        """P: the column where every response starts."""
        return self.input_ids.shape[1] - self.response_mask.shape[1]

    def select(self, rows: Tensor) -> GroupRollout:
        """The rows `rows` of every field, with all-padding columns dropped."""
        return compact(GroupRollout._make(None if field is None else field[rows] for field in self))


def equal_score_groups(scores: Tensor, group_size: int) -> Tensor:
    """(B,) bool: the row belongs to a group whose scores are all equal (no signal to learn from)."""
    grouped = scores.view(-1, group_size)
    flat = (grouped == grouped[:, :1]).all(dim=1, keepdim=True)
    return flat.expand(-1, group_size).reshape(-1)


@torch.no_grad()
def logprob_passes(
    ac: ActorCritic,
    ids: Tensor,
    mask: Tensor,
    start: int,
    *,
    policy: bool,
    reference: bool,
    temperature: float,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
) -> tuple[Tensor | None, Tensor | None, Tensor | None]:
    """(policy log-probs, reference log-probs, frozen trunk), each only when asked for (the trunk when
    some blocks are frozen), `batch_size` rows per pass; the frozen blocks run once for all of them."""
    logps, ref_logps, trunks = [], [], []
    for rows in torch.arange(ids.shape[0], device=ids.device).split(batch_size):
        with autocast():
            trunk = ac.trunk(ids[rows], mask[rows], shared_columns=start)  # a group's prompt runs once
            if policy:
                out = ac(ids[rows], mask[rows], start, temperature=temperature, trunk=trunk, share_prompt=True)
                logps.append(out.logps)
            if reference:
                ref = ac.reference_logps(
                    ids[rows], mask[rows], start, temperature=temperature, trunk=trunk, share_prompt=True
                )
                ref_logps.append(ref)
        if trunk is not None:
            trunks.append(trunk)
    cat = lambda parts: torch.cat(parts) if parts else None  # noqa: E731
    return cat(logps), cat(ref_logps), cat(trunks)


def collect_group_rollout(
    ac: ActorCritic,
    samples: Samples,
    scores: Tensor,
    *,
    group_size: int,
    advantage: str,
    hyper: Mapping[str, object],
    beta: float,
    kl_in: str,
    kl_estimator: str,
    need_old_logps: bool,
    mask_truncated: bool,
    temperature: float,
    batch_size: int,
    autocast: Autocast = contextlib.nullcontext,
    sum_over_processes: Callable[[Tensor], Tensor] | None = None,
) -> GroupRollout:
    """Steps 3-4 of a critic-free step: log-probs where needed, rewards, advantages, the loss mask.

    `scores` are the (B,) raw scores; with ``kl_in="reward"`` each token's reward also carries
    ``-beta * kl_t`` (k-estimator `kl_estimator`, under the sampling policy). `hyper` are the
    estimator's keyword hyper-parameters (`estimator_hyperparameters`). `sum_over_processes` (several
    processes, each with whole groups): sums statistics over them for batch-wide whitening and scaling."""
    ids = torch.cat([samples.prompt_ids, samples.response_ids], dim=1)
    mask = torch.cat([samples.prompt_mask, samples.response_mask], dim=1)
    rmask = samples.response_mask
    kl_reward = beta > 0 and kl_in == "reward"
    logps, ref_logps, trunk = logprob_passes(
        ac,
        ids,
        mask,
        samples.prompt_ids.shape[1],
        policy=need_old_logps or kl_reward,
        reference=beta > 0,
        temperature=temperature,
        batch_size=batch_size,
        autocast=autocast,
    )
    kl = torch.zeros(rmask.shape, device=rmask.device)
    if kl_reward:
        assert logps is not None and ref_logps is not None  # both passes ran: kl_reward asked for them
        kl = KL_ESTIMATORS[kl_estimator](logps, ref_logps) * rmask
    scores = scores.to(kl.device, kl.dtype)
    token_rewards = ppo_token_rewards(scores, kl, rmask, beta if kl_reward else 0.0)
    with torch.no_grad():
        inputs = AdvantageInputs(token_rewards, rmask, group_size, sum_over_processes=sum_over_processes)
        advantages = ADVANTAGE_ESTIMATORS[advantage](inputs, **hyper)
    keep = torch.ones_like(scores, dtype=torch.bool)
    if advantage in GROUP_ESTIMATORS:
        keep &= ~equal_score_groups(scores, group_size)
    if mask_truncated:
        keep &= samples.ended.to(keep.device)
    loss_mask = rmask * keep.unsqueeze(1).to(rmask.dtype)
    return GroupRollout(ids, mask, rmask, loss_mask, advantages, logps if need_old_logps else None, ref_logps, trunk)
