"""PPO with a KL penalty: the RL phase of RLHF (Ziegler et al. 2019; Ouyang et al. 2022, sec. 3.5).

Every step: 1. sample responses to a batch of prompts; 2. score them with the reward source;
3. per-token reward = -beta * KL(policy || reference) plus the shaped score at the last token;
4. advantages by GAE; 5. PPO epochs over shuffled minibatches (clipped ratio, clipped value loss,
optional entropy bonus); 6. adapt beta, log, checkpoint. The implementation details follow Huang et
al. 2024, "The N+ Implementation Details of RLHF with PPO"; the math lives in `rlhfkit.algorithms`.

Policy, reference and value share one base model (see `rlhfkit.models.actor_critic`).
"""

from __future__ import annotations

import json
import resource
import time
from collections import defaultdict
from pathlib import Path

import torch
from safetensors.torch import save_file

from rlhfkit.algorithms.advantages import gae, ppo_token_rewards
from rlhfkit.algorithms.common import masked_mean, masked_sum, masked_whiten
from rlhfkit.algorithms.kl import KL_ESTIMATORS, make_kl_controller
from rlhfkit.algorithms.ppo_losses import explained_variance, policy_loss_clipped, value_loss_clipped
from rlhfkit.data.records import PromptText
from rlhfkit.models.adapters import count_parameters, trainable_parameters
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.models.value import make_value_head
from rlhfkit.rollout.experience import Rollout, RunningMoments, concat_samples, shape_scores
from rlhfkit.rollout.generate import Samples, sample
from rlhfkit.rollout.rewards import RewardSource, resolve_reward
from rlhfkit.data.sampler import BatchStream
from rlhfkit.train.checkpoint import save_checkpoint
from rlhfkit.train.engine import Engine
from rlhfkit.train.ppo_config import PPOConfig
from rlhfkit.models.actor_critic import ActorCritic, build_actor_critic
from rlhfkit.train.run import (
    MetricsLogger,
    Throughput,
    _truncate_after,
    check_finite,
    resume_latest,
    log,
    make_optimizer,
    prepare_run_dir,
    progress,
    scheduler_state,
)
from rlhfkit.train.sources import load_training_records

__all__ = ["PPOConfig", "ppo", "collect_rollout", "ppo_update"]


def generate(ac: ActorCritic, tokenizer, prompts: list[PromptText], cfg: PPOConfig, step: int, engine: Engine) -> Samples:
    """Sample one response per prompt, `sampling.batch_size` prompts per call, with a per-step seed
    (so a resumed run samples exactly what an uninterrupted one would)."""
    parts = []
    size = cfg.sampling.batch_size
    for i, start in enumerate(range(0, len(prompts), size)):
        with engine.autocast():  # bf16 KV cache where bf16 is the faster dtype, else fp32
            parts.append(sample(ac.policy, tokenizer, prompts[start : start + size], cfg.sampling,
                                generator_seed=cfg.seed * 1_000_003 + step * 1_009 + i))
    return concat_samples(parts, tokenizer.pad_token_id)


