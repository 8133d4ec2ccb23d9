"""`GRPOSettings` / `GRPOConfig` and `RLOOConfig`: every knob of the critic-free RL trainers.

`rlhfkit grpo` and `rlhfkit rloo` run one trainer with different defaults: GRPO (Shao et al. 2024)
puts a k3 KL term in the loss and scales advantages by the group's std; RLOO (Ahmadian et al. 2024)
puts a k1 KL penalty in the reward and uses the leave-one-out baseline. Every choice is a field, so
REINFORCE++ (``advantage=reinforce_pp``), Dr. GRPO (``scale_rewards=none
loss_aggregation=seq_mean_token_sum_norm``), DAPO's clip-higher (``clip_high=0.28``) and GSPO
(``ratio=sequence``) are settings of the same loop.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.algorithms.advantages import GROUP_ESTIMATORS, AdvantageName, RewardScale
from rlhfkit.algorithms.kl import KLEstimatorName
from rlhfkit.algorithms.policy_gradient import LossAggregation, RatioLevel
from rlhfkit.config import require
from rlhfkit.models.actor_critic import PolicyModeSettings
from rlhfkit.rollout.generate import SamplingConfig
from rlhfkit.rollout.reward_settings import RewardSourceSettings
from rlhfkit.train.config import Schedule, TrainConfig, TrainSettings

KLPlacement = Literal["loss", "reward"]
"""Where the KL to the reference goes: a per-token loss term (GRPO) or a penalty in the reward (RLOO)."""


@dataclass(frozen=True)
class GRPOSettings(RewardSourceSettings, PolicyModeSettings, TrainSettings):
    """Every knob of the critic-free trainer but the run's policy, reward, prompts and output.

    One step = `prompts_per_step` prompts x `group_size` responses, scored, turned into advantages,
    then `epochs` passes over them in minibatches of ``batch_size * grad_accum`` responses (one
    optimizer step each). The policy's fields (policy_mode, lora ...) are `PolicyModeSettings`, the
    reward source's (reward_batch_size, reward_timeout ...) `RewardSourceSettings`.
    """

    skip_invalid: bool = False
    """Skip malformed prompt rows (and report them) instead of failing on the first."""
    max_steps: int = 100
    """Steps (rollout + update) to run."""
    lr: float = 5e-5
    """Peak learning rate of AdamW (for the LoRA adapters / trained layers)."""
    warmup_steps: int = 0
    """Linear warm-up of the learning rate over this many steps."""
    schedule: Schedule = "constant"
    """Learning-rate decay after warm-up, per step: 'constant', 'linear' (to 0) or 'cosine'."""
    batch_size: int = 8
    """Responses per forward/backward pass (micro-batch), in the update and in the scoring passes."""
    grad_accum: int = 4
    """Micro-batches per optimizer step: a minibatch is batch_size * grad_accum responses."""
    save_every: int = 20
    """Write a resumable checkpoint every this many steps (0: only at the end)."""

    sampling: SamplingConfig = SamplingConfig(temperature=1.0, max_new_tokens=64)
    """Rollout sampling (sampling.max_new_tokens, sampling.temperature, sampling.batch_size = responses per
    generation call). top_p and top_k must stay off: the ratio needs the sampled distribution's log-probs."""
    prompts_per_step: int = 4
    """Prompts per step; each is answered `group_size` times."""
    group_size: int = 8
    """Responses per prompt (TRL's num_generations): the group whose rewards are the baseline."""
    epochs: int = 1
    """Passes over each rollout (GRPO's mu). With 1 pass in one minibatch the sampling policy is the
    current one, so no extra pass computes the old log-probs."""

    advantage: AdvantageName = "grpo"
    """Advantage estimator: 'grpo' (group mean and std), 'rloo' (leave-one-out mean), 'reinforce_pp'
    (returns whitened over the batch), 'reinforce_pp_baseline' (group mean, then whitened). 'gae' needs a
    critic: use `rlhfkit ppo`."""
    scale_rewards: RewardScale = "group"
    """GRPO's divisor: the group's std ('group'), the batch's ('batch') or none ('none': Dr. GRPO)."""
    gamma: float = 1.0
    """Discount of the returns-to-go of the REINFORCE++ estimators."""
    loss_aggregation: LossAggregation = "token_mean"
    """'token_mean' (every token of the optimizer step weighs the same: DAPO), 'seq_mean_token_mean'
    (original GRPO) or 'seq_mean_token_sum_norm' (Dr. GRPO: token sums over sampling.max_new_tokens)."""
    clip_low: float = 0.2
    """Lower clip of the ratio: 1 - clip_low."""
    clip_high: float = 0.2
    """Upper clip of the ratio: 1 + clip_high (DAPO's clip-higher: 0.28)."""
    ratio: RatioLevel = "token"
    """Importance ratio per 'token' (PPO, GRPO) or per 'sequence' (GSPO, Zheng et al. 2025)."""
    mask_truncated: bool = False
    """Leave responses that hit sampling.max_new_tokens without EOS out of the loss (DAPO's overlong filter)."""
    entropy_coef: float = 0.0
    """Weight of an entropy bonus in the loss (0: off)."""

    beta: float = 0.04
    """KL coefficient (0: no KL term and no reference pass at all)."""
    kl_in: KLPlacement = "loss"
    """Put the KL in the 'loss' (a per-token term, GRPO) or in the 'reward' (a per-token penalty, RLOO)."""
    kl_estimator: KLEstimatorName = "k3"
    """Per-token KL(policy || reference) estimator: 'k3' (unbiased and >= 0, GRPO's loss term), 'k1' (the
    log ratio, RLOO's reward penalty) or 'k2'."""

    samples_per_log: int = 4
    """Responses (with prompt and score) appended to samples.jsonl at each logging step."""
    eval_samples: int = 200
    """Held-out prompts (from `eval_prompts`) answered greedily at each evaluation (0: all)."""

    @property
    def rollout_size(self) -> int:
        """Responses per step."""
        return self.prompts_per_step * self.group_size

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            self.sampling.temperature > 0,
            "sampling.temperature must be > 0 (greedy decoding has no log-probs to ratio)",
        )
        require(
            self.sampling.top_p == 1.0 and self.sampling.top_k == 0,
            "sampling.top_p must be 1 and sampling.top_k 0: the ratio needs the sampled distribution's log-probs",
        )
        require(self.advantage != "gae", "advantage=gae needs a critic; use `rlhfkit ppo`")
        require(self.prompts_per_step > 0 and self.group_size > 0, "prompts_per_step and group_size must be positive")
        require(
            self.group_size >= 2 or self.advantage not in GROUP_ESTIMATORS,
            f"advantage={self.advantage} uses the group as its baseline: group_size must be >= 2",
        )
        minibatch = self.batch_size * self.grad_accum
        require(
            self.rollout_size % minibatch == 0,
            f"prompts_per_step * group_size ({self.rollout_size}) must be a multiple of batch_size * grad_accum ({minibatch})",
        )
        require(self.epochs > 0, f"epochs must be positive, got {self.epochs}")
        require(self.clip_low > 0 and self.clip_high > 0, "clip_low and clip_high must be positive")
        require(
            self.clip_low < 1, f"clip_low must be < 1 (the ratio's lower bound is 1 - clip_low), got {self.clip_low}"
        )
        require(0.0 <= self.gamma <= 1.0, f"gamma must be in [0, 1], got {self.gamma}")
        require(self.beta >= 0 and self.entropy_coef >= 0, "beta and entropy_coef must be >= 0")
        require(self.samples_per_log >= 0 and self.eval_samples >= 0, "samples_per_log and eval_samples must be >= 0")


