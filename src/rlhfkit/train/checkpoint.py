"""Checkpoints that survive ``kill -9`` at any moment, with no pickle anywhere.

A checkpoint is a directory ``checkpoints/step-000120/`` holding:

- ``<module>.safetensors``: the trainable parameters of each module (policy, value head ...); frozen
  weights are not repeated, they come from the base model on resume;
- ``optimizer.safetensors`` + ``optimizer.json``: the optimizer's tensors and its hyper-parameters;
- ``rng.safetensors``: the torch CPU (and CUDA) generator states;
- ``state.json``: the step, the data position, the scheduler, Python's and NumPy's RNG states and any
  loop state (e.g. the KL controller), all as JSON.

It is written into a hidden temporary directory, flushed, and renamed into place (`rlhfkit.files.staged_dir`);
only then does ``checkpoints/latest`` (a one-line file, itself replaced atomically) point at it. A crash before the
rename leaves the previous checkpoint as the latest; stale temporary directories are swept on resume.
"""

from __future__ import annotations

import json
import random
import shutil
from collections.abc import Iterable, Iterator, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol

import numpy as np
import torch
from safetensors.torch import load_file, save_file
from torch import nn

from rlhfkit.files import staged_dir, write_text_atomic


class Parameterized(Protocol):
    """What a checkpoint holds the trainable parameters of: a module, or `MasterWeights` (fp32 masters
    under the model's parameter names)."""

    def named_parameters(self) -> Iterator[tuple[str, nn.Parameter]]: ...


def trainable_state(module: Parameterized) -> dict[str, torch.Tensor]:
    return {n: p.detach().contiguous().clone() for n, p in module.named_parameters() if p.requires_grad}


def load_trainable_state(module: Parameterized, tensors: dict[str, torch.Tensor]) -> None:
    params = dict(module.named_parameters())
    missing = [n for n, p in params.items() if p.requires_grad and n not in tensors]
    if missing:
        raise RuntimeError(f"checkpoint lacks trainable parameters: {missing[:5]}")
    with torch.no_grad():
        for name, value in tensors.items():
            params[name].copy_(value)


def _optimizer_to_files(sd: dict[str, Any]) -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    """An ``optimizer.state_dict()`` as safetensors tensors and JSON (the rest)."""
    tensors: dict[str, torch.Tensor] = {}
    scalars: dict[str, dict[str, Any]] = {}
    for idx, state in sd["state"].items():
        for key, value in state.items():
            if torch.is_tensor(value):
                tensors[f"{idx}.{key}"] = value.contiguous()
            else:
                scalars.setdefault(str(idx), {})[key] = value
    return tensors, {"param_groups": sd["param_groups"], "scalars": scalars}


