"""PPO with a KL penalty: `config` (the knobs), `update` (the clipped-ratio epochs over a rollout),
`trainer` (the loop). Rollouts are collected by `rlhfkit.rollout.collect`."""

from rlhfkit.train.ppo.config import PPOConfig, PPOSettings
from rlhfkit.train.ppo.trainer import ppo

__all__ = ["PPOConfig", "PPOSettings", "ppo"]
