"""FSDP on CPU processes through torch's own FSDP2 (``torch.distributed.fsdp.fully_shard``).

Accelerate 1.16 turns an FSDP launch on CPU (``accelerate launch --config_file
configs/accelerate/fsdp.yaml``, which sets ``ACCELERATE_USE_FSDP`` and the ``FSDP_*`` variables and
starts torchrun) into plain ``MULTI_CPU`` data parallelism; torch's FSDP2 shards over gloo on CPU
all the same. `shard` applies it as the config describes: one unit per decoder layer (the classes in
the model's ``_no_split_modules``, or ``FSDP_TRANSFORMER_CLS_TO_WRAP``) plus the root, which holds
the embeddings, the final norm and the output head. Each process then keeps 1/world of every weight,
gradient and AdamW moment; a unit's weights are all-gathered around its forward and backward, and
its gradients reduce-scattered (averaged over the processes, as DDP would) after its backward.

rlhfkit's model helpers (``rlhfkit.models.lm``) call the decoder and the output head directly, not
the root's ``forward``, and FSDP2 gathers the root's weights only around a forward of the root:
`shard` therefore installs `ROOT_FORWARD` on the model, which runs a helper as a forward of the root
(torch's ``register_fsdp_forward_method``), and the helpers go through it.

Checkpoints and the final model hold full, unsharded tensors gathered by torch's
``get_model_state_dict`` / ``get_optimizer_state_dict`` (``full_state_dict``, on the CPU of rank 0),
in the same files as a run on one process writes, so either resumes the other.
"""

from __future__ import annotations

import contextlib
import os
import types
from collections.abc import Callable, Iterator, Mapping, MutableMapping
from typing import Any, cast

import torch
from torch import nn

from rlhfkit.config import ConfigError
from rlhfkit.models.lm import ROOT_FORWARD

STRATEGIES = {"FULL_SHARD": True, "SHARD_GRAD_OP": False}
"""Accelerate's FSDP1 sharding strategies that FSDP2 has, as ``reshard_after_forward``: FULL_SHARD frees
each unit's gathered weights after its forward (gathering them again for the backward), SHARD_GRAD_OP
keeps them until the backward (more memory, one all-gather fewer)."""
ACCELERATE_ORDER = ("FULL_SHARD", "SHARD_GRAD_OP", "NO_SHARD", "HYBRID_SHARD", "HYBRID_SHARD_ZERO2")
"""Accelerate also accepts a strategy by its number, 1-based in this order (accelerate.utils.constants)."""


def requested(env: Mapping[str, str] = os.environ) -> bool:
    """Whether the launch asked for FSDP (``accelerate launch`` with an FSDP config sets this)."""
    return env.get("ACCELERATE_USE_FSDP", "").lower() == "true"


@contextlib.contextmanager
def hidden_from_accelerate(env: MutableMapping[str, str] = os.environ) -> Iterator[None]:
    """Hide an FSDP launch from Accelerate while it sets up a CPU run: it would not shard there (its
    CPU state is ``MULTI_CPU``), yet its FSDP plugin refuses the shipped config's ``sync_module_states``
    on CPU ("FSDP parameter initialization with `sync_module_states=True` is not supported on cpu")."""
    saved = env.pop("ACCELERATE_USE_FSDP", None)
    try:
        yield
    finally:
        if saved is not None:
            env["ACCELERATE_USE_FSDP"] = saved


def reshard_after_forward(env: Mapping[str, str] = os.environ) -> bool:
    """FSDP2's ``reshard_after_forward`` for the launch's FSDP settings: ``FSDP_RESHARD_AFTER_FORWARD``
    for an FSDP2 config (``fsdp_version: 2``), else ``FSDP_SHARDING_STRATEGY``."""
    if env.get("FSDP_VERSION", "1") == "2":
        value = env.get("FSDP_RESHARD_AFTER_FORWARD", "true").lower()
        if value not in ("true", "false"):
            raise ConfigError(f"FSDP_RESHARD_AFTER_FORWARD={value}: FSDP2 on CPU takes true or false")
        return value == "true"
    strategy = env.get("FSDP_SHARDING_STRATEGY", "FULL_SHARD").upper()
    if strategy.isdigit() and 1 <= int(strategy) <= len(ACCELERATE_ORDER):
        strategy = ACCELERATE_ORDER[int(strategy) - 1]
    if strategy not in STRATEGIES:
        raise ConfigError(
            f"FSDP sharding strategy {strategy}: FSDP on CPU (torch's FSDP2) runs {' or '.join(STRATEGIES)}; "
            "for every process to hold the whole model, launch data-parallel (configs/accelerate/ddp.yaml)"
        )
    return STRATEGIES[strategy]


