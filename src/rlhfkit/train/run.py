"""One run = one directory, and the machinery every training loop shares.

    run_dir/
      config.yaml        the resolved config (what actually ran)
      metrics.jsonl      one JSON object per logged step: {"step": N, "train/loss": ...}
      samples.jsonl      example generations, for loops that sample
      checkpoints/       resumable state (see checkpoint.py)
      tensorboard/       when report_to includes tensorboard
      report.html        written at the end
      config.json, model.safetensors, tokenizer*   the final model: the run dir is a model dir
"""

from __future__ import annotations

import json
import logging
import math
import os
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import torch

from rlhfkit.config import ConfigError, require, save_config, to_dict

log = logging.getLogger("rlhfkit")


@dataclass(frozen=True)
class TrainConfig:
    """Fields every training command shares. Command configs extend it."""

    output: Path = Path("")
    """Run directory: config, metrics, checkpoints, report and the final model are written here."""
    max_steps: int = 100
    """Stop after this many optimizer steps."""
    lr: float = 1e-5
    """Peak learning rate of AdamW."""
    weight_decay: float = 0.0
    """AdamW decoupled weight decay."""
    warmup_steps: int = 10
    """Linear warm-up from 0 to `lr` over this many steps."""
    schedule: str = "cosine"
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
    """Log metrics every this many steps."""
    eval_every: int = 0
    """Evaluate every this many steps (0: only at the end)."""
    save_every: int = 50
    """Write a resumable checkpoint every this many steps (0: only at the end)."""
    keep_checkpoints: int = 2
    """How many recent checkpoints to keep."""
    resume: bool = True
    """Resume from the newest checkpoint in `output` when there is one."""
    report_to: tuple[str, ...] = ()
    """Extra metric sinks besides the console and metrics.jsonl: 'tensorboard', 'wandb' (offline)."""
    progress: bool = True
    """Show progress bars."""

    def __post_init__(self) -> None:
        require(str(self.output) not in ("", "."), "output (the run directory) is required")
        require(self.max_steps > 0, f"max_steps must be positive, got {self.max_steps}")
        require(self.lr > 0, f"lr must be positive, got {self.lr}")
        require(self.batch_size > 0 and self.grad_accum > 0, "batch_size and grad_accum must be positive")
        require(self.warmup_steps >= 0, "warmup_steps must be >= 0")
        require(self.schedule in SCHEDULES, f"schedule must be one of {', '.join(SCHEDULES)}")
        require(self.dtype in ("auto", "bf16", "fp32"), f"dtype must be auto, bf16 or fp32, got {self.dtype!r}")
        require(self.log_every > 0, "log_every must be positive")
        require(self.save_every >= 0 and self.eval_every >= 0, "save_every and eval_every must be >= 0")
        unknown = set(self.report_to) - {"tensorboard", "wandb"}
        require(not unknown, f"report_to: unknown sink(s) {sorted(unknown)}; use tensorboard, wandb")


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


SCHEDULES = {"cosine": _cosine, "linear": _linear, "constant": _constant}
"""Learning-rate multipliers by name: f(step, warmup_steps, max_steps) -> factor of lr."""


def make_optimizer(params: list[torch.nn.Parameter], cfg: TrainConfig) -> tuple[torch.optim.Optimizer, Any]:
    """AdamW with the configured schedule (a LambdaLR, whose state is JSON-able for checkpoints)."""
    require(len(params) > 0, "nothing to train: every parameter is frozen")
    decay = [p for p in params if p.ndim >= 2]
    no_decay = [p for p in params if p.ndim < 2]
    groups = [{"params": decay, "weight_decay": cfg.weight_decay}, {"params": no_decay, "weight_decay": 0.0}]
    # The fused kernel (one pass over each tensor instead of a chain of foreach ops) is 3-4x faster on
    # CPU: 0.10 s against 0.38 s a step for SmolLM2's 135M parameters on 2 cores. It needs plain
    # floating-point tensors on a device it supports, so sharded (DTensor) parameters keep the default.
    fused = all(type(p.data) is torch.Tensor and p.device.type in ("cpu", "cuda") and p.is_floating_point()
                for p in decay + no_decay)
    opt = torch.optim.AdamW([g for g in groups if g["params"]], lr=cfg.lr, betas=(0.9, 0.95), eps=1e-8,
                            fused=fused or None)
    fn = SCHEDULES[cfg.schedule]
    sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda s: fn(s, cfg.warmup_steps, cfg.max_steps))
    return opt, sched


def scheduler_state(sched: Any) -> dict[str, Any]:
    """A LambdaLR's state without its lambdas (functions are rebuilt from the config, not stored)."""
    return {k: v for k, v in sched.state_dict().items() if k != "lr_lambdas"}


def load_scheduler_state(sched: Any, state: dict[str, Any]) -> None:
    sched.load_state_dict({**state, "lr_lambdas": [None] * len(sched.lr_lambdas)})