@torch.no_grad()
def collect_rollout(ac: ActorCritic, samples: Samples, raw_scores: torch.Tensor, scores: torch.Tensor,
                    beta: float, cfg: PPOConfig, engine: Engine) -> tuple[Rollout, torch.Tensor]:
    """Steps 3-4: old log-probs and values (one trunk pass), reference log-probs, per-token KL and
    rewards, GAE advantages and returns. Returns the rollout and the (B, R) policy entropy."""
    ids = torch.cat([samples.prompt_ids, samples.response_ids], dim=1)
    mask = torch.cat([samples.prompt_mask, samples.response_mask], dim=1)
    start, rmask = samples.prompt_ids.shape[1], samples.response_mask
    logps, values, ref_logps, entropy, trunks = [], [], [], [], []
    for rows in torch.arange(ids.shape[0], device=ids.device).split(cfg.batch_size):
        with engine.autocast():
            trunk = ac.trunk(ids[rows], mask[rows])  # the frozen bottom blocks, once for policy, reference, epochs
            out = ac(ids[rows], mask[rows], start, temperature=cfg.sampling.temperature, with_entropy=True, trunk=trunk)
            ref_logps.append(ac.reference_logps(ids[rows], mask[rows], start, temperature=cfg.sampling.temperature,
                                                trunk=trunk))
        logps.append(out.logps)
        values.append(out.values)
        entropy.append(out.entropy)
        trunks.append(trunk)
    logp, ref_logp, value = torch.cat(logps), torch.cat(ref_logps), torch.cat(values) * rmask
    trunk = None if trunks[0] is None else torch.cat(trunks)
    kl = KL_ESTIMATORS[cfg.kl_estimator](logp, ref_logp) * rmask
    rewards = ppo_token_rewards(scores.to(kl.device), kl, rmask, beta)
    if cfg.whiten_rewards:
        rewards = masked_whiten(rewards, rmask, shift_mean=False)
    advantages, returns = gae(rewards, value, rmask, cfg.gamma, cfg.lam)
    if cfg.whiten_advantages:
        advantages = masked_whiten(advantages, rmask)
    rollout = Rollout(ids, mask, rmask, logp, ref_logp, value, kl, scores.to(kl.device), raw_scores.to(kl.device),
                      rewards, advantages, returns, samples.ended, trunk)
    return rollout, torch.cat(entropy)


def ppo_update(ac: ActorCritic, optimizer: torch.optim.Optimizer, rollout: Rollout, cfg: PPOConfig, step: int,
               engine: Engine, run_dir: Path) -> dict[str, float]:
    """Step 5: `ppo_epochs` passes over the rollout in shuffled minibatches of
    ``batch_size * grad_accum`` samples, one optimizer step per minibatch. Each micro-batch's
    token-mean loss is weighted by its share of the minibatch's tokens, so the step's loss is the
    token-mean over the minibatch however it is split. Returns token-weighted mean statistics."""
    n = rollout.input_ids.shape[0]
    minibatch = cfg.batch_size * cfg.grad_accum
    order_rng = torch.Generator().manual_seed(cfg.seed * 7_919 + step)
    sums: dict[str, float] = defaultdict(float)
    weight_total = 0.0
    for _ in range(cfg.ppo_epochs):
        order = torch.randperm(n, generator=order_rng).to(rollout.input_ids.device)
        for mb_rows in order.split(minibatch):
            micro = mb_rows.split(cfg.batch_size)
            mb_tokens = float(rollout.response_mask[mb_rows].sum().clamp(min=1))
            mb_stats: dict[str, float] = defaultdict(float)
            for i, rows in enumerate(micro):
                part = rollout.select(rows)
                weight = float(part.response_mask.sum()) / mb_tokens
                with engine.sync(ac, last=i == len(micro) - 1), engine.autocast():
                    out = ac(part.input_ids, part.attention_mask, part.response_start,
                             temperature=cfg.sampling.temperature, with_entropy=cfg.entropy_coef > 0, trunk=part.trunk)
                    pg = policy_loss_clipped(out.logps, part.logps, part.advantages, part.response_mask, cfg.clip_range)
                    vf = value_loss_clipped(out.values, part.values, part.returns, part.response_mask, cfg.value_clip_range)
                    loss = pg.loss + cfg.vf_coef * vf.loss
                    if out.entropy is not None:
                        entropy = masked_mean(out.entropy, part.response_mask)
                        loss = loss - cfg.entropy_coef * entropy
                    engine.backward(loss * weight)
                for key, value in (("ppo/policy_loss", pg.loss), ("ppo/value_loss", vf.loss), ("ppo/clip_frac", pg.clip_frac),
                                   ("ppo/approx_kl", pg.approx_kl), ("ppo/value_clip_frac", vf.clip_frac)):
                    mb_stats[key] += weight * float(value.detach())
            # A NaN/inf loss stops the run before it can reach the weights; the last checkpoint stays good.
            check_finite(step, {k: v for k, v in mb_stats.items() if k.endswith("_loss")}, run_dir)
            mb_stats["train/grad_norm"] = engine.clip(ac, cfg.max_grad_norm)
            optimizer.step()
            optimizer.zero_grad(set_to_none=True)
            for key, value in mb_stats.items():
                sums[key] += value
            weight_total += 1.0
    return {k: v / weight_total for k, v in sums.items()}


