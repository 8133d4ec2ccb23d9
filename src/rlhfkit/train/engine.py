"""The thin layer over Accelerate that every loop uses: device, mixed precision, gradient sync.

Accelerate places the model, wraps it for multi-process runs (DDP, or DeepSpeed / FSDP through
``accelerate launch`` and its config), and autocasts in bf16 when asked; weights and optimizer state
stay fp32, so small updates are not rounded away as they would be in pure-bf16 training (SFT's bf16
weights keep fp32 masters for the same reason: ``rlhfkit.train.precision``).
"""

from __future__ import annotations

import contextlib
from collections.abc import Iterator
from typing import Any

import torch
from torch import nn

from rlhfkit.models.dtype import resolve_dtype


class Engine:
    """Accelerate, configured from a loop's dtype and seed."""

    def __init__(self, dtype: str, seed: int) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        device = "cuda" if torch.cuda.is_available() else "cpu"
        self.compute_dtype = resolve_dtype(dtype, device)
        mixed = "bf16" if self.compute_dtype == torch.bfloat16 else "no"
        self.accelerator = Accelerator(mixed_precision=mixed, cpu=device == "cpu")
        set_seed(seed)

    @property
    def device(self) -> torch.device:
        return self.accelerator.device

    @property
    def is_main(self) -> bool:
        return self.accelerator.is_main_process

    @property
    def world_size(self) -> int:
        return self.accelerator.num_processes

    @property
    def rank(self) -> int:
        return self.accelerator.process_index

    def prepare(self, *objects: Any) -> Any:
        return self.accelerator.prepare(*objects)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    @contextlib.contextmanager
    def sync(self, model: nn.Module, last: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step."""
        if last or self.world_size == 1:
            yield
        else:
            with self.accelerator.no_sync(model):
                yield

    def backward(self, loss: torch.Tensor) -> None:
        self.accelerator.backward(loss)

    def clip(self, model: nn.Module, max_norm: float) -> float:
        """Clip the global gradient norm (max_norm 0: only measure it)."""
        params = [p for p in model.parameters() if p.grad is not None]
        if not params:
            return 0.0
        if max_norm > 0:
            return float(self.accelerator.clip_grad_norm_(params, max_norm))
        norms = [
            p.grad.detach().norm() for p in params if p.grad is not None
        ]  # every p has one; the test narrows the type
        return float(torch.linalg.vector_norm(torch.stack(norms)))

    def to_device(self, batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
        return {k: v.to(self.device) if torch.is_tensor(v) else v for k, v in batch.items()}
