"""The shared optimizer: fused AdamW where it can run, the same update either way."""

from __future__ import annotations

from pathlib import Path

import torch

from rlhfkit.train.config import TrainConfig
from rlhfkit.train.optim import make_optimizer


def _cfg(**kw: float) -> TrainConfig:
    return TrainConfig(output=Path("unused"), lr=0.1, warmup_steps=0, schedule="constant", **kw)


def test_cpu_parameters_get_the_fused_kernel() -> None:
    opt, _ = make_optimizer([torch.nn.Parameter(torch.ones(2, 2))], _cfg())
    assert opt.defaults["fused"] is True


def test_one_step_matches_adamw_by_hand() -> None:
    """First AdamW step: m = (1 - b1) g, v = (1 - b2) g^2, and the bias corrections give
    m_hat = g, v_hat = g^2, so w <- w (1 - lr wd) - lr g / (|g| + eps) = w (1 - lr wd) - lr sign(g).
    Matrix w = 1, g = 0.5, wd 0.01: 1 * (1 - 0.001) - 0.1 = 0.899. Vector b = 1, g = -2, no decay: 1.1."""
    w = torch.nn.Parameter(torch.ones(2, 2))
    b = torch.nn.Parameter(torch.ones(3))
    opt, _ = make_optimizer([w, b], _cfg(weight_decay=0.01))
    w.grad, b.grad = torch.full((2, 2), 0.5), torch.full((3,), -2.0)
    opt.step()
    torch.testing.assert_close(w.detach(), torch.full((2, 2), 0.899), atol=1e-6, rtol=0)
    torch.testing.assert_close(b.detach(), torch.full((3,), 1.1), atol=1e-6, rtol=0)
