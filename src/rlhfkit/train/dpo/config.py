"""`DPOSettings` / `DPOConfig`: every knob of `rlhfkit dpo`, documented and validated."""

from __future__ import annotations

import math
from dataclasses import dataclass
from typing import Literal

from rlhfkit.algorithms.dpo_losses import (
    DPO_LOSSES,
    LOSS_HYPERPARAMETERS,
    DPOLossName,
    loss_hyperparameters,
)
from rlhfkit.algorithms.kl import KLEstimatorName
from rlhfkit.config import require
from rlhfkit.data.chat import ChatTemplate
from rlhfkit.models.adapters import LoRAConfig
from rlhfkit.train.config import TrainConfig, TrainSettings
from rlhfkit.train.dpo.batches import Layout

RankingsAs = Literal["pairs", "plackett_luce"]
"""The keys of `rlhfkit.train.dpo.terms.RANKING_MODES`, as a type for config fields."""


@dataclass(frozen=True)
class DPOSettings(TrainSettings):
    """Every knob of DPO but the run's model, data and output."""

    kind: Literal["pairs", "rankings"] = "pairs"
    """What `data` holds: 'pairs' (prompt, chosen, rejected; ties are dropped) or 'rankings' (K responses, best first)."""
    eval_fraction: float = 0.05
    """Share of `data` held out for the eval metrics and the KL prompts when `eval_data` is empty."""
    skip_invalid: bool = False
    """Skip malformed rows (and report how many and why) instead of failing on the first."""
    loss: DPOLossName = "sigmoid"
    """Preference loss: sigmoid (DPO), cdpo, robust, hinge, ipo, simpo, orpo (see algorithms/dpo_losses.py)."""
    beta: float = 0.1
    """Loss temperature: DPO's beta, IPO's tau, SimPO's beta, ORPO's lambda (weight of the odds-ratio term)."""
    label_smoothing: float | None = None
    """Probability that a label is flipped, for cdpo, robust and simpo only; unset = the loss's default (0.1, 0.1, 0)."""
    gamma: float | None = None
    """SimPO's target reward margin (simpo only); unset = 0.5."""
    sft_weight: float | None = None
    """Weight of the chosen response's mean NLL added to the SimPO loss (simpo only; CPO's alpha); unset = 0."""
    rankings_as: RankingsAs = "pairs"
    """How K-way rankings train (kind=rankings): 'pairs' = every better/worse pair under `loss`, each response
    encoded once; 'plackett_luce' = the Plackett-Luce likelihood of the whole ranking (DPO appendix A.3; loss=sigmoid)."""
    layout: Layout = "packed"
    """Batch layout: 'packed' (one row per prompt: the prompt once, then each response behind a block attention mask)
    or 'rows' (one row per prompt+response, all concatenated along the batch). Same log-probs; packed does less work."""
    max_length: int = 512
    """Maximum tokens of prompt + one response."""
    max_prompt_length: int | None = None
    """When prompt + the longest response exceed `max_length`, the prompt is cut from the left to this many tokens
    (unset: half of `max_length`, so setting `max_length` alone is enough)."""
    chat_template: ChatTemplate = "auto"
    """Which prompts go through the tokenizer's chat template: 'auto' (TRL's rule: conversational prompts are
    templated, plain-text prompts used as text), 'always' (a plain prompt becomes one user turn) or 'never'."""
    group_by_length: bool = True
    """Batch groups of similar length together to cut padding (the order stays seeded)."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters (e.g. lora.r=16); the reference is then the base model with the adapter disabled."""
    freeze_layers: int = 0
    """Freeze the embeddings and this many bottom transformer layers (full fine-tuning of the rest)."""
    ref_batch_size: int = 16
    """Prompts per forward pass when computing the reference log-probs (no gradients, so it can exceed batch_size)."""
    eval_batches: int = 8
    """At most this many batches of held-out preferences per evaluation."""
    kl_prompts: int = 8
    """Held-out prompts sampled from at each evaluation to estimate KL(policy || reference) (0: skip)."""
    kl_max_new_tokens: int = 64
    """Longest sampled response for the KL estimate."""
    kl_estimator: KLEstimatorName = "k3"
    """Per-token KL estimator summed over each sampled response: k1, k2 or k3 (Schulman 2020)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")
        require(self.beta > 0, f"beta must be positive, got {self.beta}")
        accepted = loss_hyperparameters(self.loss)
        for name in sorted(LOSS_HYPERPARAMETERS):
            require(
                getattr(self, name) is None or name in accepted,
                f"{name} does not apply to loss={self.loss}; it is a parameter of "
                f"{', '.join(n for n in DPO_LOSSES if name in loss_hyperparameters(n))}",
            )
        if self.label_smoothing is not None:
            require(0.0 <= self.label_smoothing < 0.5, "label_smoothing must be in [0, 0.5)")
        if self.gamma is not None:
            require(math.isfinite(self.gamma), "gamma must be a finite number")
        if self.sft_weight is not None:
            require(self.sft_weight >= 0, "sft_weight must be >= 0")
        require(
            self.rankings_as == "pairs" or self.kind == "rankings",
            "rankings_as applies to kind=rankings; pairs always train as pairs",
        )
        require(
            self.rankings_as != "plackett_luce" or self.loss == "sigmoid",
            "rankings_as=plackett_luce is the K-way form of the sigmoid (DPO) loss; set loss=sigmoid",
        )
        require(self.max_length >= 8, "max_length must be at least 8")
        require(
            self.max_prompt_length is None or 0 < self.max_prompt_length < self.max_length,
            f"max_prompt_length must be in (0, max_length={self.max_length}); unset it to use half of max_length",
        )
        require(self.freeze_layers >= 0, "freeze_layers must be >= 0")
        require(
            not (self.lora is not None and self.freeze_layers),
            "lora and freeze_layers both choose what trains; set one of them",
        )
        require(self.ref_batch_size > 0 and self.eval_batches > 0, "ref_batch_size and eval_batches must be positive")
        require(self.kl_prompts >= 0 and self.kl_max_new_tokens > 0, "kl_prompts >= 0 and kl_max_new_tokens > 0")

    @property
    def prompt_limit(self) -> int:
        """Tokens a prompt is cut to when a group does not fit `max_length`."""
        return self.max_prompt_length if self.max_prompt_length is not None else self.max_length // 2

    def hyperparameters(self) -> dict[str, float]:
        """The variant's hyper-parameters that are set, as keyword arguments of the loss."""
        values = {name: getattr(self, name) for name in sorted(LOSS_HYPERPARAMETERS)}
        return {name: value for name, value in values.items() if value is not None}


@dataclass(frozen=True)
class DPOConfig(DPOSettings, TrainConfig):
    """`rlhfkit dpo`: fine-tune a model on preference pairs or rankings with DPO or a variant."""

    model: str = "smollm2"
    """MODEL to start from (and the reference): 'smollm2' (bundled), a model directory, a finished run, or a hub id."""
    data: str = ""
    """Preferences: JSONL/CSV/JSON file, dataset directory, hf:NAME, or DBURL#PROJECT (a feedback-app project)."""
    eval_data: str = ""
    """Held-out preferences of the same kind; when empty, `eval_fraction` of `data` is held out (by prompt)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.data), "data is required (a preference pairs or rankings file)")

    def title(self) -> str:
        """What the run is, in a few words (the report's title)."""
        return f"DPO ({self.loss}) of {self.model}"