@dataclass(frozen=True)
class GRPOConfig(GRPOSettings, TrainConfig):
    """`rlhfkit grpo`: raise the reward with group-relative advantages, no critic (Shao et al. 2024)."""

    policy: str = "smollm2"
    """MODEL to start from (and the reference policy): 'smollm2', a model directory (e.g. an SFT run), a hub id."""
    reward: str = ""
    """REWARD: a reward-model directory, python:MODULE:FUNCTION, an http(s):// URL, or several of these
    separated by commas (an ensemble: mean, minus ensemble_k * std)."""
    prompts: str = ""
    """Prompts file (any format rlhfkit reads; each row's prompt is used) or DBURL#PROJECT."""
    eval_prompts: str = ""
    """Held-out prompts, answered greedily and scored by `reward` at each evaluation (empty: no evaluation)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(
            bool(self.reward.strip()),
            "reward is required: a reward-model directory, python:MODULE:FUNCTION or an http(s):// URL",
        )
        require(bool(self.prompts), "prompts is required (a prompts file)")

    def title(self) -> str:
        """What the run is, in a few words (the report's title)."""
        return f"{self.advantage.upper()} of {self.policy} against {self.reward}"


@dataclass(frozen=True)
class RLOOSettings(GRPOSettings):
    """RLOO's defaults of the critic-free trainer: REINFORCE with the leave-one-out baseline and a KL
    penalty in the reward (Ahmadian et al. 2024)."""

    advantage: AdvantageName = "rloo"
    """Advantage estimator (see `rlhfkit grpo`); RLOO's is the leave-one-out mean of the group."""
    group_size: int = 4
    """Responses per prompt (RLOO's k)."""
    prompts_per_step: int = 8
    """Prompts per step; each is answered `group_size` times."""
    beta: float = 0.05
    """KL coefficient of the reward penalty (0: no KL and no reference pass)."""
    kl_in: KLPlacement = "reward"
    """Put the KL in the 'reward' (RLOO) or in the 'loss' (GRPO)."""
    kl_estimator: KLEstimatorName = "k1"
    """Per-token KL estimator: 'k1' (the log ratio, RLOO's reward penalty), 'k2' or 'k3'."""


@dataclass(frozen=True)
class RLOOConfig(RLOOSettings, GRPOConfig):
    """`rlhfkit rloo`: REINFORCE with the leave-one-out baseline and a KL penalty in the reward
    (Ahmadian et al. 2024); the same trainer as `rlhfkit grpo` with RLOO's defaults."""
