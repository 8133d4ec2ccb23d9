from __future__ import annotations

import pytest
import torch

from rlhfkit.algorithms.advantages import (
    gae,
    grpo_advantages,
    ppo_token_rewards,
    rloo_advantages,
)


def _right_padded_mask(lengths: list[int], width: int) -> torch.Tensor:
    return torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)


def test_ppo_token_rewards_hand_values() -> None:
    scores = torch.tensor([1.0, 2.0])
    kl = torch.tensor([[0.1, 0.2, 0.3], [0.5, 0.5, 9.0]])
    mask = _right_padded_mask([3, 2], 3)
    out = ppo_token_rewards(scores, kl, mask, beta=0.1)
    # row 0: -0.1 * [0.1, 0.2, 0.3] plus score 1 at t=2 -> [-0.01, -0.02, 0.97]
    # row 1: -0.1 * [0.5, 0.5] plus score 2 at t=1 -> [-0.05, 1.95], padding 0
    assert out.tolist()[0] == pytest.approx([-0.01, -0.02, 0.97])
    assert out.tolist()[1] == pytest.approx([-0.05, 1.95, 0.0])


def test_ppo_token_rewards_matches_naive_loop_and_empty_rows() -> None:
    g = torch.Generator().manual_seed(0)
    lengths = [5, 1, 0, 3]
    scores = torch.randn(4, generator=g)
    kl = torch.randn(4, 5, generator=g)
    mask = _right_padded_mask(lengths, 5)
    out = ppo_token_rewards(scores, kl, mask, beta=0.05)
    naive = torch.zeros(4, 5)
    for b, n in enumerate(lengths):
        for t in range(n):
            naive[b, t] = -0.05 * kl[b, t]
        if n > 0:
            naive[b, n - 1] += scores[b]
    assert torch.allclose(out, naive, atol=1e-6)
    assert (out[2] == 0).all()


def test_gae_hand_three_tokens() -> None:
    rewards = torch.tensor([[0.0, 0.0, 1.0]])
    values = torch.tensor([[0.5, 0.6, 0.7]])
    mask = torch.ones(1, 3)
    adv, ret = gae(rewards, values, mask, gamma=1.0, lam=0.5)
    # delta_2 = 1 + 0 - 0.7 = 0.3                        A_2 = 0.3
    # delta_1 = 0 + 0.7 - 0.6 = 0.1                      A_1 = 0.1 + 0.5 * 0.3 = 0.25
    # delta_0 = 0 + 0.6 - 0.5 = 0.1                      A_0 = 0.1 + 0.5 * 0.25 = 0.225
    # returns = A + V = [0.725, 0.85, 1.0]
    assert adv.tolist()[0] == pytest.approx([0.225, 0.25, 0.3])
    assert ret.tolist()[0] == pytest.approx([0.725, 0.85, 1.0])


def _naive_gae(rewards: list[float], values: list[float], gamma: float, lam: float) -> list[float]:
    n = len(rewards)
    adv = [0.0] * n
    for t in range(n):
        total, coef = 0.0, 1.0
        for k in range(t, n):
            next_v = values[k + 1] if k + 1 < n else 0.0
            total += coef * (rewards[k] + gamma * next_v - values[k])
            coef *= gamma * lam
        adv[t] = total
    return adv


def test_gae_matches_naive_per_row_loop_with_ragged_rows() -> None:
    g = torch.Generator().manual_seed(1)
    lengths, width, gamma, lam = [6, 3, 1, 0, 4], 6, 0.9, 0.8
    rewards = torch.randn(5, width, generator=g)
    values = torch.randn(5, width, generator=g)
    mask = _right_padded_mask(lengths, width)
    adv, ret = gae(rewards, values, mask, gamma, lam)
    for b, n in enumerate(lengths):
        expected = _naive_gae(rewards[b, :n].tolist(), values[b, :n].tolist(), gamma, lam)
        assert adv[b, :n].tolist() == pytest.approx(expected, abs=1e-5)
        expected_returns = [a + v for a, v in zip(expected, values[b, :n].tolist(), strict=True)]
        assert ret[b, :n].tolist() == pytest.approx(expected_returns, abs=1e-5)
        assert (adv[b, n:] == 0).all() and (ret[b, n:] == 0).all()


def test_gae_ignores_padding_values() -> None:
    g = torch.Generator().manual_seed(2)
    rewards, values = torch.randn(3, 5, generator=g), torch.randn(3, 5, generator=g)
    mask = _right_padded_mask([5, 2, 4], 5)
    adv, ret = gae(rewards, values, mask, 0.99, 0.95)
    junk_r = torch.where(mask, rewards, torch.full_like(rewards, 1e3))
    junk_v = torch.where(mask, values, torch.full_like(values, -1e3))
    adv2, ret2 = gae(junk_r, junk_v, mask, 0.99, 0.95)
    assert torch.equal(adv, adv2) and torch.equal(ret, ret2)


