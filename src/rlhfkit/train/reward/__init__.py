"""Reward models from human judgments: `trainer` (the config and loop), `data` (judgments as token
sequences and batches), `objective` (the loss of a batch), `evaluation` (accuracy, calibration, scoring files)."""

from rlhfkit.train.reward.trainer import (
    RewardConfig,
    RewardSettings,
    train_reward_model,
)

__all__ = ["RewardConfig", "RewardSettings", "train_reward_model"]
