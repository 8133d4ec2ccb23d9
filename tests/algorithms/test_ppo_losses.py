from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.algorithms.ppo_losses import (
    explained_variance_from_sums,
    explained_variance_sums,
    policy_loss_clipped,
    value_loss_clipped,
)


def _one(x: float) -> torch.Tensor:
    return torch.tensor([[x]])


def test_policy_loss_hand_values() -> None:
    old = _one(0.0)
    logp = _one(math.log(1.5))  # ratio 1.5
    mask = torch.ones(1, 1)
    # A = +1: unclipped -1.5, clipped -1.2 -> max = -1.2, the clipped term is active
    out = policy_loss_clipped(logp, old, _one(1.0), mask, clip_eps=0.2)
    assert out.loss.item() == pytest.approx(-1.2)
    assert out.clip_frac.item() == pytest.approx(1.0)
    # approx_kl = 0.5 * ln(1.5)^2 = 0.5 * 0.164402 = 0.082201
    assert out.approx_kl.item() == pytest.approx(0.5 * math.log(1.5) ** 2)
    # A = -1: unclipped 1.5, clipped 1.2 -> max = 1.5, no clipping (pessimistic bound)
    out = policy_loss_clipped(logp, old, _one(-1.0), mask, clip_eps=0.2)
    assert out.loss.item() == pytest.approx(1.5)
    assert out.clip_frac.item() == 0.0


def test_policy_loss_at_ratio_one_is_minus_mean_advantage() -> None:
    logp = torch.tensor([[-1.0, -2.0, -3.0]])
    adv = torch.tensor([[1.0, 2.0, 30.0]])
    mask = torch.tensor([[1, 1, 0]])
    out = policy_loss_clipped(logp, logp.clone(), adv, mask, 0.2)
    assert out.loss.item() == pytest.approx(-1.5)  # -(1 + 2) / 2
    assert out.approx_kl.item() == 0.0


def _naive_policy_loss(
    logp: torch.Tensor, old: torch.Tensor, adv: torch.Tensor, mask: torch.Tensor, eps: float
) -> float:
    total, count = 0.0, 0
    for b in range(logp.shape[0]):
        for t in range(logp.shape[1]):
            if mask[b, t]:
                ratio = math.exp(logp[b, t].item() - old[b, t].item())
                a = adv[b, t].item()
                total += max(-a * ratio, -a * min(max(ratio, 1 - eps), 1 + eps))
                count += 1
    return total / count


def test_policy_loss_matches_naive_loop_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(0)
    old = -torch.rand(4, 6, generator=g) * 3
    logp = old + torch.randn(4, 6, generator=g) * 0.3
    adv = torch.randn(4, 6, generator=g)
    mask = torch.rand(4, 6, generator=g) > 0.3
    out = policy_loss_clipped(logp, old, adv, mask, 0.2)
    assert out.loss.item() == pytest.approx(_naive_policy_loss(logp, old, adv, mask, 0.2), abs=1e-5)
    junk = torch.where(mask, logp, torch.full_like(logp, 50.0))
    assert policy_loss_clipped(junk, old, adv, mask, 0.2).loss.item() == pytest.approx(out.loss.item())


def test_policy_loss_gradient_zero_when_clipped() -> None:
    old = torch.zeros(1, 2)
    # token 0: ratio 1.5 with A > 0 (clipped -> no gradient); token 1: ratio 1.0 (gradient -A / N)
    logp = torch.tensor([[math.log(1.5), 0.0]], requires_grad=True)
    adv = torch.tensor([[1.0, 2.0]])
    policy_loss_clipped(logp, old, adv, torch.ones(1, 2), 0.2).loss.backward()
    # d/dlogp of -A * exp(logp - old) / 2 at ratio 1 = -2 / 2 = -1
    assert logp.grad.tolist()[0] == pytest.approx([0.0, -1.0])


