"""Critic-free RL: GRPO (Shao et al. 2024), RLOO (Ahmadian et al. 2024), REINFORCE++ (Hu et al. 2025).

Every step: 1. sample `group_size` responses to each of `prompts_per_step` prompts; 2. score them;
3. the reference's log-probs (when beta > 0), per-token rewards, advantages from the group (or the
batch); 4. clipped policy-gradient updates, with the KL as a loss term or already in the reward;
5. log, evaluate on held-out prompts, checkpoint. No value head: the group is the baseline.

The policy and its reference share one base model (`rlhfkit.models.actor_critic`: with LoRA the
reference is the adapters switched off); with beta = 0 the reference never runs.
"""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import torch

from rlhfkit.algorithms.advantages import estimator_hyperparameters
from rlhfkit.config import require
from rlhfkit.data.records import PromptText
from rlhfkit.data.sampler import BatchStream
from rlhfkit.models.actor_critic import ActorCritic
from rlhfkit.models.adapters import trainable_parameters
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.rollout.collect import sample_rollout, sample_rows
from rlhfkit.rollout.generate import Samples, sample_texts
from rlhfkit.rollout.group import GroupRollout, collect_group_rollout, equal_score_groups
from rlhfkit.rollout.reward_settings import checked_scores
from rlhfkit.rollout.rewards import RewardSource
from rlhfkit.train.grpo.config import GRPOConfig, GRPOSettings
from rlhfkit.train.grpo.update import grpo_update, minibatches_per_rollout
from rlhfkit.train.run import Run
from rlhfkit.train.sources import load_training_records

HEADLINE = (("rl/reward", "reward"), ("rl/kl", "KL"), ("eval/reward", "held-out"), ("perf/samples_per_s", "samples/s"))
"""What the console shows of a critic-free run."""


def grpo(cfg: GRPOConfig) -> Path:
    """Run GRPO / RLOO / REINFORCE++ (as `cfg.advantage` says); returns the run directory, which ends
    as the trained policy's model directory."""
    run = Run(cfg, cfg.advantage, HEADLINE)

    # Prompts (and held-out ones), the base model (policy + reference), the reward, the optimizer.
    prompts = [r.prompt for r in load_training_records(cfg.prompts, "prompts", skip_invalid=cfg.skip_invalid)]
    loaded = load_model(cfg.policy, dtype="fp32", device=run.device)
    tokenizer = loaded.tokenizer
    model = cfg.build(loaded.model, None).to(run.device)
    reward = cfg.reward_source(cfg.reward, run.device)
    stream = group_stream(run, len(prompts), cfg)
    ac, optimizer, scheduler = run.setup(
        model,
        trainable_parameters(model),
        modules={"policy": model},
        state={"data": stream},
        on=f"{len(prompts)} prompts x {cfg.group_size} responses ({cfg.policy_mode})",
    )
    model = cast(ActorCritic, run.engine.unwrap(ac))
    evaluate = held_out_evaluation(cfg, model, tokenizer, reward, run)
    run.log_initial(evaluate)

    for step in run.steps():
        t0 = time.perf_counter()
        # 1. Rollout: group_size responses to each prompt, in consecutive rows.
        batch_prompts = [prompts[i] for i in stream.next_batch() for _ in range(cfg.group_size)]
        samples = generate(model, tokenizer, batch_prompts, cfg, step, run)
        t1 = time.perf_counter()

        # 2. Score.
        scores, ensemble_std = checked_scores(reward, cfg.reward, batch_prompts, samples.texts, step, run.dir)
        t2 = time.perf_counter()

        # 3. Reference (and old) log-probs, per-token rewards, advantages, the loss mask.
        rollout = collect(model, samples, scores, cfg, run)

        # 4. Clipped policy-gradient updates.
        stats = grpo_update(ac, optimizer, rollout, cfg, step, run.engine, run.dir)
        scheduler.step()
        t3 = time.perf_counter()

        # 5. Log, evaluate, checkpoint.
        run.count("tokens", int(rollout.response_mask.sum()))
        run.count("samples", len(batch_prompts))
        metrics = step_metrics(rollout, samples, scores, cfg)
        if ensemble_std is not None:
            metrics["rl/ensemble_std"] = ensemble_std.mean()
        metrics = {**run.engine.mean_over_processes(metrics), **stats}
        metrics |= {"perf/generate_s": t1 - t0, "perf/score_s": t2 - t1, "perf/update_s": t3 - t2}
        if run.is_log_step(step):
            run.append_samples(sample_rows(step, batch_prompts, samples, scores)[: cfg.samples_per_log])
        run.end_step(step, metrics, evaluate=evaluate)
    run.close()

    # The run directory becomes the policy's model directory (LoRA merged; adapter/ kept).
    if run.is_main:
        save_model_dir(model.policy, tokenizer, run.dir)
    return run.dir