def resume_latest(
    run_dir: Path,
    *,
    enabled: bool,
    modules: dict[str, torch.nn.Module],
    optimizer: torch.optim.Optimizer,
    scheduler: Any,
    stream: Any,
) -> Any:
    """Restore the newest checkpoint of `run_dir` (modules, optimizer, scheduler, data position).

    Returns the `Checkpoint` (its `state` carries any loop-specific state, e.g. a KL controller, for
    the caller to restore), or None when there is nothing to resume or `enabled` is false.
    """
    from rlhfkit.train.checkpoint import latest_checkpoint, load_checkpoint

    ckpt = latest_checkpoint(run_dir / "checkpoints") if enabled else None
    if ckpt is None:
        return None
    restored = load_checkpoint(ckpt, modules=modules, optimizer=optimizer)
    load_scheduler_state(scheduler, restored.state["scheduler"])
    stream.load_state_dict(restored.state["data"])
    log.info("resumed from %s at step %d", ckpt, restored.step)
    return restored


class MetricsLogger:
    """Metrics to the console, ``metrics.jsonl`` and, when asked, TensorBoard and W&B (offline)."""

    def __init__(
        self,
        run_dir: Path,
        sinks: tuple[str, ...] = (),
        *,
        console: bool = True,
        config: Any = None,
        resume_step: int = 0,
    ):
        self.path = run_dir / "metrics.jsonl"
        self.console = console
        _truncate_after(self.path, resume_step)
        self._file = open(self.path, "a", buffering=1)
        self._tb = None
        self._wandb = None
        if "tensorboard" in sinks:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if "wandb" in sinks:
            import wandb  # imported only when asked for

            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb.init(dir=str(run_dir), config=to_dict(config) if config else None, reinit=True)

    def log(self, step: int, metrics: dict[str, float]) -> None:
        clean = {k: (float(v.item()) if torch.is_tensor(v) else float(v)) for k, v in metrics.items()}
        self._file.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)
        if self.console:
            shown = "  ".join(f"{k}={_fmt(v)}" for k, v in clean.items())
            _write_line(f"step {step:>5}  {shown}")

    def close(self) -> None:
        self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


def _truncate_after(path: Path, step: int) -> None:
    """Drop metric lines past `step`: a resumed run logs those steps again (no duplicates)."""
    if not path.exists():
        return
    kept = []
    for line in path.read_text().splitlines():
        try:
            if int(json.loads(line)["step"]) <= step:
                kept.append(line)
        except (ValueError, KeyError, TypeError):
            continue  # a line torn by a crash mid-write
    tmp = path.with_suffix(".jsonl.tmp")
    tmp.write_text("".join(k + "\n" for k in kept))
    os.replace(tmp, path)


def _fmt(v: float) -> str:
    return f"{v:.4g}" if abs(v) < 1e5 else f"{v:.3e}"


def _write_line(text: str) -> None:
    try:
        from tqdm import tqdm

        tqdm.write(text, file=sys.stderr)
    except ImportError:  # pragma: no cover
        print(text, file=sys.stderr)


def progress(total: int, initial: int, desc: str, enabled: bool) -> Any:
    """A tqdm progress bar with ETA (a no-op object when disabled)."""
    from tqdm import tqdm

    return tqdm(total=total, initial=initial, desc=desc, disable=not enabled, dynamic_ncols=True, unit="step")


def prepare_run_dir(cfg: TrainConfig) -> Path:
    """Create the run directory and write the resolved config.

    A run directory holding a different config refuses to be resumed into: resuming with other
    hyper-parameters would silently produce a run nobody asked for.
    """
    run_dir = Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    if path.exists() and cfg.resume and (run_dir / "checkpoints").exists():
        import yaml

        old = yaml.safe_load(path.read_text()) or {}
        new = to_dict(cfg)
        ignore = {"max_steps", "resume", "progress", "report_to", "save_every", "log_every", "eval_every"}
        diff = sorted(k for k in set(old) | set(new) if k not in ignore and old.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"{run_dir} holds a run with a different config ({', '.join(diff)}); "
                f"use another output directory or resume=false"
            )
    save_config(cfg, path)
    return run_dir


class Throughput:
    """Tokens or samples per second over a sliding window of steps."""

    def __init__(self) -> None:
        self.start = time.perf_counter()
        self.count = 0.0

    def add(self, n: float) -> None:
        self.count += n

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        value = self.count / elapsed if elapsed > 0 else 0.0
        self.start, self.count = time.perf_counter(), 0.0
        return value


def check_finite(step: int, metrics: dict[str, float], run_dir: Path) -> None:
    """Stop the run on NaN or inf, naming the metric; the last good checkpoint stays in place."""
    bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    if bad:
        raise FloatingPointError(
            f"step {step}: {', '.join(bad)} became NaN or inf; stopping. The last good checkpoint is "
            f"in {run_dir / 'checkpoints'}; lower lr or check the data/reward, then resume."
        )
