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
off the 1-process ones. FSDP and DeepSpeed on GPUs still take Accelerate's wrapper (their parameters
live in it), so those engines need the loop's forward to go through the prepared model.

FSDP on CPU runs through torch's FSDP2 (``rlhfkit.train.fsdp``): Accelerate 1.16 would run an FSDP
launch on CPU as plain data parallelism, so the engine shards the model itself with ``fully_shard``
(one unit per decoder layer, plus the root) and the ``lm`` helpers run as forwards of the root.
Trainers that support it (``rlhfkit.train.run.FSDP_ON_CPU``): SFT, DPO (its sampler runs as one
forward of the root) and the reward model (whose head sits in the root unit); PPO, GRPO and RLOO
refuse an FSDP launch on CPU. DeepSpeed on CPU still runs data-parallel (with a warning).

On CPU the processes talk through gloo: ``torchrun --nproc_per_node 2``, ``accelerate launch
--multi_gpu --num_processes 2`` or ``accelerate launch --config_file configs/accelerate/fsdp.yaml``
(both run torchrun) start two. ``accelerate launch --cpu --num_processes 2`` does not: Accelerate's
CPU launcher starts one process unless it is given an MPI hostfile, and that one process trains alone.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Callable, Iterator, Mapping
from typing import Any, cast

import torch
from torch import nn

from rlhfkit.models.dtype import default_device, resolve_dtype
from rlhfkit.train import checkpoint, fsdp

log = logging.getLogger("rlhfkit")

KERNEL_KEYS = ("fused", "foreach")
"""AdamW's settings that pick a kernel, not the update (see `Engine.load_optimizer_state`)."""


class Engine:
    """Accelerate, configured from a loop's dtype and seed."""

    def __init__(self, dtype: str, seed: int) -> None:
        from accelerate import Accelerator
        from accelerate.utils import set_seed

        device = default_device()
        self.compute_dtype = resolve_dtype(dtype, device)
        mixed = "bf16" if self.compute_dtype == torch.bfloat16 else "no"
        on_cpu = device == "cpu" and fsdp.requested()
        with fsdp.hidden_from_accelerate() if on_cpu else contextlib.nullcontext():
            self.accelerator = Accelerator(mixed_precision=mixed, cpu=device == "cpu")
        set_seed(seed)
        self.fsdp = on_cpu and self.world_size > 1
        """Whether the model is sharded by torch's FSDP2 (`shard`): an FSDP launch on CPU processes."""
        if self.fsdp:
            fsdp.reshard_after_forward()  # refuse a strategy FSDP2 lacks before anything loads
            log.info("FSDP on CPU: sharding with torch's FSDP2 (fully_shard) over %d processes", self.world_size)
        elif device == "cpu" and os.environ.get("ACCELERATE_USE_DEEPSPEED", "").lower() == "true":
            # Accelerate 1.16 turns a DeepSpeed launch on CPU into plain MULTI_CPU (measured): say so,
            # rather than let a user believe the model is sharded.
            log.warning("DeepSpeed needs GPUs; on CPU this run is data-parallel (every process holds the model)")

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
        multi = kind in (DistributedType.MULTI_CPU, DistributedType.MULTI_GPU)
        return self.world_size > 1 and multi and not self.fsdp

    def shard(self, model: nn.Module) -> None:
        """Shard `model` in place with FSDP2 (an FSDP launch on CPU: `fsdp`), before its optimizer is
        built over the shards. Every process loaded the same weights, so no broadcast is needed."""
        total = sum(p.numel() for p in model.parameters())
        units = fsdp.shard(model, self.world_size)
        held = self.gather(torch.tensor([fsdp.local_parameters(model)]))  # one line, from the main process
        if self.is_main:
            parts = " + ".join(str(int(n)) for n in held)
            log.info("FSDP2: %d layer units and the root; the processes hold %s of %d parameters", units, parts, total)

    def prepare(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> tuple[Any, Any]:
        """The model on this process's device (wrapped only by FSDP / DeepSpeed on GPUs; already sharded
        by `shard` under FSDP on CPU) and its optimizer. Data-parallel processes start from the main
        process's trainable weights, as DDP's do."""
        if self.fsdp:
            return model, self.accelerator.prepare_optimizer(optimizer)
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

    def trainable_state(self, module: checkpoint.Parameterized) -> dict[str, torch.Tensor]:
        """The full trainable parameters of `module` for a checkpoint (gathered from the shards under
        FSDP: a collective, and only the main process gets them)."""
        if self.fsdp:
            return fsdp.trainable_state(cast(nn.Module, module))
        return checkpoint.trainable_state(module)

    def load_trainable_state(self, module: checkpoint.Parameterized, tensors: dict[str, torch.Tensor]) -> None:
        if self.fsdp:
            fsdp.load_trainable_state(cast(nn.Module, module), tensors)
        else:
            checkpoint.load_trainable_state(module, tensors)

    def optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
        """``optimizer.state_dict()`` with full tensors (under FSDP: a collective; empty but on the main
        process)."""
        return fsdp.optimizer_state(model, optimizer) if self.fsdp else optimizer.state_dict()

    def load_optimizer_state(self, model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
        """Load a saved ``optimizer.state_dict()``, keeping this optimizer's kernel (fused on plain
        tensors, foreach on FSDP's shards): a choice of this process, not part of the state, and
        loading a saved group would otherwise replace it."""
        saved_groups, current = state["param_groups"], optimizer.param_groups
        if len(saved_groups) == len(current):  # else loading refuses the state, with its own message
            groups = [
                {**saved, **{k: now[k] for k in KERNEL_KEYS if k in now}}
                for saved, now in zip(saved_groups, current, strict=True)
            ]
            state = {**state, "param_groups": groups}
        if self.fsdp:
            fsdp.load_optimizer_state(model, optimizer, state)
        else:
            optimizer.load_state_dict(state)

    def full_model(self, model: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module | None:
        """The trained model, unwrapped and unsharded, for the main process to save (None elsewhere;
        under FSDP a collective that gathers the weights into `build()`, see `fsdp.full_model`)."""
        if self.fsdp:
            return fsdp.full_model(model, build)
        return self.unwrap(model) if self.is_main else None

    def unwrap(self, model: nn.Module) -> nn.Module:
        return self.accelerator.unwrap_model(model)

    def autocast(self) -> contextlib.AbstractContextManager:
        return self.accelerator.autocast()

    @contextlib.contextmanager
    def sync(self, model: nn.Module, last: bool) -> Iterator[None]:
        """Skip the gradient all-reduce on all but the last micro-batch of a step (a wrapper's: data
        parallel runs reduce once, in `reduce_gradients`; FSDP2's reduce-scatter waits for the last)."""
        if self.fsdp:
            model.set_requires_gradient_sync(last)  # type: ignore[operator]  # an FSDPModule's
            yield
        elif last or self.world_size == 1 or self.data_parallel:
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


def end_processes(ok: bool) -> None:
    """Leave the process group, if this process joined one: wait for the others first when the run
    succeeded, then destroy the group (what Accelerate's ``end_training`` does).

    Why: a rank that returns while rank 0 is still saving exits with gloo's threads alive, and the
    C++ runtime aborts it ("terminate called without an active exception", exit -6), so torchrun
    reports a failed run. After a failure there is no barrier: the others may never reach it.
    """
    import torch.distributed as dist

    if not (dist.is_available() and dist.is_initialized()):
        return
    if ok:
        dist.barrier()
    dist.destroy_process_group()
