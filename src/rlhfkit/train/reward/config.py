"""`RewardSettings` / `RewardConfig`: every knob of `rlhfkit reward train`, documented and validated."""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from rlhfkit.algorithms.reward_losses import PairwiseLossName, RankingLossName, RatingLossName
from rlhfkit.config import require
from rlhfkit.data.chat import ChatTemplate
from rlhfkit.models.adapters import LoRAConfig
from rlhfkit.models.reward import Pooling
from rlhfkit.rollout.generate import SamplingConfig
from rlhfkit.train.config import TrainConfig, TrainSettings
from rlhfkit.train.reward.data import Layout


@dataclass(frozen=True)
class RewardSettings(TrainSettings):
    """Every knob of reward-model training but the run's trunk, data and output."""

    kind: Literal["auto", "pairs", "rankings", "ratings"] = "auto"
    """What the sources hold: 'pairs', 'rankings', 'ratings', or 'auto' (detected per source)."""
    eval_fraction: float = 0.1
    """Share of `data` held out for evaluation when `eval_data` is empty."""
    skip_invalid: bool = False
    """Skip (and report) invalid rows, e.g. pairs with identical chosen and rejected, instead of failing."""
    max_length: int = 512
    """Longest prompt + response in tokens; prompts are cut from the left, then responses from the right."""
    chat_template: ChatTemplate = "auto"
    """Which prompts go through the tokenizer's chat template: 'auto' (TRL's rule: conversational prompts are
    templated, plain-text prompts used as text), 'always' (a plain prompt becomes one user turn) or 'never'."""
    group_by_length: bool = True
    """Batch examples of similar length together to cut padding (the order stays seeded)."""
    layout: Layout = "packed"
    """How a batch meets the trunk: 'packed' (the responses of one judgment share a row and their common
    prompt is encoded once: the same rewards from 28-37% fewer tokens on HH-RLHF) or 'rows' (one row per
    response, as TRL). A fully frozen trunk with cached features always uses 'rows'."""
    pairwise_loss: PairwiseLossName = "bradley_terry"
    """Loss of pairs: 'bradley_terry' (ties are dropped), 'ties_half' or 'davidson' (ties train too)."""
    ranking_loss: RankingLossName = "all_pairs"
    """Loss of K-way rankings: 'all_pairs' (InstructGPT, all K(K-1)/2 pairs in one batch) or 'plackett_luce'."""
    rating_loss: RatingLossName = "regression"
    """Loss of ratings: 'regression' (rating rescaled to [0, 1]) or 'ordinal' (learned thresholds)."""
    use_margins: bool = True
    """Use the margins of pairs that have one in the Bradley-Terry losses (Llama 2 style)."""
    center_coef: float = 0.0
    """Reward-centering penalty weight (Eisenstein et al. 2023 use 0.01); 0 turns it off."""
    pooling: Pooling = "last"
    """What the heads read: 'last' (the final token's state, the standard reward model) or 'mean' (the mean
    state over all tokens; the better linear probe of a frozen trunk, see rlhfkit.models.reward.POOLINGS)."""
    n_heads: int = 1
    """Heads of the ensemble; with more than one, `score` also reports their disagreement (std)."""
    bootstrap: bool = True
    """Train each head of an ensemble on its own bootstrap resample of the examples."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters on the trunk (e.g. lora.r=16) instead of its weights."""
    freeze_layers: int = 0
    """Freeze the embeddings and this many bottom layers; -1 freezes the whole trunk (only the heads train)."""
    cache_features: bool = True
    """With the whole trunk frozen, compute each sequence's features once and reuse them every epoch."""
    normalize: bool = True
    """After training, set gain and bias so a reference policy's samples score mean 0, std 1."""
    normalize_prompts: int = 32
    """Training prompts the reference policy answers for the normalization (one sample each)."""
    normalize_sampling: SamplingConfig = SamplingConfig(max_new_tokens=48, temperature=0.7)
    """How the reference samples are drawn."""
    eval_batch_size: int = 16
    """Sequences per forward pass when evaluating and normalizing."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")
        require(self.max_length >= 8, "max_length must be at least 8")
        require(self.center_coef >= 0, "center_coef must be >= 0")
        require(self.n_heads >= 1, "n_heads must be at least 1")
        require(self.freeze_layers >= -1, "freeze_layers must be >= 0, or -1 to freeze the whole trunk")
        require(
            not (self.lora is not None and self.freeze_layers),
            "lora and freeze_layers both choose what trains; set one of them",
        )
        require(not self.normalize or self.normalize_prompts >= 2, "normalize_prompts must be at least 2")
        require(self.eval_batch_size > 0, "eval_batch_size must be positive")


@dataclass(frozen=True)
class RewardConfig(RewardSettings, TrainConfig):
    """`rlhfkit reward train`: train a reward model on pairs, rankings and/or ratings."""

    model: str = "smollm2"
    """MODEL whose trunk the reward model starts from: 'smollm2', a model directory, an SFT run, a hub id."""
    data: tuple[str, ...] = ()
    """Judgments: one or more sources (comma-separated): JSONL/CSV/JSON files, datasets, DBURL#PROJECT."""
    eval_data: tuple[str, ...] = ()
    """Held-out judgments; when empty, `eval_fraction` of each source is held out (whole prompts)."""
    normalize_policy: str = ""
    """Reference policy for the normalization ('' = `model`)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(len(self.data) > 0, "data is required (a file of pairs, rankings or ratings)")

    def title(self) -> str:
        """What the run is, in a few words (the report's title)."""
        return f"Reward model on {self.model}"
