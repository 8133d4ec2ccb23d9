"""Choosing the compute dtype.

bf16 where the hardware runs it fast, else fp32; never fp16 on a CPU (it has no fp16 matmul kernels
there and runs about 200x slower). "Supports bf16" is measured, not assumed: some CPUs advertise
``avx512_bf16`` yet run PyTorch's bf16 matmul slower than fp32 (on the 2-core Xeon this project is
developed on, bf16 reached 70 GFLOP/s against fp32's 150), so on a CPU ``auto`` times both once and
caches the answer per CPU model and torch version.

A GPU answers for itself: bf16 where it computes bf16 natively (compute capability 8.0 and up:
A100, H100, RTX 30xx+), else fp32. Nothing is timed there, and a GPU that only emulates bf16 (a V100
or T4, where ``torch.cuda.is_bf16_supported()`` says yes by default) stays in fp32.
"""

from __future__ import annotations

import contextlib
import json
import os
import platform
import time
from pathlib import Path

import torch

from rlhfkit.files import cache_dir, write_json_atomic

DTYPES = {"fp32": torch.float32, "bf16": torch.bfloat16, "fp16": torch.float16}


def _cpu_name() -> str:
    try:
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _time_linear(dtype: torch.dtype, reps: int = 6) -> float:
    # The shape of one SmolLM2 MLP projection over a 2k-token batch: what training spends its time on.
    x = torch.randn(2048, 576, dtype=dtype)
    w = torch.randn(1536, 576, dtype=dtype)
    torch.nn.functional.linear(x, w)
    start = time.perf_counter()
    for _ in range(reps):
        torch.nn.functional.linear(x, w)
    return time.perf_counter() - start


def cpu_prefers_bf16() -> bool:
    """Whether bf16 matmul is faster than fp32 on this CPU (measured once, then cached).

    ``RLHFKIT_CPU_AUTO_DTYPE=fp32|bf16`` answers without measuring (the tests pin fp32 this way, so
    every machine computes the same numbers)."""
    forced = os.environ.get("RLHFKIT_CPU_AUTO_DTYPE", "")
    if forced:
        if forced not in ("fp32", "bf16"):
            raise ValueError(f"RLHFKIT_CPU_AUTO_DTYPE must be fp32 or bf16, got {forced!r}")
        return forced == "bf16"
    key = f"{_cpu_name()}|torch {torch.__version__}|threads {torch.get_num_threads()}"
    path = cache_dir() / "cpu_dtype.json"
    try:
        cached = json.loads(path.read_text())
        if key in cached:
            return bool(cached[key])
    except (OSError, ValueError):
        cached = {}
    prefers = _time_linear(torch.bfloat16) < 0.9 * _time_linear(torch.float32)
    cached[key] = prefers
    with contextlib.suppress(OSError):  # a read-only cache only costs a new measurement next time
        write_json_atomic(path, cached)
    return prefers


def default_device() -> str:
    """Where to compute when nothing says otherwise: the GPU when one is visible, else the CPU."""
    return "cuda" if torch.cuda.is_available() else "cpu"


def cuda_has_bf16() -> bool:
    """Whether the current GPU computes bf16 natively (not emulated)."""
    return torch.cuda.is_bf16_supported(including_emulation=False)


def resolve_dtype(requested: str | torch.dtype, device: str | torch.device = "cpu") -> torch.dtype:
    """``auto`` | ``bf16`` | ``fp32`` | ``fp16`` (or a torch.dtype) -> the dtype to compute in."""
    device_type = torch.device(device).type
    if isinstance(requested, torch.dtype):
        dtype = requested
    elif requested == "auto":
        if device_type == "cuda":
            return torch.bfloat16 if cuda_has_bf16() else torch.float32
        return torch.bfloat16 if device_type == "cpu" and cpu_prefers_bf16() else torch.float32
    elif requested in DTYPES:
        dtype = DTYPES[requested]
    else:
        raise ValueError(f"unknown dtype {requested!r}; use one of auto, {', '.join(DTYPES)}")
    if dtype == torch.float16 and device_type == "cpu":
        raise ValueError("fp16 on a CPU is about 200x slower than fp32 or bf16; use dtype=bf16 or fp32")
    return dtype