def unit_classes(model: nn.Module, env: Mapping[str, str] = os.environ) -> set[str]:
    """The class names that become FSDP units: ``FSDP_TRANSFORMER_CLS_TO_WRAP`` when the config names
    some, else the model's ``_no_split_modules`` (what Accelerate wraps, as configs/accelerate/fsdp.yaml says)."""
    policy = env.get("FSDP_AUTO_WRAP_POLICY", "TRANSFORMER_BASED_WRAP").upper()
    if policy != "TRANSFORMER_BASED_WRAP":
        raise ConfigError(f"FSDP_AUTO_WRAP_POLICY={policy}: FSDP on CPU wraps by transformer layer only")
    named = env.get("FSDP_TRANSFORMER_CLS_TO_WRAP", "")
    classes = {c.strip() for c in named.split(",") if c.strip()}
    # the transformers model may sit inside the trained one (a reward model's trunk)
    classes = classes or {c for m in model.modules() for c in getattr(m, "_no_split_modules", None) or ()}
    if not classes:
        raise ConfigError(f"{type(model).__name__} names no decoder layer class (_no_split_modules) to shard by")
    return classes


AS_FORWARD = "_rlhfkit_as_forward"
"""The method of the sharded root that torch runs as a forward (``register_fsdp_forward_method``)."""


def _as_forward(self: nn.Module, fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
    return fn(*args, **kwargs)


def _install_root_forward(model: nn.Module) -> None:
    """Let the `rlhfkit.models.lm` helpers run as forwards of the sharded root (see the module docstring).
    A helper that calls another runs one forward: the inner call goes straight through."""
    from torch.distributed.fsdp import FSDPModule, register_fsdp_forward_method

    setattr(model, AS_FORWARD, types.MethodType(_as_forward, model))
    register_fsdp_forward_method(model, AS_FORWARD)
    as_forward = getattr(model, AS_FORWARD)  # wrapped by torch: the root's pre- and post-forward around it
    inside = False

    def call(fn: Callable[..., Any], *args: Any, **kwargs: Any) -> Any:
        nonlocal inside
        if inside:
            return fn(*args, **kwargs)
        inside = True
        try:
            out = as_forward(fn, *args, **kwargs)
        finally:
            inside = False
        if not torch.is_grad_enabled():
            # FSDP keeps weights gathered from a forward to its backward (the root's always, every
            # unit's under SHARD_GRAD_OP); an evaluation has no backward to free them.
            for module in model.modules():
                if isinstance(module, FSDPModule):
                    module.reshard()
        return out

    setattr(model, ROOT_FORWARD, call)


def shard(model: nn.Module, world_size: int, env: Mapping[str, str] = os.environ) -> int:
    """Shard `model` in place over `world_size` CPU processes (gloo), one FSDP2 unit per decoder layer
    and one for the root; returns the number of layer units. Every process calls it."""
    from torch.distributed.device_mesh import init_device_mesh
    from torch.distributed.fsdp import fully_shard

    reshard = reshard_after_forward(env)
    classes = unit_classes(model, env)
    mesh = init_device_mesh("cpu", (world_size,))
    layers = [m for m in model.modules() if type(m).__name__ in classes and m is not model]
    if not layers:
        raise ConfigError(f"{type(model).__name__} has no module of class {', '.join(sorted(classes))} to shard")
    for layer in layers:
        fully_shard(layer, mesh=mesh, reshard_after_forward=reshard)
    # The root's own default: its weights stay gathered from its forward to its backward (torch frees
    # and gathers them again otherwise, for nothing), whatever the strategy.
    fully_shard(model, mesh=mesh)
    _install_root_forward(model)
    return len(layers)


def local_parameters(model: nn.Module) -> int:
    """How many parameter values this process holds (its shards: about 1/world of the model)."""
    from torch.distributed.tensor import DTensor

    return sum(p.to_local().numel() if isinstance(p, DTensor) else p.numel() for p in model.parameters())


def _full_options(*, cpu_offload: bool = False, strict: bool = True) -> Any:
    """Full (unsharded) state dicts; with `cpu_offload` gathered on rank 0's CPU only."""
    from torch.distributed.checkpoint.state_dict import StateDictOptions

    return StateDictOptions(full_state_dict=True, cpu_offload=cpu_offload, strict=strict)


def trainable_state(model: nn.Module) -> dict[str, torch.Tensor]:
    """The full trainable parameters of the sharded `model` by name, on rank 0's CPU (empty on the
    other ranks): what `rlhfkit.train.checkpoint.trainable_state` gives on one process. A collective."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict

    full: dict[str, Any] = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    names = [n for n, p in model.named_parameters() if p.requires_grad]  # tied weights once, as on one process
    return {n: full[n].contiguous() for n in names if n in full}


def load_trainable_state(model: nn.Module, tensors: dict[str, torch.Tensor]) -> None:
    """Load full tensors (every rank read them) into the shards of `model`; a collective."""
    from torch.distributed.checkpoint.state_dict import set_model_state_dict

    missing = [n for n, p in model.named_parameters() if p.requires_grad and n not in tensors]
    if missing:
        raise RuntimeError(f"checkpoint lacks trainable parameters: {missing[:5]}")
    set_model_state_dict(model, cast(dict[str, Any], tensors), options=_full_options(strict=False))


def _param_names(model: nn.Module, optimizer: torch.optim.Optimizer) -> list[str]:
    """The names of the optimizer's parameters in the order ``optimizer.state_dict()`` numbers them."""
    names = {id(p): n for n, p in model.named_parameters()}
    return [names[id(p)] for group in optimizer.param_groups for p in group["params"]]


def optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer) -> dict[str, Any]:
    """The full optimizer state on rank 0 (empty elsewhere) in ``optimizer.state_dict()``'s form, its
    parameters numbered as on one process. A collective."""
    from torch.distributed.checkpoint.state_dict import get_optimizer_state_dict

    full: dict[str, Any] = get_optimizer_state_dict(model, optimizer, options=_full_options(cpu_offload=True))
    if not full:
        return {}
    index = {name: i for i, name in enumerate(_param_names(model, optimizer))}
    groups = [{**g, "params": [index[n] for n in g["params"]]} for g in full["param_groups"]]
    return {"state": {index[n]: s for n, s in full["state"].items()}, "param_groups": groups}


