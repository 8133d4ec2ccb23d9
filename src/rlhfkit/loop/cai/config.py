"""`CAIConfig`: every knob of `rlhfkit cai`, documented and validated.

The stages hold their trainer's own settings (``sft`` an `SFTSettings`, ``rl`` a `DPOStage` or a
`PPOStage` chosen by ``rl.method``, ``reward`` for PPO's reward model), so ``sft.lr=1e-4`` or
``rl.beta=0.05`` is checked by the trainer's config class.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path

from rlhfkit.config import VARIANTS, Config, require
from rlhfkit.judges.config import JudgeSettings
from rlhfkit.loop.config import DPOStage, PPOStage, RewardStage
from rlhfkit.rollout.generate import SamplingConfig
from rlhfkit.train.sft import SFTSettings

CAI_SFT = SFTSettings(
    max_steps=40,
    lr=5e-5,
    batch_size=8,
    max_length=256,
    warmup_steps=0,
    save_every=20,
    eval_fraction=0.1,
    chat_template="always",
)
"""SFT on the final revisions: a few epochs of a few hundred demonstrations. The policy then samples
(the RL stage's pairs, any evaluation) from templated prompts, so it learns the revisions the same way:
chat_template 'always', as the loop's DPO and reward stages (with 'auto', TRL's rule, a plain-text
prompt trains as plain text and the SFT taught a format the policy is never asked in)."""

CAI_DPO = DPOStage(
    max_steps=40, lr=5e-6, batch_size=8, beta=0.1, max_length=256, max_prompt_length=128, warmup_steps=0, save_every=20
)
"""DPO on the AI's pairs, from the SFT policy (also the reference)."""

CAI_PPO = PPOStage(
    max_steps=20, lr=5e-6, batch_size=8, rollout_batch_size=32, init_kl_coef=0.1, warmup_steps=0, save_every=10
)
"""PPO against the reward model trained on the AI's pairs, from the SFT policy."""

CAI_REWARD = RewardStage(max_steps=100, lr=1e-4, batch_size=16, trunk_layers=0, max_length=256, save_every=50)
"""The preference model of the RL stage (rl.method=ppo)."""


@dataclass(frozen=True)
class CAIConfig(Config):
    """`rlhfkit cai`: Constitutional AI -- critiques and revisions, SFT on them, AI preferences, then RL."""

    output: Path = Path("")
    """Run directory: sl/ (traces, revisions, the SFT run), rl/ (preferences, pairs, the RL run), report.html."""
    prompts: str = ""
    """Red-team prompts (any format rlhfkit reads; HH-RLHF pairs give their dialogue before the last reply)."""
    first_turn: bool = False
    """Keep only each prompt's first user message (HH-RLHF's harmless prompts: the first human turn)."""
    max_prompts: int = 0
    """Use at most this many prompts (0 = all), taken in file order."""
    policy_model: str = "smollm2"
    """The starting policy, which also writes the critiques and revisions (a helpful model, as in the paper)."""
    principles: str = ""
    """Principles YAML ('' = the shipped default, rlhfkit/loop/cai/principles.yaml)."""
    revisions: int = 2
    """k: critique-then-revise rounds per response (each under a newly drawn principle)."""
    sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=0.7, batch_size=16)
    """Sampling of responses, critiques and revisions."""
    sft: SFTSettings = CAI_SFT
    """The supervised stage's SFT (any SFTSettings field)."""
    pair_sampling: SamplingConfig = SamplingConfig(max_new_tokens=64, temperature=1.0, batch_size=16)
    """Sampling of the two responses per prompt the AI compares (hotter: the pair must differ)."""
    judge: JudgeSettings = JudgeSettings()
    """The feedback model (judge.judge: a model or an OpenAI-compatible URL; judge.on_flip: tie or unlabelled)."""
    rl: DPOStage | PPOStage = field(default=CAI_DPO, metadata={VARIANTS: {"dpo": CAI_DPO, "ppo": CAI_PPO}})
    """The RL stage: rl.method=dpo (DPO on the AI's pairs) or rl.method=ppo (a reward model on them, then PPO)."""
    reward: RewardStage = CAI_REWARD
    """rl.method=ppo: the reward (preference) model; reward.model '' = the SFT policy."""
    seed: int = 0
    """Seed of principle draws, sampling and training."""
    progress: bool = True
    """Progress bars and stage lines."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(str(self.output) not in ("", "."), "output (the run directory) is required")
        require(bool(self.prompts), "prompts is required (a prompts file)")
        require(bool(self.policy_model), "policy_model is required")
        require(1 <= self.revisions <= 10, f"revisions must be in [1, 10], got {self.revisions}")
        require(self.max_prompts >= 0 and self.seed >= 0, "max_prompts and seed must be >= 0")
        require(
            self.pair_sampling.temperature > 0, "pair_sampling.temperature must be > 0 (two greedy samples are one)"
        )