def score_responses(reward: RewardSource, prompts: list[PromptText], samples: Samples, cfg: PPOConfig, step: int,
                    run_dir: Path) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Step 2: raw (B,) scores (and the ensemble std, if any); NaN/inf stops the run, naming the reward."""
    out = reward(prompts, samples.texts)
    bad = ~torch.isfinite(out.scores)
    if bool(bad.any()):
        example = samples.texts[int(bad.nonzero()[0])]
        raise FloatingPointError(
            f"step {step}: the reward {cfg.reward!r} returned NaN or inf for {int(bad.sum())} of {len(bad)} "
            f"responses (e.g. {example[:80]!r}); stopping. The last good checkpoint is in {run_dir / 'checkpoints'}."
        )
    return out.scores, out.std


def _peak_memory_mb(device: torch.device) -> float:
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def _append_samples(path: Path, step: int, prompts: list[PromptText], samples: Samples, raw: torch.Tensor, n: int) -> None:
    with open(path, "a") as f:
        for i in range(min(n, len(prompts))):
            row = {"step": step, "prompt": prompts[i], "response": samples.texts[i], "score": float(raw[i])}
            f.write(json.dumps(row) + "\n")


def ppo(cfg: PPOConfig) -> Path:
    """Run PPO; returns the run directory, which ends as the trained policy's model directory."""
    run_dir = prepare_run_dir(cfg)
    engine = Engine(cfg.dtype, cfg.seed)

    # Prompts, the one base model (policy + reference + value head), the reward, the optimizer.
    prompts = [r.prompt for r in load_training_records(cfg.prompts, "prompts", skip_invalid=cfg.skip_invalid)]
    loaded = load_model(cfg.policy, dtype="fp32", device=engine.device)
    tokenizer = loaded.tokenizer
    value_head = make_value_head(cfg.value_init, int(loaded.model.config.hidden_size), cfg.reward)
    ac = build_actor_critic(loaded.model, value_head, cfg.policy_mode, lora=cfg.lora, train_layers=cfg.train_layers,
                            value_trunk_grad=cfg.value_trunk_grad,
                            cache_frozen_trunk=cfg.cache_frozen_trunk).to(engine.device)
    reward = resolve_reward(cfg.reward, ensemble_k=cfg.ensemble_k, device=engine.device, batch_size=cfg.reward_batch_size,
                            http_timeout=cfg.reward_timeout, http_retries=cfg.reward_retries, http_backoff=cfg.reward_backoff)
    trainable, total = count_parameters(ac)
    log.info("PPO (%s): training %s of %s parameters on %d prompts", cfg.policy_mode, f"{trainable:,}", f"{total:,}", len(prompts))
    optimizer, scheduler = make_optimizer(trainable_parameters(ac), cfg)
    stream = BatchStream([1] * len(prompts), cfg.rollout_batch_size, cfg.seed)
    kl_ctl = make_kl_controller(cfg.kl_controller, init_beta=cfg.init_kl_coef, target=cfg.kl_target, horizon=cfg.kl_horizon,
                                kp=cfg.kl_kp, min_beta=cfg.min_kl_coef, max_beta=cfg.max_kl_coef)
    moments = RunningMoments() if cfg.normalize_scores else None

    restored = resume_latest(run_dir, enabled=cfg.resume, modules={"actor_critic": ac}, optimizer=optimizer,
                             scheduler=scheduler, stream=stream)
    start = restored.step if restored else 0
    if restored:
        kl_ctl.load_state_dict(restored.state["kl_controller"])
        if moments is not None:
            moments.load_state_dict(restored.state["score_moments"])
    ac, optimizer = engine.prepare(ac, optimizer)
    model: ActorCritic = engine.unwrap(ac)

    logger = MetricsLogger(run_dir, cfg.report_to, config=cfg, resume_step=start)
    _truncate_after(run_dir / "samples.jsonl", start)
    tokens_speed, samples_speed = Throughput(), Throughput()
    bar = progress(cfg.max_steps, start, "ppo", cfg.progress)

    def checkpoint(step: int) -> None:
        state = {"scheduler": scheduler_state(scheduler), "data": stream.state_dict(),
                 "kl_controller": kl_ctl.state_dict(), "score_moments": moments.state_dict() if moments else None}
        save_checkpoint(run_dir / "checkpoints", step, modules={"actor_critic": model}, optimizer=optimizer,
                        state=state, keep=cfg.keep_checkpoints)

    for step in range(start + 1, cfg.max_steps + 1):
        t0 = time.perf_counter()
        # 1. Rollout: one response per prompt, truncated at the first stop token.
        batch_prompts = [prompts[i] for i in stream.next_batch()]
        samples = generate(model, tokenizer, batch_prompts, cfg, step, engine)
        t1 = time.perf_counter()

        # 2. Score, then shape: running normalization, the no-EOS rule, clipping.
        raw, reward_std = score_responses(reward, batch_prompts, samples, cfg, step, run_dir)
        scores = shape_scores(raw, samples.ended.cpu(), moments, no_eos_score=cfg.no_eos_score,
                              no_eos_penalty=cfg.no_eos_penalty, clip=cfg.score_clip)
        t2 = time.perf_counter()

        # 3-4. Old log-probs and values, reference log-probs, KL, per-token rewards, GAE advantages.
        beta = kl_ctl.value
        rollout, entropy = collect_rollout(model, samples, raw, scores, beta, cfg, engine)

        # 5. PPO epochs x minibatches.
        stats = ppo_update(ac, optimizer, rollout, cfg, step, engine, run_dir)
        scheduler.step()
        rmask = rollout.response_mask
        seq_kl = masked_sum(rollout.kl, rmask, dim=1).mean()
        kl_ctl.update(float(seq_kl), n_steps=len(batch_prompts))
        t3 = time.perf_counter()

        # 6. Log, save samples, checkpoint.
        n_tokens = int(rmask.sum())
        tokens_speed.add(n_tokens)
        samples_speed.add(len(batch_prompts))
        metrics = {
            "ppo/score": raw.mean(), "ppo/score_std": raw.std() if raw.numel() > 1 else 0.0,
            "ppo/score_shaped": scores.mean(), "ppo/kl": seq_kl, "ppo/beta": beta,
            "ppo/entropy": masked_mean(entropy, rmask), **stats,
            "ppo/response_len": rmask.sum(dim=1).float().mean(), "ppo/no_eos_frac": (~samples.ended).float().mean(),
            "ppo/prompts_truncated": samples.prompts_truncated, "train/lr": scheduler.get_last_lr()[0],
            "perf/generate_s": t1 - t0, "perf/score_s": t2 - t1, "perf/update_s": t3 - t2,
        }
        if reward_std is not None:
            metrics["ppo/reward_std"] = reward_std.mean()
        ev = explained_variance(rollout.values, rollout.returns, rmask)
        if torch.isfinite(ev):  # undefined (NaN) when every return is equal
            metrics["ppo/explained_var"] = ev
        if step % cfg.log_every == 0 or step == cfg.max_steps:
            metrics["perf/tokens_per_s"] = tokens_speed.rate()
            metrics["perf/samples_per_s"] = samples_speed.rate()
            metrics["perf/peak_mem_mb"] = _peak_memory_mb(engine.device)
            logger.log(step, metrics)
            _append_samples(run_dir / "samples.jsonl", step, batch_prompts, samples, raw, cfg.samples_per_log)
        if (cfg.save_every and step % cfg.save_every == 0) or step == cfg.max_steps:
            checkpoint(step)
        bar.update(1)
    bar.close()
    logger.close()

    # The run directory becomes the policy's model directory (LoRA merged; adapter/ kept), plus its value head.
    save_model_dir(model.policy, tokenizer, run_dir)
    save_file({k: v.detach().cpu().contiguous() for k, v in model.value_head.state_dict().items()},
              str(run_dir / "value_head.safetensors"))
    from rlhfkit.eval.report import write_report

    write_report(run_dir, title=f"PPO of {cfg.policy} against {cfg.reward}")
    return run_dir

