"""bf16 weights with fp32 master copies: mixed precision without autocast's per-forward casts.

Autocast keeps the weights in fp32 and casts each one to bf16 on every forward, and each gradient
back to fp32 on the way back; on a CPU those copies take a quarter of an SFT step
(``bench/sft_profile.py``: ``copy_`` 26% of the time, matmuls 34%). Micikevicius et al. 2018
("Mixed Precision Training", sec. 3.1) instead hold the model itself in half precision and keep an
fp32 *master* copy of every trainable weight for the optimizer: forward and backward run wholly in
bf16, and once per optimizer step the gradients are cast up, the masters are updated in fp32 and the
result is cast down into the model. Updates smaller than a bf16 ulp still accumulate in the masters,
so they are not rounded away as in pure-bf16 training.

Frozen weights compute in bf16 too; their fp32 originals are kept (off the compute path) so that the
model saved at the end is not rounded. Only parameters are cast: buffers such as the rotary
embedding's inverse frequencies stay fp32, since rounding them shifts every position's angle. Use
it where one process owns the whole model: DeepSpeed and FSDP bring their own mixed-precision
masters, and DDP would all-reduce bf16 gradients.
"""

from __future__ import annotations

from collections.abc import Iterator

import torch
from torch import nn


class MasterWeights:
    """The fp32 masters of a model's trainable parameters, after casting the model to ``dtype``.

    Give :meth:`parameters` to the optimizer and the gradient clipper; call :meth:`grads_to_masters`
    after the last backward of a step and :meth:`masters_to_model` after ``optimizer.step()``.
    :meth:`named_parameters` has the model's names, so a checkpoint of this object saves the fp32
    values under the names a checkpoint of the model would use.
    """

    def __init__(self, model: nn.Module, dtype: torch.dtype) -> None:
        self._named = [(name, p) for name, p in model.named_parameters() if p.requires_grad]
        # Masters and frozen originals are taken before the cast, so they hold the exact fp32 weights.
        self._masters = [nn.Parameter(p.detach().float().clone()) for _, p in self._named]
        self._frozen = [(p, p.detach().float().clone()) for p in model.parameters() if not p.requires_grad]
        for p in model.parameters():  # parameters only: buffers keep their dtype
            p.data = p.data.to(dtype)

    def parameters(self) -> list[nn.Parameter]:
        """The fp32 masters, in the order of the model's trainable parameters."""
        return list(self._masters)

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]:
        """``(model's parameter name, fp32 master)`` for every trainable parameter."""
        for (name, _), master in zip(self._named, self._masters, strict=True):
            yield name, master

    def grads_to_masters(self) -> None:
        """Move each model gradient into its master, in fp32, and free the bf16 one."""
        for (_, p), master in zip(self._named, self._masters, strict=True):
            master.grad = None if p.grad is None else p.grad.float()
            p.grad = None

    @torch.no_grad()
    def masters_to_model(self) -> None:
        """Copy the updated masters into the model (rounding to its dtype)."""
        for (_, p), master in zip(self._named, self._masters, strict=True):
            p.copy_(master)

    def restore_fp32(self) -> None:
        """Make the model fp32 again: trained weights from the masters, frozen ones from their originals."""
        for p, original in self._frozen:
            p.data = original
        for (_, p), master in zip(self._named, self._masters, strict=True):
            p.data = master.detach().clone()
