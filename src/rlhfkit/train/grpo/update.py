"""Step 4 of a critic-free step: `epochs` passes of clipped policy-gradient updates over one rollout.

Each minibatch of ``batch_size * grad_accum`` responses is one optimizer step. Its loss is the
chosen aggregation (`rlhfkit.algorithms.policy_gradient.LOSS_AGGREGATIONS`) over the whole
minibatch: every micro-batch divides by the minibatch's counts (`StepCounts`), not its own, so the
gradient does not depend on how the minibatch is split.
"""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from rlhfkit.algorithms.common import masked_sum
from rlhfkit.algorithms.kl import KL_ESTIMATORS
from rlhfkit.algorithms.policy_gradient import LOSS_AGGREGATIONS, StepCounts, clipped_token_loss
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.rollout.group import GroupRollout
from rlhfkit.train.engine import Engine
from rlhfkit.train.grpo.config import GRPOSettings
from rlhfkit.train.metrics import check_finite


def minibatches_per_rollout(cfg: GRPOSettings) -> int:
    """Optimizer steps per rollout: `epochs` passes over `rollout_size` responses."""
    return cfg.epochs * cfg.rollout_size // (cfg.batch_size * cfg.grad_accum)


def grpo_update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: GroupRollout,
    cfg: GRPOSettings,
    step: int,
    engine: Engine,
    run_dir: Path,
) -> dict[str, float]:
    """`epochs` passes over the rollout in shuffled minibatches, one optimizer step each (one pass
    keeps the sampled order: the first minibatch's policy is then the sampling one). Returns the
    statistics, summed over micro-batches as weighted by each aggregation and averaged over the
    optimizer steps that report them (the KL and entropy describe the first pass only)."""
    n = rollout.input_ids.shape[0]
    minibatch = cfg.batch_size * cfg.grad_accum
    order_rng = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
    sums: dict[str, float] = defaultdict(float)
    seen: dict[str, int] = defaultdict(int)
    for epoch in range(cfg.epochs):
        order = torch.randperm(n, generator=order_rng) if cfg.epochs > 1 else torch.arange(n)
        for mb_rows in order.to(rollout.input_ids.device).split(minibatch):
            stats = _minibatch(ac, rollout, mb_rows, cfg, engine, first_pass=epoch == 0)
            # A NaN/inf loss (on any process) stops the run before it reaches the weights.
            check_finite(step, {"rl/loss": engine.all_sum([stats["rl/loss"]])[0]}, run_dir)
            engine.reduce_gradients(ac)  # several processes: the step's gradient is their mean
            stats["train/grad_norm"] = engine.clip(ac, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for key, value in stats.items():
                sums[key] += value
                seen[key] += 1
    return engine.mean_over_processes({k: v / seen[k] for k, v in sums.items()})


def _minibatch(
    ac: ActorCritic, rollout: GroupRollout, rows: torch.Tensor, cfg: GRPOSettings, engine: Engine, first_pass: bool
) -> dict[str, float]:
    """Accumulate one minibatch's gradient in micro-batches of `batch_size` responses (the entropy: per
    token of all processes' responses). A group's prompt runs once (`share_prompt`)."""
    # Divisors over the whole step: every micro-batch of every process. Each process divides by the
    # global count / world size, since its gradient is then averaged over the processes.
    lmask = rollout.loss_mask[rows]
    tokens, sequences, response_tokens = engine.all_sum(
        [float(lmask.sum()), float(lmask.any(dim=1).sum()), float(rollout.response_mask[rows].sum())]
    )
    counts = StepCounts(
        tokens=tokens / engine.world_size,
        sequences=sequences / engine.world_size,
        max_tokens=cfg.sampling.max_new_tokens,
    )
    aggregate, micro = LOSS_AGGREGATIONS[cfg.loss_aggregation], rows.split(cfg.batch_size)
    stats: dict[str, float] = defaultdict(float)
    for i, part_rows in enumerate(micro):
        part = rollout.select(part_rows)
        with engine.sync(ac, last=i == len(micro) - 1), engine.autocast():
            out = ac(
                part.input_ids,
                part.attention_mask,
                part.response_start,
                temperature=cfg.sampling.temperature,
                with_entropy=True,
                trunk=part.trunk,
                share_prompt=True,
            )
            assert out.entropy is not None  # asked for above
            old = part.logps if part.logps is not None else out.logps.detach()
            pg = clipped_token_loss(
                out.logps,
                old,
                part.advantages,
                part.loss_mask,
                eps_low=cfg.clip_low,
                eps_high=cfg.clip_high,
                ratio=cfg.ratio,
            )
            per_token = pg.loss
            kl = None if part.ref_logps is None else KL_ESTIMATORS[cfg.kl_estimator](out.logps, part.ref_logps)
            if kl is not None and cfg.kl_in == "loss":
                per_token = per_token + cfg.beta * kl
            if cfg.entropy_coef > 0:
                per_token = per_token - cfg.entropy_coef * out.entropy
            loss = aggregate(per_token, part.loss_mask, counts)
            engine.backward(loss)
        stats["rl/loss"] += float(loss.detach())
        stats["rl/clip_low_frac"] += float(pg.clip_low.sum()) / (counts.tokens or 1.0)
        stats["rl/clip_high_frac"] += float(pg.clip_high.sum()) / (counts.tokens or 1.0)
        if first_pass:  # the policy of the step's first pass: what the rollout's KL and entropy describe
            rmask = part.response_mask
            stats["rl/entropy"] += float(masked_sum(out.entropy.detach(), rmask)) / (
                max(response_tokens, 1.0) / engine.world_size
            )
            if kl is not None:
                stats["rl/kl"] += float(masked_sum(kl.detach(), rmask)) / len(rows)
    return stats
