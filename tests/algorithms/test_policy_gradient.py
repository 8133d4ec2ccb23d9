"""Loss aggregations and the clipped critic-free loss: hand numbers, naive loops, split invariance."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.algorithms.policy_gradient import LOSS_AGGREGATIONS, RATIOS, StepCounts, clipped_token_loss


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()


LOSS = torch.tensor([[1.0, 2.0, 3.0], [4.0, 0.0, 0.0]])
MASK = _mask([3, 1], 3)
COUNTS = StepCounts(tokens=4, sequences=2, max_tokens=3)


def test_aggregations_hand_values() -> None:
    # token_mean: (1 + 2 + 3 + 4) / 4 tokens = 2.5
    # seq_mean_token_mean: (mean(1, 2, 3) = 2, mean(4) = 4) -> (2 + 4) / 2 = 3
    # seq_mean_token_sum_norm: (6 + 4) / (2 sequences * 3 max tokens) = 10 / 6
    got = {name: float(fn(LOSS, MASK, COUNTS)) for name, fn in LOSS_AGGREGATIONS.items()}
    assert got == pytest.approx({"token_mean": 2.5, "seq_mean_token_mean": 3.0, "seq_mean_token_sum_norm": 10 / 6})


@pytest.mark.parametrize("name", sorted(LOSS_AGGREGATIONS))
def test_any_split_of_a_step_sums_to_the_whole(name: str) -> None:
    """Micro-batches of 1 row each, divided by the whole step's counts, add up to the step's loss."""
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 3, 2, 4, 1]
    mask = _mask(lengths, 5)
    loss = torch.randn(6, 5, generator=g)
    counts = StepCounts(tokens=float(mask.sum()), sequences=6, max_tokens=5)
    fn = LOSS_AGGREGATIONS[name]
    whole = fn(loss, mask, counts)
    parts = sum(fn(loss[i : i + 1], mask[i : i + 1], counts) for i in range(6))
    assert float(parts) == pytest.approx(float(whole), abs=1e-6)
    # and against a naive loop
    if name == "token_mean":
        naive = sum(loss[i, j].item() for i, n in enumerate(lengths) for j in range(n)) / sum(lengths)
    elif name == "seq_mean_token_mean":
        naive = sum(sum(loss[i, :n].tolist()) / n for i, n in enumerate(lengths)) / 6
    else:
        naive = sum(sum(loss[i, :n].tolist()) for i, n in enumerate(lengths)) / (6 * 5)
    assert float(whole) == pytest.approx(naive, abs=1e-6)


def test_asymmetric_clipping_hand_values() -> None:
    # ratios e^(log r): 1.5 and 0.5; eps_low 0.2, eps_high 0.28
    logp = torch.log(torch.tensor([[1.5, 0.5, 1.5, 0.5]]))
    old = torch.zeros(1, 4)
    adv = torch.tensor([[1.0, 1.0, -1.0, -1.0]])
    mask = torch.ones(1, 4)
    out = clipped_token_loss(logp, old, adv, mask, eps_low=0.2, eps_high=0.28)
    # A > 0, r = 1.5: max(-1.5, -1.28) = -1.28 (clipped high); A > 0, r = 0.5: max(-0.5, -0.8) = -0.5
    # A < 0, r = 1.5: max(1.5, 1.28) = 1.5;                    A < 0, r = 0.5: max(0.5, 0.8) = 0.8 (clipped low)
    assert out.loss.tolist()[0] == pytest.approx([-1.28, -0.5, 1.5, 0.8])
    assert out.clip_high.tolist()[0] == [True, False, False, False]
    assert out.clip_low.tolist()[0] == [False, False, False, True]


def test_ratio_one_gives_the_reinforce_gradient() -> None:
    """At ratio 1 (old = current, detached) the loss's gradient is -A * d logp: plain REINFORCE."""
    logp = torch.tensor([[-1.0, -2.0]], requires_grad=True)
    adv = torch.tensor([[0.5, -2.0]])
    out = clipped_token_loss(logp, logp.detach(), adv, torch.ones(1, 2), eps_low=0.2, eps_high=0.2)
    out.loss.sum().backward()
    assert logp.grad is not None and logp.grad.tolist()[0] == pytest.approx([-0.5, 2.0])


def test_sequence_ratio_is_gspo() -> None:
    """GSPO-token: every token carries exp(mean log-ratio of its sequence) and a gradient scaled by it."""
    logp = torch.tensor([[-1.0, -1.0, -3.0]], requires_grad=True)
    old = torch.tensor([[-1.5, -0.5, 0.0]])
    mask = torch.tensor([[1.0, 1.0, 0.0]])
    r = RATIOS["sequence"](logp, old, mask)
    s = math.exp(((-1.0 + 1.5) + (-1.0 + 0.5)) / 2)  # = exp(0) = 1
    assert r[0, :2].tolist() == pytest.approx([s, s])
    r[0, 0].backward()
    assert logp.grad is not None and logp.grad.tolist()[0] == pytest.approx([s, 0.0, 0.0])
    assert torch.equal(RATIOS["token"](logp, old, mask), torch.exp(logp - old))


def test_clipped_loss_validates() -> None:
    z = torch.zeros(1, 2)
    with pytest.raises(ValueError, match="clip bounds"):
        clipped_token_loss(z, z, z, z, eps_low=0.0, eps_high=0.2)
    with pytest.raises(ValueError, match="share one"):
        clipped_token_loss(z, torch.zeros(1, 3), z, z, eps_low=0.2, eps_high=0.2)
