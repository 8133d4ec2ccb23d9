"""The thin layer over Accelerate that every loop uses: device, mixed precision, gradient sync, and
the few collectives a multi-process loop needs.

Accelerate places the model, wraps it for multi-process runs (DDP, or DeepSpeed / FSDP through
``accelerate launch`` and its config), and autocasts in bf16 when asked; weights and optimizer state
stay fp32, so small updates are not rounded away as they would be in pure-bf16 training (SFT's bf16
weights keep fp32 masters for the same reason: ``rlhfkit.train.precision``).

Data-parallel runs (DDP's ``MULTI_CPU`` / ``MULTI_GPU``) keep the model unwrapped and average the
gradients once per optimizer step (`reduce_gradients`), as DDP under ``no_sync`` would. Why not the
DDP wrapper: rlhfkit's model helpers (``rlhfkit.models.lm``: trunk slices, output heads, the
actor-critic) call the decoder under the wrapper directly, and DDP only reduces correctly after a
forward through itself (its reducer is armed in ``DDP.forward``); bypassing it gave gradients 0.3%
off the 1-process ones. FSDP and DeepSpeed still take Accelerate's wrapper (their parameters live in
it), so those engines need the loop's forward to go through the prepared model.

On CPU the processes talk through gloo: ``torchrun --nproc_per_node 2`` or ``accelerate launch
--multi_gpu --num_processes 2`` (which runs torchrun) start two. ``accelerate launch --cpu
--num_processes 2`` does not: Accelerate's CPU launcher starts one process unless it is given an
MPI hostfile, and that one process trains alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator, Mapping
from typing import Any

import torch
from torch import nn

from rlhfkit.models.dtype import default_device, resolve_dtype

log = logging.getLogger("rlhfkit")


class Engine:
    """Accelerate, configured from a loop's dtype and seed."""

    def __init__(self, dtype: str, seed: int) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        device = default_device()
        sharded = [k for k in ("FSDP", "DEEPSPEED") if os.environ.get(f"ACCELERATE_USE_{k}", "").lower() == "true"]
        if device == "cpu" and sharded:
            # Accelerate 1.16 turns an FSDP / DeepSpeed launch on CPU into plain MULTI_CPU (measured):
            # say so, rather than let a user believe the model is sharded.
            log.warning("%s needs GPUs; on CPU this run is data-parallel (every process holds the model)", sharded[0])
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

    @property
    def data_parallel(self) -> bool:
        """Whether gradients are averaged by `reduce_gradients` (several processes, no FSDP / DeepSpeed)."""
        from accelerate.utils import DistributedType

        kind = self.accelerator.distributed_type
        return self.world_size > 1 and kind in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """The model on this process's device (wrapped only by FSDP / DeepSpeed) and its optimizer.
        Data-parallel processes start from the main process's trainable weights, as DDP's do."""
        if not self.world_size > 1 or self.data_parallel:
            model = model.to(self.device)
            if self.data_parallel:
                import torch.distributed as dist

                with torch.no_grad():
                    for p in model.parameters():
                        if p.requires_grad:
                            dist.broadcast(p.data, src=0)
            return model, self.accelerator.prepare_optimizer(optimizer)
        return self.accelerator.prepare(model, optimizer)

    def reduce_gradients(self, trained: nn.Module | Any) -> None:
        """Average the gradients of `trained`'s trainable parameters over the processes, in one flat
        all-reduce (a collective; `Run.optimizer_step` calls it). A parameter with no gradient on one
        process counts as zeros there, so every process reduces the same tensors."""
        if not self.data_parallel:
            return
        import torch.distributed as dist
        from torch._utils import _flatten_dense_tensors, _unflatten_dense_tensors

        params = [p for _, p in trained.named_parameters() if p.requires_grad]
        grads = [p.grad if p.grad is not None else torch.zeros_like(p) for p in params]
        flat = _flatten_dense_tensors(grads)
        dist.all_reduce(flat)
        flat /= self.world_size
        for p, g in zip(params, _unflatten_dense_tensors(flat, grads), strict=True):
            p.grad = g.view_as(p)

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    @contextlib.contextmanager
    def sync(self, model: nn.Module, last: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step (a wrapper's: data
        parallel runs reduce once, in `reduce_gradients`)."""
        if last or self.world_size == 1 or self.data_parallel:
            yield
        else:
            with self.accelerator.no_sync(model):
                yield

    def all_sum(self, values: list[float]) -> list[float]:
        """Each value summed over every process (float64, so counts stay exact); a collective: every
        process must call it at the same point with as many values."""
        if self.world_size == 1:
            return [float(v) for v in values]
        t = torch.tensor(values, dtype=torch.float64, device=self.device)
        return [float(v) for v in self.accelerator.reduce(t, reduction="sum")]

    def mean_over_processes(self, values: Mapping[str, float | torch.Tensor]) -> dict[str, float]:
        """Each value averaged over the processes (each holding as many samples, a mean of means is the
        global mean; a standard deviation becomes the mean of the processes' ones). One collective: every
        process passes the same keys."""
        keys = sorted(values)
        totals = self.all_sum([float(values[k]) for k in keys])
        return {k: v / self.world_size for k, v in zip(keys, totals, strict=True)}

    def sum_tensor(self, tensor: torch.Tensor) -> torch.Tensor:
        """`tensor` (float64 statistics, e.g. `masked_moments`) summed over every process, on the CPU."""
        return torch.tensor(self.all_sum(tensor.tolist()), dtype=torch.float64)

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` (same shape on each) concatenated along dim 0 in rank order."""
        if self.world_size == 1:
            return tensor
        return self.accelerator.gather(tensor.contiguous())

    def barrier(self) -> None:
        """Wait until every process gets here."""
        self.accelerator.wait_for_everyone()

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
