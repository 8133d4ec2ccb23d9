"""Reward models from human judgments: `config` (the knobs), `trainer` (the loop), `data` (judgments as token
sequences and batches), `objective` (the loss of a batch), `evaluation` (accuracy, calibration, scoring files)."""

from rlhfkit.train.reward.config import RewardConfig, RewardSettings
from rlhfkit.train.reward.trainer import train_reward_model

__all__ = ["RewardConfig", "RewardSettings", "train_reward_model"]
