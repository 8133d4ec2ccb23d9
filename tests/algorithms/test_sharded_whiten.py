"""Whitening shards with the summed moments of their union equals whitening the union (PPO on several
processes whitens rewards and advantages over the whole batch, not each process's share)."""

from __future__ import annotations

import pytest
import torch

from rlhfkit.algorithms.common import masked_moments, masked_whiten, whiten_with_moments


def test_moments_by_hand() -> None:
    x = torch.tensor([[1.0, 2.0, 9.0], [3.0, 0.0, 0.0]])
    mask = torch.tensor([[1, 1, 0], [1, 0, 0]])
    # valid: 1, 2, 3 -> sum 6, squares 1 + 4 + 9 = 14, count 3
    assert masked_moments(x, mask).tolist() == [6.0, 14.0, 3.0]


def test_unbiased_variance_by_hand() -> None:
    x = torch.tensor([[1.0, 2.0, 3.0]])
    mask = torch.ones(1, 3)
    # mean 2, unbiased variance ((1 + 0 + 1) / 2) = 1: whitened = x - 2
    out = whiten_with_moments(x, mask, masked_moments(x, mask))
    assert out[0].tolist() == pytest.approx([-1.0, 0.0, 1.0], abs=1e-6)


@pytest.mark.parametrize("shift_mean", [True, False])
def test_two_shards_whitened_together_equal_the_whole(shift_mean: bool) -> None:
    g = torch.Generator().manual_seed(0)
    x = torch.randn(6, 5, generator=g) * 3 + 1
    mask = (torch.rand(6, 5, generator=g) > 0.3).long()
    whole = masked_whiten(x, mask, shift_mean=shift_mean)
    shards = [(x[:3], mask[:3]), (x[3:], mask[3:])]
    total = sum(masked_moments(xs, ms) for xs, ms in shards)  # what an all-reduce over 2 processes gives
    parts = [whiten_with_moments(xs, ms, total, shift_mean=shift_mean) for xs, ms in shards]
    torch.testing.assert_close(torch.cat(parts), whole, rtol=1e-5, atol=1e-5)
    one_shard = whiten_with_moments(x, mask, masked_moments(x, mask), shift_mean=shift_mean)
    torch.testing.assert_close(one_shard, whole, rtol=1e-5, atol=1e-5)


def test_fewer_than_two_positions_is_an_error() -> None:
    with pytest.raises(ValueError, match="at least 2"):
        whiten_with_moments(
            torch.ones(1, 2), torch.tensor([[1, 0]]), masked_moments(torch.ones(1, 2), torch.tensor([[1, 0]]))
        )
