"""Critic-free RL (GRPO, RLOO, REINFORCE++): `config` (the knobs), `update` (clipped policy-gradient
passes over a rollout), `trainer` (the loop). Rollouts are collected by `rlhfkit.rollout.group`."""

from rlhfkit.train.grpo.config import GRPOConfig, GRPOSettings, RLOOConfig, RLOOSettings
from rlhfkit.train.grpo.trainer import grpo

__all__ = ["GRPOConfig", "GRPOSettings", "RLOOConfig", "RLOOSettings", "grpo"]