def test_gae_and_token_rewards_work_with_left_padding() -> None:
    g = torch.Generator().manual_seed(5)
    rewards, values, kl = (torch.randn(2, 4, generator=g) for _ in range(3))
    scores = torch.randn(2, generator=g)
    right = _right_padded_mask([3, 2], 4)
    left = right.flip(1)

    def shift(x: torch.Tensor) -> torch.Tensor:  # move each row's valid prefix to the end
        return torch.stack([torch.roll(x[0], 1), torch.roll(x[1], 2)])

    adv_r, ret_r = gae(rewards, values, right, 0.9, 0.7)
    adv_l, ret_l = gae(shift(rewards), shift(values), left, 0.9, 0.7)
    assert torch.allclose(shift(adv_r), adv_l, atol=1e-6) and torch.allclose(shift(ret_r), ret_l, atol=1e-6)
    tok_r = ppo_token_rewards(scores, kl, right, 0.1)
    assert torch.allclose(shift(tok_r), ppo_token_rewards(scores, shift(kl), left, 0.1), atol=1e-6)


def test_gae_lambda_one_is_monte_carlo_return_minus_value() -> None:
    # gamma = lam = 1: A_t = sum_{k >= t} r_k - V_t
    rewards = torch.tensor([[1.0, 2.0, 3.0]])
    values = torch.tensor([[0.5, 0.5, 0.5]])
    adv, ret = gae(rewards, values, torch.ones(1, 3), 1.0, 1.0)
    assert adv.tolist()[0] == pytest.approx([5.5, 4.5, 2.5])
    assert ret.tolist()[0] == pytest.approx([6.0, 5.0, 3.0])


def test_gae_validates() -> None:
    with pytest.raises(ValueError):
        gae(torch.zeros(1, 2), torch.zeros(1, 2), torch.ones(1, 2), gamma=1.5, lam=0.9)
    with pytest.raises(ValueError):
        gae(torch.zeros(1, 2), torch.zeros(1, 3), torch.ones(1, 2), gamma=1.0, lam=0.9)


def test_grpo_hand_values() -> None:
    # group [1, 2, 3]: mean 2, unbiased std 1 -> [-1, 0, 1]
    # group [0, 0, 1, 1] (second call): mean 0.5, std sqrt(4 * 0.25 / 3) = 0.57735 -> +-0.866025
    out = grpo_advantages(torch.tensor([1.0, 2.0, 3.0, 5.0, 5.0, 5.0]), group_size=3)
    assert out.tolist() == pytest.approx([-1.0, 0.0, 1.0, 0.0, 0.0, 0.0], abs=1e-5)
    out = grpo_advantages(torch.tensor([0.0, 0.0, 1.0, 1.0]), group_size=4)
    assert out.tolist() == pytest.approx([-0.866025, -0.866025, 0.866025, 0.866025], abs=1e-5)
    unscaled = grpo_advantages(torch.tensor([0.0, 0.0, 1.0, 1.0]), group_size=4, scale="none")
    assert unscaled.tolist() == pytest.approx([-0.5, -0.5, 0.5, 0.5])


def test_grpo_and_rloo_match_naive_loops() -> None:
    g = torch.Generator().manual_seed(3)
    group_size = 4
    scores = torch.randn(3 * group_size, generator=g)
    grpo, rloo = grpo_advantages(scores, group_size), rloo_advantages(scores, group_size)
    for start in range(0, scores.numel(), group_size):
        group = scores[start : start + group_size].tolist()
        mean = sum(group) / group_size
        std = (sum((x - mean) ** 2 for x in group) / (group_size - 1)) ** 0.5
        for i, r in enumerate(group):
            assert grpo[start + i].item() == pytest.approx((r - mean) / (std + 1e-6), abs=1e-5)
            others = [x for j, x in enumerate(group) if j != i]
            assert rloo[start + i].item() == pytest.approx(r - sum(others) / len(others), abs=1e-5)


def test_rloo_hand_values() -> None:
    # [1, 2, 3]: 1 - (2+3)/2 = -1.5, 2 - (1+3)/2 = 0, 3 - (1+2)/2 = 1.5
    assert rloo_advantages(torch.tensor([1.0, 2.0, 3.0]), 3).tolist() == pytest.approx([-1.5, 0.0, 1.5])


def test_group_estimators_validate_layout() -> None:
    for fn in (grpo_advantages, rloo_advantages):
        with pytest.raises(ValueError):
            fn(torch.zeros(5), 2)
        with pytest.raises(ValueError):
            fn(torch.zeros(4), 1)
