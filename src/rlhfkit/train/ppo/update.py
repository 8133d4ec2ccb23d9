"""Step 5 of a PPO step: `ppo_epochs` passes of clipped-ratio updates over one rollout."""

from __future__ import annotations

from collections import defaultdict
from pathlib import Path

import torch

from rlhfkit.algorithms.common import masked_mean
from rlhfkit.algorithms.ppo_losses import policy_loss_clipped, value_loss_clipped
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.rollout.experience import Rollout
from rlhfkit.train.engine import Engine
from rlhfkit.train.metrics import check_finite
from rlhfkit.train.ppo.config import PPOSettings


def ppo_update(
    ac: ActorCritic,
    optimizer: torch.optim.Optimizer,
    rollout: Rollout,
    cfg: PPOSettings,
    step: int,
    engine: Engine,
    run_dir: Path,
) -> dict[str, float]:
    """`ppo_epochs` passes over the rollout in shuffled minibatches of ``batch_size * grad_accum``
    samples (on each process), one optimizer step per minibatch. Each micro-batch's token-mean loss is
    weighted by its share of the minibatch's tokens on every process, so the step's loss is the
    token-mean over the global minibatch however it is split. Returns token-weighted mean statistics
    (averaged over the processes)."""
    n = rollout.input_ids.shape[0]
    minibatch = cfg.batch_size * cfg.grad_accum
    order_rng = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
    sums: dict[str, float] = defaultdict(float)
    minibatches = 0
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=order_rng).to(rollout.input_ids.device)
        for mb_rows in order.split(minibatch):
            stats = _minibatch(ac, rollout, mb_rows, cfg, engine)
            # A NaN/inf loss stops the run before it can reach the weights; the last checkpoint stays
            # good. Summed over the processes first, so that every process stops, not one alone.
            losses = {k: v for k, v in stats.items() if k.endswith("_loss")}
            check_finite(step, dict(zip(losses, engine.all_sum(list(losses.values())), strict=True)), run_dir)
            engine.reduce_gradients(ac)
            stats["train/grad_norm"] = engine.clip(ac, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for key, value in stats.items():
                sums[key] += value
            minibatches += 1
    return engine.mean_over_processes({k: v / minibatches for k, v in sums.items()})


def _minibatch(
    ac: ActorCritic, rollout: Rollout, mb_rows: torch.Tensor, cfg: PPOSettings, engine: Engine
) -> dict[str, float]:
    """Accumulate the gradient of one minibatch (in micro-batches of `batch_size` rows); returns its
    token-weighted statistics."""
    micro = mb_rows.split(cfg.batch_size)
    # DDP-style averaging divides by the processes: each divides by its share of the global tokens.
    (global_tokens,) = engine.all_sum([float(rollout.response_mask[mb_rows].sum())])
    mb_tokens = max(1.0, global_tokens) / engine.world_size
    stats: dict[str, float] = defaultdict(float)
    for i, rows in enumerate(micro):
        part = rollout.select(rows)
        weight = float(part.response_mask.sum()) / mb_tokens
        with engine.sync(ac, last=i == len(micro) - 1), engine.autocast():
            out = ac(
                part.input_ids,
                part.attention_mask,
                part.response_start,
                temperature=cfg.sampling.temperature,
                with_entropy=cfg.entropy_coef > 0,
                trunk=part.trunk,
            )
            if out.values is None:
                raise ValueError("PPO needs an ActorCritic with a value head")
            pg = policy_loss_clipped(out.logps, part.logps, part.advantages, part.response_mask, cfg.clip_range)
            vf = value_loss_clipped(out.values, part.values, part.returns, part.response_mask, cfg.value_clip_range)
            loss = pg.loss + cfg.vf_coef * vf.loss
            if out.entropy is not None:
                loss = loss - cfg.entropy_coef * masked_mean(out.entropy, part.response_mask)
            engine.backward(loss * weight)
        for key, value in (
            ("ppo/policy_loss", pg.loss),
            ("ppo/value_loss", vf.loss),
            ("ppo/clip_frac", pg.clip_frac),
            ("ppo/approx_kl", pg.approx_kl),
            ("ppo/value_clip_frac", vf.clip_frac),
        ):
            stats[key] += weight * float(value.detach())
    return stats
