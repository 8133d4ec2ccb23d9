"""bf16 weights with fp32 masters: updates too small for bf16 still accumulate; the model follows."""

from __future__ import annotations

import pytest
import torch
from torch import nn

from rlhfkit.train.checkpoint import load_trainable_state, trainable_state
from rlhfkit.train.precision import MasterWeights


def _model() -> nn.Module:
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(4, 8), nn.Tanh(), nn.Linear(8, 1))
    model[0].requires_grad_(False)  # a frozen layer: cast, but no master
    return model


def test_masters_are_the_fp32_start_and_the_model_is_cast() -> None:
    model = _model()
    model.register_buffer("inv_freq", torch.tensor([1.0, 1e-3 + 1e-7]))
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    masters = MasterWeights(model, torch.bfloat16)
    assert all(p.dtype == torch.bfloat16 for p in model.parameters())
    assert model.inv_freq.dtype == torch.float32  # buffers are not rounded
    names = [n for n, _ in masters.named_parameters()]
    assert names == ["2.weight", "2.bias"]
    for name, master in masters.named_parameters():
        assert master.dtype == torch.float32 and torch.equal(master, before[name])


def test_small_updates_accumulate_in_the_masters() -> None:
    # 1 + 1e-3 rounds back to 1 in bf16 (ulp 2^-7 ~ 7.8e-3): pure-bf16 SGD would never move. With
    # masters, 100 such steps add up to 0.1, and the model's bf16 weight follows the master.
    w = nn.Parameter(torch.ones(1))
    holder = nn.Module()
    holder.w = w
    masters = MasterWeights(holder, torch.bfloat16)
    opt = torch.optim.SGD(masters.parameters(), lr=1e-3)
    for _ in range(100):
        (-holder.w.sum()).backward()  # gradient -1 on the bf16 weight
        masters.grads_to_masters()
        assert holder.w.grad is None and masters.parameters()[0].grad.dtype == torch.float32
        opt.step()
        opt.zero_grad()
        masters.masters_to_model()
    assert masters.parameters()[0].item() == pytest.approx(1.1, abs=1e-5)
    assert holder.w.item() == torch.tensor(1.1, dtype=torch.bfloat16).item()
    naive = torch.ones(1, dtype=torch.bfloat16)
    for _ in range(100):
        naive += 1e-3  # the same update, in bf16 alone
    assert naive.item() == 1.0


def test_checkpoint_round_trip_and_fp32_restore() -> None:
    model = _model()
    masters = MasterWeights(model, torch.bfloat16)
    with torch.no_grad():
        for p in masters.parameters():
            p.add_(1e-3)  # values bf16 cannot hold exactly
    saved = trainable_state(masters)
    assert set(saved) == {"2.weight", "2.bias"} and all(t.dtype == torch.float32 for t in saved.values())

    other = _model()
    frozen_before = other[0].weight.detach().clone()
    other_masters = MasterWeights(other, torch.bfloat16)
    load_trainable_state(other_masters, saved)
    other_masters.restore_fp32()
    assert all(p.dtype == torch.float32 for p in other.parameters())
    torch.testing.assert_close(other[2].weight, saved["2.weight"], rtol=0, atol=0)
    torch.testing.assert_close(other[0].weight, frozen_before, rtol=0, atol=0)  # the frozen layer, unrounded
