"""Where a run's numbers go: ``metrics.jsonl`` always, TensorBoard and W&B (offline) when asked.

One JSON object per logged step, ``{"step": N, "train/loss": ...}``; a resumed run first drops the
lines a killed run wrote past its checkpoint, so no step appears twice.
"""

from __future__ import annotations

import json
import math
import os
import resource
import time
from pathlib import Path
from typing import Any

import torch

from rlhfkit.config import to_dict
from rlhfkit.files import truncate_jsonl_after


class MetricsLogger:
    """Metrics to ``metrics.jsonl`` and, when asked, TensorBoard and W&B (offline)."""

    def __init__(
        self,
        run_dir: Path,
        sinks: tuple[str, ...] = (),
        *,
        config: Any = None,
        resume_step: int = 0,
        write: bool = True,
    ):
        """`write` False (a process other than the main one of a multi-process run): log nothing."""
        self.path = run_dir / "metrics.jsonl"
        self._file = None
        self._tb = None
        self._wandb = None
        if not write:
            return
        truncate_jsonl_after(self.path, resume_step)
        # Held open for the whole run (closed by `close`), line-buffered: a crash loses at most a line.
        self._file = open(self.path, "a", buffering=1)  # noqa: SIM115
        if "tensorboard" in sinks:
            from torch.utils.tensorboard import SummaryWriter

            self._tb = SummaryWriter(str(run_dir / "tensorboard"))
        if "wandb" in sinks:
            import wandb  # imported only when asked for

            os.environ.setdefault("WANDB_MODE", "offline")
            self._wandb = wandb.init(dir=str(run_dir), config=to_dict(config) if config else None, reinit=True)

    def log(self, step: int, metrics: dict[str, Any]) -> dict[str, float]:
        """Write one step's metrics; returns them as plain floats."""
        clean = {k: (float(v.item()) if torch.is_tensor(v) else float(v)) for k, v in metrics.items()}
        if self._file is not None:
            self._file.write(json.dumps({"step": step, **clean}) + "\n")
        if self._tb is not None:
            for key, value in clean.items():
                self._tb.add_scalar(key, value, step)
        if self._wandb is not None:
            self._wandb.log(clean, step=step)
        return clean

    def close(self) -> None:
        if self._file is not None:
            self._file.close()
        if self._tb is not None:
            self._tb.close()
        if self._wandb is not None:
            self._wandb.finish()


class Throughput:
    """Items (tokens, examples, samples) per second since the last `rate` (or `start`)."""

    def __init__(self, start: float | None = None) -> None:
        self.start = time.perf_counter() if start is None else start
        self.count = 0.0

    def add(self, n: float) -> None:
        self.count += n

    def rate(self) -> float:
        elapsed = time.perf_counter() - self.start
        value = self.count / elapsed if elapsed > 0 else 0.0
        self.start, self.count = time.perf_counter(), 0.0
        return value


def peak_memory_mb(device: torch.device) -> float:
    """Peak memory of this process: allocated on a GPU, resident (RSS) on a CPU."""
    if device.type == "cuda":
        return torch.cuda.max_memory_allocated(device) / 2**20
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024  # Linux reports KiB


def nan_advice(step: int, checkpoints: Path) -> str:
    """Where to look after a NaN/inf at `step`.

    At step 1 no update has happened yet, so the learning rate cannot be the cause: the loss was
    computed from the loaded weights and the first batch, which is where to look. Later, the usual
    cause is a step that was too large (Goodfellow et al. 2016, sec. 8.2.4, exploding gradients)."""
    if step <= 1:
        return (
            "this is the first step, before any update, so the learning rate is not the cause. Look at "
            "(1) the model: weights that are already NaN or inf (a broken or badly converted checkpoint); "
            "(2) the precision: fp16/bf16 overflow in the forward pass (try dtype=fp32); "
            "(3) the data: labels, ratings or margins that are inf; (4) for PPO, the reward's scores."
        )
    saved = sorted(p for p in checkpoints.glob("step-*") if p.is_dir()) if checkpoints.is_dir() else []
    where = f"the last good checkpoint is {saved[-1]}" if saved else f"no checkpoint was saved yet in {checkpoints}"
    return f"{where}; lower lr (or max_grad_norm) or check the data/reward, then resume."


def check_finite(step: int, metrics: dict[str, Any], run_dir: Path) -> None:
    """Stop the run on NaN or inf, naming the metric and where to look (`nan_advice`)."""
    bad = [k for k, v in metrics.items() if not math.isfinite(float(v))]
    if bad:
        advice = nan_advice(step, run_dir / "checkpoints")
        raise FloatingPointError(f"step {step}: {', '.join(bad)} became NaN or inf; stopping: {advice}")
