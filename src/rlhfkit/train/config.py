"""The settings every training method shares, and the run directory that makes them a config.

A method's knobs are a `TrainSettings` subclass (``SFTSettings``: everything but the run's inputs
and output); its command's config adds those (``SFTConfig(SFTSettings, TrainConfig)``: ``model``,
``data``, ``output``). The loop holds a method's settings as a typed stage of its own config and
completes them each round (`rlhfkit.config.complete`), so no knob is declared twice.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from rlhfkit.config import Config, require
from rlhfkit.config.packages import require_package

Schedule = Literal["cosine", "linear", "constant"]
"""The keys of `rlhfkit.train.optim.SCHEDULES`, as a type for config fields."""

Sink = Literal["tensorboard", "wandb"]
"""Metric sinks besides the console and metrics.jsonl."""


@dataclass(frozen=True)
class TrainSettings(Config):
    """Fields every training method shares."""

    max_steps: int = 100
    """Stop after this many optimizer steps."""
    lr: float = 1e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_steps: int = 10
    """Linear warm-up from 0 to `lr` over this many steps."""
    schedule: Schedule = "cosine"
    """Decay after warm-up: 'cosine' (to 10% of lr), 'linear' (to 0) or 'constant'."""
    max_grad_norm: float = 1.0
    """Clip the global gradient norm to this value (0 disables clipping)."""
    batch_size: int = 8
    """Examples per micro-batch."""
    grad_accum: int = 1
    """Micro-batches per optimizer step (effective batch = batch_size * grad_accum * processes)."""
    dtype: str = "auto"
    """Compute dtype: 'auto' (bf16 where this hardware runs it faster, else fp32), 'bf16' or 'fp32'.
    The optimizer state and the weights it updates stay fp32 (SFT: fp32 masters of bf16 weights, see
    its `weights`), so small updates are never rounded away."""
    seed: int = 0
    """Seed for data order, sampling and initialization."""
    log_every: int = 1
    """Write metrics every this many steps."""
    console_every: int = 0
    """Print a row of the method's headline metrics every this many steps (0: about ten rows per run);
    every metric goes to metrics.jsonl (and TensorBoard / W&B when asked)."""
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end)."""
    save_every: int = 50
    """Write a resumable checkpoint every this many steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    resume: bool = True
    """Resume from the newest checkpoint in `output` when there is one."""
    report_to: tuple[Sink, ...] = ()
    """Extra metric sinks besides metrics.jsonl: 'tensorboard', 'wandb' (offline)."""
    progress: bool = True
    """Show a live progress line (step, ETA and the headline metrics)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(self.max_steps > 0, f"max_steps must be positive, got {self.max_steps}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(self.batch_size > 0 and self.grad_accum > 0, "batch_size and grad_accum must be positive")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        # Not a Literal: a dtype name whose valid set depends on the device (see rlhfkit.models.dtype).
        require(self.dtype in ("auto", "bf16", "fp32"), f"dtype must be auto, bf16 or fp32, got {self.dtype!r}")
        require(self.log_every > 0 and self.console_every >= 0, "log_every must be positive, console_every >= 0")
        require(self.save_every >= 0 and self.eval_every >= 0, "save_every and eval_every must be >= 0")
        for sink in self.report_to:
            if sink == "wandb":
                require_package("wandb", "report_to=wandb")


@dataclass(frozen=True)
class TrainConfig(TrainSettings):
    """`TrainSettings` plus the run directory: the base of every training command's config."""

    output: Path = Path("")
    """Run directory: config, metrics, checkpoints and the final model are written here."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(str(self.output) not in ("", "."), "output (the run directory) is required")
