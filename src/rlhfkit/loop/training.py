"""The two training stages of a round, as calls of the trainers with configs built from the loop's.

* reward model: `rlhfkit.train.reward` on the whole project (``DBURL#PROJECT``: every round's
  judgments so far, aggregated per item by majority), normalized on the current policy's samples;
* policy: `rlhfkit.train.ppo` against that reward model, starting from the current policy (which is
  also PPO's KL reference), or `rlhfkit.train.dpo` on the project's pairs.

Each trainer writes its own run directory and resumes from its own checkpoints when the loop is
restarted; the configs built here are a pure function of the loop config, so a resumed trainer finds
the same config it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlhfkit.config import build_config, to_dict
from rlhfkit.loop.config import LoopConfig

REWARD_KIND = {"ranking": "rankings", "pairwise": "pairs"}
"""Task type of the project -> the record kind the reward model trains on."""

REWARD_SAVE_EVERY = 20
"""Reward-model checkpoint interval (steps): a killed loop loses at most this much reward training."""

PPO_SAVE_EVERY = 4
"""PPO checkpoint interval (steps)."""


def data_spec(cfg: LoopConfig) -> str:
    """The project as a training source: ``DBURL#PROJECT``."""
    return f"{cfg.db_url()}#{cfg.feedback.project}"


def trunk_dir(cfg: LoopConfig) -> str:
    """The reward model's trunk: `reward.model` (or the initial policy), cut to `reward.trunk_layers`."""
    model = cfg.reward.model or cfg.policy_model
    if cfg.reward.trunk_layers == 0:
        return model
    return str(Path(cfg.output).resolve() / f"reward-trunk-{cfg.reward.trunk_layers}")


def build_truncated_trunk(model: str, layers: int, out: Path) -> Path:
    """A model directory holding the embeddings, the bottom `layers` blocks and the final norm of MODEL.

    Written once (atomically) and reused by every round. A model with at most `layers` blocks is
    copied whole.
    """
    from rlhfkit.models.adapters import decoder_layers
    from rlhfkit.models.loading import load_model
    from rlhfkit.models.saving import save_model_dir

    if (out / "config.json").exists():
        return out
    loaded = load_model(model, dtype="fp32")
    blocks = decoder_layers(loaded.model)
    if layers < len(blocks):
        del blocks[layers:]
        config = loaded.model.config
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):  # per-layer attention kinds (sliding/full) in newer configs
            config.layer_types = config.layer_types[:layers]
    save_model_dir(loaded.model, loaded.tokenizer, out)
    return out


def reward_config(cfg: LoopConfig, output: Path, policy: str) -> Any:
    """The RewardConfig of a round: trunk = `trunk_dir`, data = the whole project, normalized on `policy`."""
    from rlhfkit.train.reward import RewardConfig

    r = cfg.reward
    values = {
        "output": str(output), "model": trunk_dir(cfg), "data": [data_spec(cfg)],
        "kind": REWARD_KIND[cfg.feedback.task_type], "max_steps": r.max_steps, "lr": r.lr,
        "batch_size": r.batch_size, "n_heads": r.n_heads, "pooling": r.pooling, "freeze_layers": r.freeze_layers,
        "max_length": r.max_length, "weight_decay": r.weight_decay, "normalize_policy": policy,
        "normalize_prompts": r.normalize_prompts, "normalize_sampling": to_dict(cfg.policy.sampling),
        "eval_fraction": 0.1, "seed": cfg.seed, "progress": cfg.progress, "save_every": REWARD_SAVE_EVERY,
        "log_every": 10, "eval_every": 0,
    }
    return build_config(RewardConfig, values=values, overrides=r.overrides)


def train_reward(cfg: LoopConfig, output: Path, policy: str) -> Path:
    from rlhfkit.train.reward import train_reward_model

    if cfg.reward.trunk_layers:
        build_truncated_trunk(cfg.reward.model or cfg.policy_model, cfg.reward.trunk_layers, Path(trunk_dir(cfg)))
    return train_reward_model(reward_config(cfg, output, policy))


def ppo_config(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Any:
    """The PPOConfig of a round: from `policy` (also the KL reference) against the round's reward model.

    Every rollout is written to samples.jsonl (``samples_per_log`` = the rollout size), so that the gold
    score of what PPO actually sampled can be computed at every step: the proxy-vs-gold curve.
    """
    from rlhfkit.train.ppo import PPOConfig

    p = cfg.policy
    values = {
        "output": str(output), "policy": policy, "reward": str(reward_dir), "prompts": train_prompts,
        "max_steps": p.max_steps, "lr": p.lr, "batch_size": p.batch_size, "grad_accum": 1,
        "rollout_batch_size": p.rollout_batch_size,
        "ppo_epochs": p.ppo_epochs, "policy_mode": p.policy_mode, "kl_controller": p.kl_controller,
        "init_kl_coef": p.init_kl_coef, "kl_target": p.kl_target, "kl_horizon": p.kl_horizon,
        "min_kl_coef": p.min_kl_coef, "ensemble_k": p.ensemble_k,
        "sampling": to_dict(p.sampling), "seed": cfg.seed, "progress": cfg.progress, "log_every": 1,
        "samples_per_log": p.rollout_batch_size, "save_every": PPO_SAVE_EVERY, "warmup_steps": 0,
        "schedule": "constant",
    }
    return build_config(PPOConfig, values=values, overrides=p.overrides)


def dpo_config(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Any:
    """The DPOConfig of a round: from `policy` on every pair the project has exported so far."""
    from rlhfkit.train.dpo import DPOConfig

    p = cfg.policy
    values = {
        "output": str(output), "model": policy, "data": data_spec(cfg), "kind": "pairs", "beta": p.dpo_beta,
        "max_steps": p.max_steps, "lr": p.lr, "batch_size": p.batch_size, "seed": cfg.seed,
        "progress": cfg.progress, "log_every": 1, "save_every": PPO_SAVE_EVERY, "warmup_steps": 0,
        "max_length": cfg.reward.max_length + p.sampling.max_new_tokens, "max_prompt_length": cfg.reward.max_length,
        "kl_max_new_tokens": p.sampling.max_new_tokens, "eval_fraction": 0.1,
    }
    return build_config(DPOConfig, values=values, overrides=p.overrides)


def _run_ppo(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    from rlhfkit.train.ppo import ppo

    return ppo(ppo_config(cfg, output, policy, reward_dir, train_prompts))


def _run_dpo(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    from rlhfkit.train.dpo import dpo

    return dpo(dpo_config(cfg, output, policy, reward_dir, train_prompts))


POLICY_TRAINERS: dict[str, Callable[[LoopConfig, Path, str, Path, str], Path]] = {"ppo": _run_ppo, "dpo": _run_dpo}
"""policy.method -> ``fn(cfg, output, current policy, reward dir, training prompts file) -> model dir``."""


def train_policy(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    return POLICY_TRAINERS[cfg.policy.method](cfg, output, policy, reward_dir, train_prompts)
