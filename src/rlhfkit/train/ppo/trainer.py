"""PPO with a KL penalty: the RL phase of RLHF (Ziegler et al. 2019; Ouyang et al. 2022, sec. 3.5).

Every step: 1. sample responses to a batch of prompts; 2. score them with the reward source;
3. per-token reward = -beta * KL(policy || reference) plus the shaped score at the last token;
4. advantages by GAE; 5. PPO epochs over shuffled minibatches (clipped ratio, clipped value loss,
optional entropy bonus); 6. adapt beta, log, checkpoint. The implementation details follow Huang et
al. 2024, "The N+ Implementation Details of RLHF with PPO"; the math lives in `rlhfkit.algorithms`.

Policy, reference and value share one base model (see `rlhfkit.models.actor_critic`).
"""

from __future__ import annotations

import math
import time
from pathlib import Path
from typing import Any, cast

import torch
from safetensors.torch import save_file
from transformers import PreTrainedModel

from rlhfkit.algorithms.common import masked_sum
from rlhfkit.algorithms.ppo_losses import explained_variance_from_sums, explained_variance_sums
from rlhfkit.data.records import PromptText
from rlhfkit.files import write_atomic
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.models.adapters import trainable_parameters
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.models.value import make_value_head
from rlhfkit.rollout.collect import collect_rollout, sample_rollout, sample_rows
from rlhfkit.rollout.experience import Rollout, RunningMoments, shape_scores
from rlhfkit.rollout.generate import Samples
from rlhfkit.rollout.reward_settings import checked_scores
from rlhfkit.train.engine import Engine
from rlhfkit.train.ppo.config import PPOConfig, PPOSettings
from rlhfkit.train.ppo.update import ppo_update
from rlhfkit.train.run import Run
from rlhfkit.train.sources import load_training_records

HEADLINE = (("ppo/score", "score"), ("ppo/kl", "KL"), ("ppo/beta", "beta"), ("perf/samples_per_s", "samples/s"))
"""What the console shows of a PPO run."""


def actor_critic(base: PreTrainedModel, cfg: PPOConfig) -> ActorCritic:
    """Policy, reference and value head on one base model, as `policy_mode` says."""
    value_head = make_value_head(cfg.value_init, int(base.config.hidden_size), cfg.reward)
    return cfg.build(base, value_head, value_trunk_grad=cfg.value_trunk_grad)


def generate(
    ac: ActorCritic, tokenizer, prompts: list[PromptText], cfg: PPOSettings, step: int, engine: Engine
) -> Samples:
    """Step 1 with this config: one response per prompt, with a per-step seed; this process holds rows
    ``rank * len(prompts) ...`` of the step (equal shares), so any split samples what one process would."""
    seed = cfg.seed * 1_000_003 + step * 1_009
    first_row = engine.rank * len(prompts)
    return sample_rollout(
        ac.policy, tokenizer, prompts, cfg.sampling, seed=seed, first_row=first_row, autocast=engine.autocast
    )


def collect(
    ac: ActorCritic,
    samples: Samples,
    raw: torch.Tensor,
    scores: torch.Tensor,
    beta: float,
    cfg: PPOSettings,
    engine: Engine,
) -> tuple[Rollout, torch.Tensor]:
    """Steps 3-4 with this config (`rlhfkit.rollout.collect.collect_rollout`)."""
    return collect_rollout(
        ac,
        samples,
        raw,
        scores,
        beta=beta,
        kl_estimator=cfg.kl_estimator,
        gamma=cfg.gamma,
        lam=cfg.lam,
        whiten_rewards=cfg.whiten_rewards,
        whiten_advantages=cfg.whiten_advantages,
        temperature=cfg.sampling.temperature,
        batch_size=cfg.batch_size,
        autocast=engine.autocast,
        sum_over_processes=engine.sum_tensor if engine.world_size > 1 else None,
    )


def step_metrics(
    rollout: Rollout,
    entropy: torch.Tensor,
    samples: Samples,
    beta: float,
    reward_std: torch.Tensor | None,
    engine: Engine,
) -> dict[str, float]:
    """What a PPO step logs about its rollout, averaged over the processes (the update adds its own
    statistics). Per-token means divide by the step's tokens over all processes / the process count, so
    their average over processes is the global per-token mean, whatever each process's share."""
    rmask, raw = rollout.response_mask, rollout.raw_scores
    # One collective: the step's tokens, and the sums that the explained variance and the score's standard
    # deviation of the whole step need (every process then logs the same keys and the step's values).
    local = explained_variance_sums(rollout.values, rollout.returns, rmask)
    *ev_sums, n, total, squares = engine.all_sum([*local, raw.numel(), float(raw.sum()), float((raw**2).sum())])
    tokens = ev_sums[0] / engine.world_size
    metrics: dict[str, float | torch.Tensor] = {
        "ppo/score": raw.mean(),
        "ppo/score_std": math.sqrt(max(squares - total**2 / n, 0.0) / (n - 1)) if n > 1 else 0.0,
        "ppo/score_shaped": rollout.scores.mean(),
        "ppo/kl": masked_sum(rollout.kl, rmask, dim=1).mean(),
        "ppo/beta": beta,
        "ppo/entropy": masked_sum(entropy, rmask) / max(tokens, 1.0),
        "ppo/response_len": rmask.sum(dim=1).float().mean(),
        "ppo/no_eos_frac": (~samples.ended).float().mean(),
        "ppo/prompts_truncated": samples.prompts_truncated,
    }
    if reward_std is not None:
        metrics["ppo/reward_std"] = reward_std.mean()
    ev = explained_variance_from_sums(ev_sums)
    if math.isfinite(ev):  # undefined (NaN) when every return of the step is equal
        metrics["ppo/explained_var"] = ev
    return engine.mean_over_processes(metrics)


