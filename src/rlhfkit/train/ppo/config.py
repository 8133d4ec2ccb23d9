"""`PPOSettings` / `PPOConfig`: every knob of `rlhfkit ppo`, documented and validated."""

from __future__ import annotations

from dataclasses import dataclass

from rlhfkit.algorithms.kl import KLControlSettings, KLEstimatorName
from rlhfkit.config import require
from rlhfkit.models.actor_critic import PolicyModeSettings
from rlhfkit.models.value import ValueInit
from rlhfkit.rollout.generate import SamplingConfig
from rlhfkit.rollout.reward_settings import RewardSourceSettings
from rlhfkit.train.config import Schedule, TrainConfig, TrainSettings


@dataclass(frozen=True)
class PPOSettings(RewardSourceSettings, PolicyModeSettings, KLControlSettings, TrainSettings):
    """Every knob of PPO but the run's policy, reward, prompts and output.

    One step = one rollout of `rollout_batch_size` prompts, then `ppo_epochs` passes over it in
    minibatches of ``batch_size * grad_accum`` samples (one optimizer step each). The KL controller's
    fields (kl_controller, init_kl_coef, kl_target ...) are `rlhfkit.algorithms.kl.KLControlSettings`, the
    policy's (policy_mode, lora ...) `rlhfkit.models.actor_critic.PolicyModeSettings` and the reward
    source's (reward_batch_size, reward_timeout ...) `rlhfkit.rollout.reward_settings.RewardSourceSettings`.
    """

    skip_invalid: bool = False
    """Skip malformed prompt rows (and report them) instead of failing on the first."""
    max_steps: int = 100
    """PPO steps (rollout + update) to run."""
    lr: float = 3e-5
    """Peak learning rate of AdamW (for the LoRA adapters / trained layers and the value head)."""
    warmup_steps: int = 0
    """Linear warm-up of the learning rate over this many PPO steps."""
    schedule: Schedule = "constant"
    """Learning-rate decay after warm-up, per PPO step: 'constant', 'linear' (to 0) or 'cosine'."""
    batch_size: int = 4
    """Samples per forward/backward pass (micro-batch), in the update and in the rollout's scoring passes."""
    grad_accum: int = 2
    """Micro-batches per optimizer step: a PPO minibatch is batch_size * grad_accum samples."""
    save_every: int = 20
    """Write a resumable checkpoint every this many PPO steps (0: only at the end)."""

    value_init: ValueInit = "zero"
    """Value head start: 'zero' (all values 0) or 'reward' (the reward model's head, normalization folded in;
    needs `reward` to be a reward-model directory on a trunk of the policy's width)."""
    value_trunk_grad: bool = True
    """Let the value loss train the shared trunk too (False: the value head learns on detached features)."""

    sampling: SamplingConfig = SamplingConfig()
    """Rollout sampling (sampling.max_new_tokens, sampling.temperature, sampling.max_prompt_length,
    sampling.batch_size = prompts per generation call). top_p and top_k must stay off: PPO's ratio needs
    the log-probs of the distribution that was sampled."""
    rollout_batch_size: int = 32
    """Prompts (= responses) per PPO step; a multiple of batch_size * grad_accum."""
    ppo_epochs: int = 4
    """Passes over each rollout."""

    kl_estimator: KLEstimatorName = "k1"
    """Per-token KL(policy || reference) estimator: 'k1' (log ratio), 'k2' or 'k3' (Schulman 2020)."""
    gamma: float = 1.0
    """GAE discount."""
    lam: float = 0.95
    """GAE lambda."""
    clip_range: float = 0.2
    """PPO ratio clip epsilon."""
    value_clip_range: float = 0.2
    """How far a value may move from its rollout-time estimate before the value loss is clipped."""
    vf_coef: float = 0.1
    """Weight of the value loss in the total loss."""
    entropy_coef: float = 0.0
    """Weight of the entropy bonus (0: off)."""
    whiten_advantages: bool = True
    """Normalize advantages to mean 0, std 1 over each rollout's response tokens."""
    whiten_rewards: bool = False
    """Rescale the per-token rewards to unit variance (mean kept) before GAE."""

    normalize_scores: bool = True
    """Normalize scores by the running mean and std of all raw scores so far (kept in checkpoints)."""
    score_clip: float = 5.0
    """Clip shaped scores to [-score_clip, score_clip] (0: no clipping)."""
    no_eos_penalty: float = 0.0
    """Subtracted from the score of a response that did not end with EOS within sampling.max_new_tokens."""
    no_eos_score: float | None = None
    """If set, replaces the score of such responses instead (Huang et al. 2024 use -1)."""
    samples_per_log: int = 4
    """Responses (with prompt and score) appended to samples.jsonl at each logging step."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.sampling.temperature > 0,
            "sampling.temperature must be > 0 for PPO (greedy decoding has no log-probs to ratio)",
        )
        require(
            self.sampling.top_p == 1.0 and self.sampling.top_k == 0,
            "sampling.top_p must be 1 and sampling.top_k 0 for PPO: the ratio needs the sampled distribution's log-probs",
        )
        minibatch = self.batch_size * self.grad_accum
        require(
            self.rollout_batch_size > 0 and self.rollout_batch_size % minibatch == 0,
            f"rollout_batch_size ({self.rollout_batch_size}) must be a positive multiple of batch_size * grad_accum ({minibatch})",
        )
        require(self.ppo_epochs > 0, f"ppo_epochs must be positive, got {self.ppo_epochs}")
        require(0.0 <= self.gamma <= 1.0 and 0.0 <= self.lam <= 1.0, "gamma and lam must be in [0, 1]")
        require(self.clip_range > 0 and self.value_clip_range > 0, "clip_range and value_clip_range must be positive")
        require(self.vf_coef >= 0 and self.entropy_coef >= 0, "vf_coef and entropy_coef must be >= 0")
        require(self.score_clip >= 0 and self.no_eos_penalty >= 0, "score_clip and no_eos_penalty must be >= 0")
        require(
            not (self.no_eos_score is not None and self.no_eos_penalty),
            "set no_eos_score (replace) or no_eos_penalty (subtract), not both",
        )
        require(self.samples_per_log >= 0, "samples_per_log must be >= 0")


@dataclass(frozen=True)
class PPOConfig(PPOSettings, TrainConfig):
    """`rlhfkit ppo`: raise reward - beta * KL(policy || reference) with PPO."""

    policy: str = "smollm2"
    """MODEL to start from (and the reference policy): 'smollm2', a model directory (e.g. an SFT run), a hub id."""
    reward: str = ""
    """REWARD: a reward-model directory, python:MODULE:FUNCTION, an http(s):// URL, or several of these
    separated by commas (an ensemble: mean, minus ensemble_k * std)."""
    prompts: str = ""
    """Prompts file (any format rlhfkit reads; each row's prompt is used) or DBURL#PROJECT."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            bool(self.reward.strip()),
            "reward is required: a reward-model directory, python:MODULE:FUNCTION or an http(s):// URL",
        )
        require(bool(self.prompts), "prompts is required (a prompts file)")
        require(
            self.value_init != "reward" or ("," not in self.reward and not self.reward.startswith(("python:", "http"))),
            "value_init=reward needs `reward` to be one reward-model directory",
        )

    def title(self) -> str:
        """What the run is, in a few words (the report's title)."""
        return f"PPO of {self.policy} against {self.reward}"
