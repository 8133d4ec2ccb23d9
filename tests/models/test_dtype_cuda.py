"""The GPU's own dtype rules, checked on a CPU machine by answering for the GPU."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.models import dtype as dtype_module
from rlhfkit.models.dtype import resolve_dtype


@pytest.fixture
def no_cpu_probe(monkeypatch: pytest.MonkeyPatch) -> None:
    def probe() -> bool:
        raise AssertionError("a GPU's dtype must not be chosen by timing the CPU")

    monkeypatch.setattr(dtype_module, "cpu_prefers_bf16", probe)


@pytest.mark.parametrize(("native", "expected"), [(True, torch.bfloat16), (False, torch.float32)])
def test_auto_on_cuda_is_bf16_only_where_the_gpu_computes_it_natively(
    native: bool, expected: torch.dtype, monkeypatch: pytest.MonkeyPatch, no_cpu_probe: None
) -> None:
    asked: list[bool] = []

    def supported(including_emulation: bool = True) -> bool:
        asked.append(including_emulation)
        return native or including_emulation  # an emulating GPU (V100, T4) says yes unless asked for native

    monkeypatch.setattr(torch.cuda, "is_bf16_supported", supported)
    assert resolve_dtype("auto", "cuda") == expected
    assert asked == [False]


def test_explicit_dtypes_on_cuda_need_no_probe(no_cpu_probe: None) -> None:
    assert resolve_dtype("bf16", "cuda") == torch.bfloat16
    assert resolve_dtype("fp16", "cuda") == torch.float16  # refused only on a CPU
    assert resolve_dtype("fp32", "cuda:0") == torch.float32


def test_models_load_with_sdpa_attention() -> None:
    from rlhfkit.models.loading import load_model

    assert load_model("tiny", dtype="fp32").model.config._attn_implementation == "sdpa"