def load_optimizer_state(model: nn.Module, optimizer: torch.optim.Optimizer, state: dict[str, Any]) -> None:
    """Load an ``optimizer.state_dict()`` of full tensors (every rank read it) into the sharded optimizer."""
    from torch.distributed.checkpoint.state_dict import set_optimizer_state_dict

    names = _param_names(model, optimizer)
    groups = [{**g, "params": [names[i] for i in g["params"]]} for g in state["param_groups"]]
    full = {"state": {names[int(i)]: s for i, s in state["state"].items()}, "param_groups": groups}
    set_optimizer_state_dict(model, optimizer, cast(Any, full), options=_full_options())


def full_model(model: nn.Module, build: Callable[[], nn.Module] | None = None) -> nn.Module | None:
    """On rank 0, a plain (unsharded) copy of the sharded `model` with its full weights, for
    ``save_pretrained``; None on the other ranks. A collective. `build` makes a plain module of the
    same structure (default: the transformers model's class from its config)."""
    from torch.distributed.checkpoint.state_dict import get_model_state_dict
    from torch.distributed.fsdp import FSDPModule

    full: dict[str, Any] = get_model_state_dict(model, options=_full_options(cpu_offload=True))
    if not full:
        return None
    # fully_shard swapped the model's class for an FSDP subclass of it: build the class it came from
    plain_class = next(c for c in type(model).__mro__ if issubclass(c, nn.Module) and not issubclass(c, FSDPModule))
    plain = build() if build is not None else plain_class(model.config)
    plain.load_state_dict(full, assign=True)
    for module in plain.modules():  # the transformers model may sit inside (a reward model's trunk)
        tie = getattr(module, "tie_weights", None)
        if callable(tie):
            tie()  # assigned one by one, the tied output head and embeddings are two tensors until re-tied
    return plain.eval()