def _optimizer_from_files(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> dict[str, Any]:
    """The ``optimizer.state_dict()`` that `_optimizer_to_files` split."""
    state: dict[int, dict[str, Any]] = {}
    for key, value in tensors.items():
        idx, name = key.split(".", 1)
        state.setdefault(int(idx), {})[name] = value
    for idx, values in meta["scalars"].items():
        state.setdefault(int(idx), {}).update(values)
    return {"state": state, "param_groups": meta["param_groups"]}


def rng_state() -> tuple[dict[str, torch.Tensor], dict[str, Any]]:
    tensors = {"torch": torch.get_rng_state()}
    if torch.cuda.is_available():
        for i, s in enumerate(torch.cuda.get_rng_state_all()):
            tensors[f"cuda{i}"] = s
    state = np.random.get_state(legacy=True)
    if isinstance(state, dict):  # only a non-MT19937 bit generator gives one; numpy's global RandomState has MT19937
        raise TypeError("numpy's global RandomState does not use MT19937; its state cannot be saved as a tuple")
    kind, keys, pos, has_gauss, gauss = state
    py = random.getstate()
    numpy_state = [kind, keys.tolist(), int(pos), int(has_gauss), float(gauss)]
    return tensors, {"python": [py[0], list(py[1]), py[2]], "numpy": numpy_state}


def set_rng_state(tensors: dict[str, torch.Tensor], meta: dict[str, Any]) -> None:
    torch.set_rng_state(tensors["torch"])
    if torch.cuda.is_available():
        states = [tensors[k] for k in sorted(tensors) if k.startswith("cuda")]
        if states:
            torch.cuda.set_rng_state_all(states)
    py = meta["python"]
    random.setstate((py[0], tuple(py[1]), py[2]))
    kind, keys, pos, has_gauss, gauss = meta["numpy"]
    np.random.set_state((kind, np.array(keys, dtype=np.uint32), pos, has_gauss, gauss))


@dataclass
class Checkpoint:
    """What a loop hands to `save` and gets back from `load`."""

    step: int
    state: dict[str, Any]
    """JSON-able loop state: data position, scheduler, controller, metrics needed to continue."""
    tensors: dict[str, dict[str, torch.Tensor]] = field(default_factory=dict)
    """The trainable parameters of each module by name, as saved (full tensors, on the CPU)."""
    optimizer: dict[str, Any] | None = None
    """The optimizer's ``state_dict()`` as saved."""


def save_checkpoint(
    root: Path,
    step: int,
    *,
    tensors: Mapping[str, dict[str, torch.Tensor]],
    optimizer: dict[str, Any] | None,
    state: dict[str, Any],
    keep: int = 2,
) -> Path:
    """Write checkpoint `step` under `root` (= ``run_dir/checkpoints``) atomically; keep the newest `keep`.

    `tensors`: the trainable parameters of each module (`trainable_state`), `optimizer` its
    ``state_dict()``; full tensors either way, whatever the engine sharded, so any number of processes
    resumes the checkpoint."""
    final = root / f"step-{step:06d}"
    with staged_dir(final, prefix=f".tmp-step-{step:06d}-") as tmp:
        for name, module_tensors in tensors.items():
            save_file(module_tensors, str(tmp / f"{name}.safetensors"))
        if optimizer is not None:
            opt_tensors, meta = _optimizer_to_files(optimizer)
            save_file(opt_tensors, str(tmp / "optimizer.safetensors"))
            (tmp / "optimizer.json").write_text(json.dumps(meta))
        rng_tensors, rng_meta = rng_state()
        save_file(rng_tensors, str(tmp / "rng.safetensors"))
        (tmp / "state.json").write_text(json.dumps({"step": step, "rng": rng_meta, **state}))
    write_text_atomic(root / "latest", final.name + "\n")
    _prune(root, keep)
    return final


def _prune(root: Path, keep: int) -> None:
    done = sorted(p for p in root.glob("step-*") if p.is_dir())
    latest = latest_checkpoint(root)
    for old in done[:-keep] if keep > 0 else []:
        if old != latest:
            shutil.rmtree(old, ignore_errors=True)


def latest_checkpoint(root: Path) -> Path | None:
    """The newest complete checkpoint under `root`, or None. Sweeps stale temporary directories."""
    if not root.is_dir():
        return None
    for stale in [*root.glob(".tmp-step-*"), *root.glob(".step-*.old-*")]:
        shutil.rmtree(stale, ignore_errors=True)
    pointer = root / "latest"
    if pointer.exists():
        candidate = root / pointer.read_text().strip()
        if (candidate / "state.json").exists():
            return candidate
    done = sorted(p for p in root.glob("step-*") if (p / "state.json").exists())
    return done[-1] if done else None


def load_checkpoint(path: Path, *, modules: Iterable[str], optimizer: bool, restore_rng: bool = True) -> Checkpoint:
    """Read the tensors of `modules` (and the optimizer's state when `optimizer`) from `path` and
    restore the RNG; the caller loads them into its modules and optimizer (`load_trainable_state`)."""
    tensors = {name: load_file(str(path / f"{name}.safetensors")) for name in modules}
    opt_state = None
    if optimizer:
        meta = json.loads((path / "optimizer.json").read_text())
        opt_state = _optimizer_from_files(load_file(str(path / "optimizer.safetensors")), meta)
    state = json.loads((path / "state.json").read_text())
    if restore_rng:
        set_rng_state(load_file(str(path / "rng.safetensors")), state["rng"])
    step = int(state.pop("step"))
    state.pop("rng", None)
    return Checkpoint(step=step, state=state, tensors=tensors, optimizer=opt_state)
