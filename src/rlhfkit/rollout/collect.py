"""From sampled responses and their scores to a PPO `Rollout` (steps 1 and 3-4 of a PPO step).

`sample_rollout` samples one response per prompt in chunks; `collect_rollout` runs the policy (with
its value head) and the reference over them once, then turns the scores into per-token rewards with
a KL penalty and those into GAE advantages. Everything arrives as an explicit argument, so any loop
that owns an `ActorCritic` can collect experience (Huang et al. 2024, "The N+ Implementation Details
of RLHF with PPO"; the math lives in `rlhfkit.algorithms`).
"""

from __future__ import annotations

import contextlib
from collections.abc import Callable
from typing import Any, NamedTuple

import torch
from torch import Tensor

from rlhfkit.algorithms.advantages import gae, ppo_token_rewards
from rlhfkit.algorithms.common import masked_moments, masked_whiten, whiten_with_moments
from rlhfkit.algorithms.kl import KL_ESTIMATORS
from rlhfkit.data.records import PromptText
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.rollout.experience import Rollout, concat_samples
from rlhfkit.rollout.generate import Samples, SamplingConfig, sample

Autocast = Callable[[], contextlib.AbstractContextManager]
"""A context-manager factory for mixed precision (``engine.autocast``); `contextlib.nullcontext` for none."""


def sample_rollout(
    policy: torch.nn.Module,
    tokenizer,
    prompts: list[PromptText],
    sampling: SamplingConfig,
    *,
    seed: int,
    first_row: int = 0,
    autocast: Autocast = contextlib.nullcontext,
) -> Samples:
    """One response per prompt, `sampling.batch_size` prompts per call. Row i draws from the stream
    (`seed`, ``first_row + i``): a resumed run samples exactly what an uninterrupted one would, and a
    process holding rows ``first_row ...`` of the step's global batch samples what one process would."""
    parts = []
    for start in range(0, len(prompts), sampling.batch_size):
        with autocast():  # bf16 KV cache where bf16 is the faster dtype, else fp32
            chunk = prompts[start : start + sampling.batch_size]
            parts.append(sample(policy, tokenizer, chunk, sampling, generator_seed=seed, first_row=first_row + start))
    return concat_samples(parts, tokenizer.pad_token_id)


@torch.no_grad()
def _whiten(
    x: Tensor, mask: Tensor, sum_over_processes: Callable[[Tensor], Tensor] | None, shift_mean: bool = True
) -> Tensor:
    """`masked_whiten` over this batch, or over the union of every process's batch."""
    if sum_over_processes is None:
        return masked_whiten(x, mask, shift_mean=shift_mean)
    return whiten_with_moments(x, mask, sum_over_processes(masked_moments(x, mask)), shift_mean=shift_mean)


def collect_rollout(
    ac: ActorCritic,
    samples: Samples,
    raw_scores: Tensor,
    scores: Tensor,
    *,
    beta: float,
    kl_estimator: str = "k1",
    gamma: float = 1.0,
    lam: float = 0.95,
    whiten_rewards: bool = False,
    whiten_advantages: bool = True,
    temperature: float = 1.0,
    batch_size: int = 8,
    autocast: Autocast = contextlib.nullcontext,
    sum_over_processes: Callable[[Tensor], Tensor] | None = None,
) -> tuple[Rollout, Tensor]:
    """Old log-probs and values (one trunk pass), reference log-probs, per-token KL and rewards, GAE
    advantages and returns of `samples`, `batch_size` rows per pass. `scores` are the shaped (B,)
    scores credited at each response's last token, `raw_scores` what the reward source said.
    `sum_over_processes` (several processes, each with its share of the batch): sums a tensor over
    them, so rewards and advantages are whitened with the statistics of the whole batch.
    Returns the rollout and the (B, R) policy entropy."""
    ids = torch.cat([samples.prompt_ids, samples.response_ids], dim=1)
    mask = torch.cat([samples.prompt_mask, samples.response_mask], dim=1)
    rmask = samples.response_mask
    passes = policy_passes(ac, ids, mask, samples.prompt_ids.shape[1], temperature, batch_size, autocast)
    if passes.values is None:
        raise ValueError("collect_rollout needs an ActorCritic with a value head (PPO)")
    value = passes.values * rmask
    kl = KL_ESTIMATORS[kl_estimator](passes.logps, passes.ref_logps) * rmask
    rewards = ppo_token_rewards(scores.to(kl.device), kl, rmask, beta)
    if whiten_rewards:
        rewards = _whiten(rewards, rmask, sum_over_processes, shift_mean=False)
    advantages, returns = gae(rewards, value, rmask, gamma, lam)
    if whiten_advantages:
        advantages = _whiten(advantages, rmask, sum_over_processes)
    rollout = Rollout(
        ids,
        mask,
        rmask,
        passes.logps,
        passes.ref_logps,
        value,
        kl,
        scores.to(kl.device),
        raw_scores.to(kl.device),
        rewards,
        advantages,
        returns,
        samples.ended,
        passes.trunk,
    )
    return rollout, passes.entropy


class PolicyPasses(NamedTuple):
    """What one pass of the policy (with its value head) and one of the reference give over a rollout."""

    logps: Tensor
    """(B, R) log-probs of the sampled tokens under the policy at the sampling temperature."""
    ref_logps: Tensor
    """(B, R) the same under the reference."""
    values: Tensor | None
    """(B, R) the value head's estimates (not yet masked); None without a value head."""
    entropy: Tensor
    """(B, R) the policy's entropy at each response position."""
    trunk: Tensor | None
    """(B, P + R, H) the frozen bottom blocks' output, reused by every PPO epoch (None: nothing frozen)."""


@torch.no_grad()
def policy_passes(
    ac: ActorCritic, ids: Tensor, mask: Tensor, start: int, temperature: float, batch_size: int, autocast: Autocast
) -> PolicyPasses:
    """The policy and the reference over `ids`, `batch_size` rows per pass; the frozen bottom blocks
    run once for both."""
    logps, values, ref_logps, entropy = [], [], [], []
    trunks: list[Tensor] = []  # stays empty when no block is frozen (ac.trunk gives None for every batch)
    for rows in torch.arange(ids.shape[0], device=ids.device).split(batch_size):
        with autocast():
            trunk = ac.trunk(ids[rows], mask[rows])
            out = ac(ids[rows], mask[rows], start, temperature=temperature, with_entropy=True, trunk=trunk)
            ref_logps.append(ac.reference_logps(ids[rows], mask[rows], start, temperature=temperature, trunk=trunk))
        logps.append(out.logps)
        if out.values is not None:
            values.append(out.values)
        entropy.append(out.entropy)
        if trunk is not None:
            trunks.append(trunk)
    return PolicyPasses(
        torch.cat(logps),
        torch.cat(ref_logps),
        torch.cat(values) if values else None,
        torch.cat(entropy),
        torch.cat(trunks) if trunks else None,
    )


def sample_rows(step: int, prompts: list[PromptText], samples: Samples, raw: torch.Tensor) -> list[dict[str, Any]]:
    """The step's responses, with their prompts and raw scores, as rows of samples.jsonl."""
    return [
        {"step": step, "prompt": p, "response": t, "score": float(r)}
        for p, t, r in zip(prompts, samples.texts, raw, strict=True)
    ]
