"""`RewardSourceSettings`: how an RL trainer calls its reward source, as config fields; `checked_scores`.

Mixed into the settings of every trainer that takes ``reward=`` (PPO, GRPO / RLOO), so the knobs are
declared once; the fields stay flat (``reward_timeout: 10`` in a YAML file).
"""

from __future__ import annotations

import math
from dataclasses import dataclass
from pathlib import Path

import torch

from rlhfkit.config import require
from rlhfkit.data.records import PromptText
from rlhfkit.rollout.rewards import RewardSource, resolve_reward


@dataclass(frozen=True)
class RewardSourceSettings:
    """How the reward source is called (see `rlhfkit.rollout.rewards.resolve_reward`)."""

    ensemble_k: float = 0.0
    """Where the reward reports a std (an ensemble), score = mean - ensemble_k * std."""
    reward_batch_size: int = 16
    """Rows per reward-model forward pass."""
    reward_timeout: float = 30.0
    """Seconds to wait for an HTTP reward endpoint's answer."""
    reward_retries: int = 3
    """Retries of a failed HTTP reward request before the step fails."""
    reward_backoff: float = 0.5
    """First wait between HTTP retries, in seconds; doubled after each retry."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # cooperative: a config mixes this in
        if parent is not None:
            parent()
        require(self.ensemble_k >= 0 and math.isfinite(self.ensemble_k), "ensemble_k must be a finite number >= 0")
        require(
            self.reward_batch_size > 0 and self.reward_timeout > 0,
            "reward_batch_size and reward_timeout must be positive",
        )
        require(self.reward_retries >= 0 and self.reward_backoff >= 0, "reward_retries and reward_backoff must be >= 0")

    def reward_source(self, spec: str, device: torch.device | str) -> RewardSource:
        """`spec` (a reward model, a function, a URL, or an ensemble of them) as a source of scores."""
        return resolve_reward(
            spec,
            ensemble_k=self.ensemble_k,
            device=device,
            batch_size=self.reward_batch_size,
            http_timeout=self.reward_timeout,
            http_retries=self.reward_retries,
            http_backoff=self.reward_backoff,
        )


def checked_scores(
    reward: RewardSource, spec: str, prompts: list[PromptText], responses: list[str], step: int, run_dir: Path
) -> tuple[torch.Tensor, torch.Tensor | None]:
    """Raw (B,) scores of `responses` (and the ensemble's std, if any); NaN or inf stops the run,
    naming the reward `spec` and the checkpoint to go back to."""
    out = reward(prompts, responses)
    bad = ~torch.isfinite(out.scores)
    if bool(bad.any()):
        example = responses[int(bad.nonzero()[0])]
        raise FloatingPointError(
            f"step {step}: the reward {spec!r} returned NaN or inf for {int(bad.sum())} of {len(bad)} "
            f"responses (e.g. {example[:80]!r}); stopping. The last good checkpoint is in {run_dir / 'checkpoints'}."
        )
    return out.scores, out.std