def test_value_loss_hand_values() -> None:
    mask = torch.ones(1, 1)
    # v 1.5, old 1.0, R 2.0, eps 0.2: v_clip = 1.2; (1.5-2)^2 = 0.25, (1.2-2)^2 = 0.64 -> 0.5 * 0.64 = 0.32
    out = value_loss_clipped(_one(1.5), _one(1.0), _one(2.0), mask, 0.2)
    assert out.loss.item() == pytest.approx(0.32)
    assert out.clip_frac.item() == 1.0
    # v 1.1 inside the clip range: 0.5 * (1.1 - 2)^2 = 0.405
    out = value_loss_clipped(_one(1.1), _one(1.0), _one(2.0), mask, 0.2)
    assert out.loss.item() == pytest.approx(0.405)
    assert out.clip_frac.item() == 0.0


def test_value_loss_matches_naive_loop_and_ignores_padding() -> None:
    g = torch.Generator().manual_seed(1)
    values, old, returns = (torch.randn(3, 5, generator=g) for _ in range(3))
    mask = torch.rand(3, 5, generator=g) > 0.3
    out = value_loss_clipped(values, old, returns, mask, 0.2)
    total, count = 0.0, 0
    for b in range(3):
        for t in range(5):
            if mask[b, t]:
                v, o, r = values[b, t].item(), old[b, t].item(), returns[b, t].item()
                vc = o + min(max(v - o, -0.2), 0.2)
                total += 0.5 * max((v - r) ** 2, (vc - r) ** 2)
                count += 1
    assert out.loss.item() == pytest.approx(total / count, abs=1e-5)
    junk = torch.where(mask, values, torch.full_like(values, 1e4))
    assert value_loss_clipped(junk, old, returns, mask, 0.2).loss.item() == pytest.approx(out.loss.item())


def explained_variance(values: torch.Tensor, returns: torch.Tensor, mask: torch.Tensor) -> float:
    return explained_variance_from_sums(explained_variance_sums(values, returns, mask))


def test_explained_variance() -> None:
    returns = torch.tensor([[1.0, 2.0, 3.0, 4.0]])
    mask = torch.ones(1, 4)
    assert explained_variance(returns.clone(), returns, mask) == pytest.approx(1.0)
    # predicting the mean 2.5 everywhere: Var[R - 2.5] = Var[R] -> 1 - 1 = 0
    assert explained_variance(torch.full_like(returns, 2.5), returns, mask) == pytest.approx(0.0)
    # V = R - [1, -1, 1, -1]: Var[R - V] = 4/3 (unbiased), Var[R] = 5/3 -> 1 - 0.8 = 0.2
    values = returns - torch.tensor([[1.0, -1.0, 1.0, -1.0]])
    assert explained_variance(values, returns, mask) == pytest.approx(0.2)
    assert math.isnan(explained_variance(returns, torch.ones(1, 4), mask))
    assert math.isnan(explained_variance(returns, torch.full((1, 4), 1e6), mask))  # constant, large


def test_explained_variance_of_a_step_split_over_processes() -> None:
    """Summed over two processes, the sums give the whole step's value, even where one process's returns
    are all equal (its own explained variance is undefined)."""
    torch.manual_seed(0)
    values, mask = torch.randn(4, 5), torch.ones(4, 5)
    mask[1, 3:] = 0
    returns = torch.cat([torch.full((2, 5), 0.7), torch.randn(2, 5)])
    whole = explained_variance(values, returns, mask)
    halves = [explained_variance_sums(values[i : i + 2], returns[i : i + 2], mask[i : i + 2]) for i in (0, 2)]
    assert math.isnan(explained_variance(values[:2], returns[:2], mask[:2]))
    assert explained_variance_from_sums([a + b for a, b in zip(*halves, strict=True)]) == pytest.approx(whole)
    # and against the unbiased masked variances directly (Bessel cancels in the ratio)
    from rlhfkit.algorithms.common import masked_var

    expected = 1 - masked_var(returns - values, mask) / masked_var(returns, mask)
    assert whole == pytest.approx(expected.item(), rel=1e-6)


def test_losses_validate() -> None:
    x = torch.zeros(1, 2)
    with pytest.raises(ValueError):
        policy_loss_clipped(x, x, x, torch.ones(1, 2), 0.0)
    with pytest.raises(ValueError):
        value_loss_clipped(x, x, torch.zeros(1, 3), torch.ones(1, 2), 0.2)
