"""AdamW and its learning-rate schedule, built the same way by every trainer."""

from __future__ import annotations

import warnings
from collections.abc import Callable
from typing import Any

import torch
import transformers
from torch.optim.lr_scheduler import LambdaLR

from rlhfkit.config import require
from rlhfkit.train.config import TrainSettings


def _cosine(opt: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    """Cosine from lr to 10% of lr (transformers' cosine schedule with a minimum)."""
    return transformers.get_cosine_with_min_lr_schedule_with_warmup(opt, warmup, total, min_lr_rate=0.1)


def _linear(opt: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    return transformers.get_linear_schedule_with_warmup(opt, warmup, total)


def _constant(opt: torch.optim.Optimizer, warmup: int, total: int) -> LambdaLR:
    return transformers.get_constant_schedule_with_warmup(opt, warmup)


SCHEDULES: dict[str, Callable[[torch.optim.Optimizer, int, int], LambdaLR]] = {
    "cosine": _cosine,
    "linear": _linear,
    "constant": _constant,
}
"""Learning-rate schedules by name: ``fn(optimizer, warmup, total) -> LambdaLR`` from `transformers`."""


def make_schedule(opt: torch.optim.Optimizer, name: str, warmup_steps: int, max_steps: int) -> LambdaLR:
    """The schedule `name`, shifted one step so that the first update already has a learning rate.

    transformers' warm-up is ``step / warmup``, which is 0 at step 0: a wasted first update. Built with
    one more warm-up and total step and started at step 1, the factor at update s is
    ``(s + 1) / (warmup + 1)`` during warm-up and the unshifted decay after it (``(s - warmup) /
    (total - warmup)`` of the way through), the schedule rlhfkit had before it used transformers.
    """
    for group in opt.param_groups:
        group.setdefault("initial_lr", group["lr"])  # LambdaLR with last_epoch >= 0 resumes from these
    sched = SCHEDULES[name](opt, warmup_steps + 1, max_steps + 1)
    sched.last_epoch = 0  # the builders start at -1 and step once: restart them one step later
    with warnings.catch_warnings():  # this step moves the schedule, not training: no optimizer step is due
        warnings.filterwarnings("ignore", message="Detected call of `lr_scheduler.step", category=UserWarning)
        sched.step()
    return sched


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
    return opt, make_schedule(opt, cfg.schedule, cfg.warmup_steps, cfg.max_steps)


def scheduler_state(sched: Any) -> dict[str, Any]:
    """A LambdaLR's state without its lambdas (functions are rebuilt from the config, not stored)."""
    return {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(sched: Any, state: dict[str, Any]) -> None:
    sched.load_state_dict({**state, "lr_lambdas": [None] * len(sched.lr_lambdas)})
