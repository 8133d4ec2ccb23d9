"""AdamW and its learning-rate schedule, built the same way by every trainer."""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import torch

from rlhfkit.config import require
from rlhfkit.train.config import TrainSettings


def _cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    progress = min(1.0, (step - warmup) / max(1, total - warmup))
    return 0.1 + 0.9 * 0.5 * (1.0 + math.cos(math.pi * progress))


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / (warmup + 1)
    return max(0.0, 1.0 - (step - warmup) / max(1, total - warmup))


def _constant(step: int, warmup: int, total: int) -> float:
    return (step + 1) / (warmup + 1) if step < warmup else 1.0


SCHEDULES: dict[str, Callable[[int, int, int], float]] = {"cosine": _cosine, "linear": _linear, "constant": _constant}
"""Learning-rate multipliers by name: f(step, warmup_steps, max_steps) -> factor of lr."""


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainSettings) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the configured schedule (a LambdaLR, whose state is JSON-able for checkpoints)."""
    require(len(params) > 0, "nothing to train: every parameter is frozen")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over each tensor instead of a chain of foreach ops) is 3-4x faster on
    # CPU: 0.10 s against 0.38 s a step for SmolLM2's 135M parameters on 2 cores. It needs plain
    # floating-point tensors on a device it supports, so sharded (DTensor) parameters keep the default.
    fused = all(
        type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.is_floating_point()
        for p in decay + no_decay
    )
    opt = torch.optim.AdamW(
        [g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8, fused=fused or None
    )
    fn = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: fn(s, cfg.warmup_steps, cfg.max_steps))
    return opt, sched


def scheduler_state(sched: Any) -> dict[str, Any]:
    """A LambdaLR's state without its lambdas (functions are rebuilt from the config, not stored)."""
    return {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(sched: Any, state: dict[str, Any]) -> None:
    sched.load_state_dict({**state, "lr_lambdas": [None] * len(sched.lr_lambdas)})