def group_stream(run: Run, n_prompts: int, cfg: GRPOSettings) -> BatchStream:
    """The prompts of each step, `prompts_per_step` over all processes (each takes whole groups)."""
    require(
        cfg.rollout_size % run.global_batch == 0,
        f"prompts_per_step * group_size ({cfg.rollout_size}) must be a multiple of batch_size * grad_accum * "
        f"processes ({run.global_batch})",
    )
    return run.stream([1] * n_prompts, step_size=cfg.prompts_per_step, micro_batches=1)


def generate(
    model: ActorCritic, tokenizer: Any, prompts: list[PromptText], cfg: GRPOSettings, step: int, run: Run
) -> Samples:
    """Step 1 with this config: one response per row of `prompts`, with a per-step seed; this process
    holds rows ``rank * len(prompts) ...`` of the step, so any split samples what one process would."""
    seed = cfg.seed * 1_000_003 + step * 1_009
    first_row = run.engine.rank * len(prompts)
    return sample_rollout(
        model.policy, tokenizer, prompts, cfg.sampling, seed=seed, first_row=first_row, autocast=run.engine.autocast
    )


def collect(model: ActorCritic, samples: Samples, scores: torch.Tensor, cfg: GRPOSettings, run: Run) -> GroupRollout:
    """Step 3 with this config (`rlhfkit.rollout.group.collect_group_rollout`)."""
    return collect_group_rollout(
        model,
        samples,
        scores,
        group_size=cfg.group_size,
        advantage=cfg.advantage,
        # an estimator's hyper-parameter is the config field of the same name (eps keeps its default)
        hyper={k: getattr(cfg, k) for k in estimator_hyperparameters(cfg.advantage) if hasattr(cfg, k)},
        beta=cfg.beta,
        kl_in=cfg.kl_in,
        kl_estimator=cfg.kl_estimator,
        need_old_logps=minibatches_per_rollout(cfg) > 1,
        mask_truncated=cfg.mask_truncated,
        temperature=cfg.sampling.temperature,
        batch_size=cfg.batch_size,
        autocast=run.engine.autocast,
        sum_over_processes=run.engine.sum_tensor if run.engine.world_size > 1 else None,
    )


def step_metrics(
    rollout: GroupRollout, samples: Samples, scores: torch.Tensor, cfg: GRPOSettings
) -> dict[str, float | torch.Tensor]:
    """What a step logs about its rollout (the update adds the loss, KL, entropy and clip fractions)."""
    groups = scores.view(-1, cfg.group_size)
    flat = equal_score_groups(scores, cfg.group_size) if cfg.group_size > 1 else torch.zeros_like(scores).bool()
    return {
        "rl/reward": scores.mean(),
        "rl/reward_std": groups.std(dim=1).mean() if cfg.group_size > 1 else scores.std(),
        "rl/zero_std_frac": flat.float().mean(),
        "rl/response_len": rollout.response_mask.sum(dim=1).float().mean(),
        "rl/truncated_frac": (~samples.ended).float().mean(),
        "rl/loss_tokens_frac": rollout.loss_mask.sum() / rollout.response_mask.sum().clamp(min=1),
        "rl/prompts_truncated": samples.prompts_truncated,
    }


def held_out_evaluation(cfg: GRPOConfig, model: ActorCritic, tokenizer: Any, reward: RewardSource, run: Run) -> Any:
    """``evaluate(step) -> {"eval/reward": mean score of greedy answers to the held-out prompts}``, or
    None without `eval_prompts` (and on every process but the main one, which alone logs). With a 0/1
    reward (a verifier) the mean is the accuracy."""
    if not cfg.eval_prompts or not run.is_main:
        return None
    records = load_training_records(cfg.eval_prompts, "prompts", skip_invalid=cfg.skip_invalid)
    prompts = [r.prompt for r in records][: cfg.eval_samples or None]
    greedy = type(cfg.sampling)(
        max_new_tokens=cfg.sampling.max_new_tokens,
        temperature=0.0,
        max_prompt_length=cfg.sampling.max_prompt_length,
        batch_size=cfg.sampling.batch_size,
    )

    def evaluate(step: int) -> dict[str, float]:
        answers = [group[0] for group in sample_texts(model.policy, tokenizer, prompts, greedy)]
        out = reward(prompts, answers)
        return {"eval/reward": float(out.scores.float().mean()), "eval/n": float(len(prompts))}

    return evaluate