def ppo(cfg: PPOConfig) -> Path:
    """Run PPO; returns the run directory, which ends as the trained policy's model directory."""
    run = Run(cfg, "ppo", HEADLINE)

    # Prompts, the one base model (policy + reference + value head), the reward, the optimizer.
    prompts = [r.prompt for r in load_training_records(cfg.prompts, "prompts", skip_invalid=cfg.skip_invalid)]
    loaded = load_model(cfg.policy, dtype="fp32", device=run.device)
    tokenizer = loaded.tokenizer
    model = actor_critic(loaded.model, cfg).to(run.device)
    reward = cfg.reward_source(cfg.reward, run.device)
    stream = run.stream([1] * len(prompts), step_size=cfg.rollout_batch_size, micro_batches=1)
    kl_ctl = cfg.make_kl_controller()
    moments = RunningMoments() if cfg.normalize_scores else None
    ac, optimizer, scheduler = run.setup(
        model,
        trainable_parameters(model),
        modules={"actor_critic": model},
        state={"data": stream, "kl_controller": kl_ctl, "score_moments": moments},
        on=f"{len(prompts)} prompts ({cfg.policy_mode})",
    )
    model = cast(ActorCritic, run.engine.unwrap(ac))  # the ActorCritic that run.setup wrapped

    for step in run.steps():
        t0 = time.perf_counter()
        # 1. Rollout: one response per prompt, truncated at the first stop token.
        batch_prompts = [prompts[i] for i in stream.next_batch()]
        samples = generate(model, tokenizer, batch_prompts, cfg, step, run.engine)
        t1 = time.perf_counter()

        # 2. Score, then shape (running normalization, the no-EOS rule, clipping) with the scores of
        # every process, so the running moments stay the same on each.
        raw, reward_std = checked_scores(reward, cfg.reward, batch_prompts, samples.texts, step, run.dir)
        scores = shaped(run, raw, samples, moments, cfg)
        t2 = time.perf_counter()

        # 3-4. Old log-probs and values, reference log-probs, KL, per-token rewards, GAE advantages.
        beta = kl_ctl.value
        rollout, entropy = collect(model, samples, raw, scores, beta, cfg, run.engine)

        # 5. PPO epochs x minibatches.
        stats = ppo_update(ac, optimizer, rollout, cfg, step, run.engine, run.dir)
        scheduler.step()
        metrics = step_metrics(rollout, entropy, samples, beta, reward_std, run.engine)
        kl_ctl.update(float(metrics["ppo/kl"]), n_steps=cfg.rollout_batch_size)  # the global batch, not this share
        t3 = time.perf_counter()

        # 6. Log, save samples, checkpoint.
        run.count("tokens", int(rollout.response_mask.sum()))
        run.count("samples", len(batch_prompts))
        metrics |= {**stats, "perf/generate_s": t1 - t0, "perf/score_s": t2 - t1, "perf/update_s": t3 - t2}
        if run.is_log_step(step):
            run.append_samples(sample_rows(step, batch_prompts, samples, raw)[: cfg.samples_per_log])
        run.end_step(step, metrics)
    run.close()

    # The run directory becomes the policy's model directory (LoRA merged; adapter/ kept), plus its value head.
    if run.is_main:
        save_policy(model, tokenizer, run.dir)
    return run.dir


def shaped(
    run: Run, raw: torch.Tensor, samples: Samples, moments: RunningMoments | None, cfg: PPOSettings
) -> torch.Tensor:
    """Step 2's shaping of raw scores: running normalization, the no-EOS rule, clipping. On several
    processes over the scores of all of them (gathered in rank order), so every process updates its
    running moments with the same global batch; returns this process's rows."""
    raw, ended, n = raw.float(), samples.ended, raw.shape[0]
    if run.engine.world_size > 1:
        raw = run.gather(raw.to(run.device))
        ended = run.gather(ended.to(run.device))
    scores = shape_scores(
        raw.cpu(),
        ended.cpu(),
        moments,
        no_eos_score=cfg.no_eos_score,
        no_eos_penalty=cfg.no_eos_penalty,
        clip=cfg.score_clip,
    )
    return scores[run.engine.rank * n : (run.engine.rank + 1) * n]


def save_policy(model: ActorCritic, tokenizer: Any, out: Path) -> None:
    """The trained policy as a model directory, and its value head beside it."""
    save_model_dir(model.policy, tokenizer, out)
    if model.value_head is None:
        return
    head = {k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()}
    write_atomic(out / "value_head.safetensors", lambda tmp: save_file(head, str(tmp)))
