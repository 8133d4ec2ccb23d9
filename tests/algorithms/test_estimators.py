"""The advantage-estimator table: hand-derived numbers and naive loops for every row."""

from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.algorithms.advantages import (
    ADVANTAGE_ESTIMATORS,
    GROUP_ESTIMATORS,
    AdvantageInputs,
    estimator_hyperparameters,
    gae,
    ppo_token_rewards,
)


def _mask(lengths: list[int], width: int) -> torch.Tensor:
    return (torch.arange(width).unsqueeze(0) < torch.tensor(lengths).unsqueeze(1)).float()


def _outcome(scores: list[float], lengths: list[int], width: int = 4) -> AdvantageInputs:
    mask = _mask(lengths, width)
    rewards = ppo_token_rewards(torch.tensor(scores), torch.zeros(len(scores), width), mask, 0.0)
    return AdvantageInputs(rewards, mask, group_size=len(scores))


def test_eight_samples_three_correct_hand_values() -> None:
    # Rewards 1, 1, 1, 0, 0, 0, 0, 0: mean 3/8 = 0.375.
    # GRPO: Bessel std = sqrt(sum((r - 0.375)^2) / 7) = sqrt((3 * 0.390625 + 5 * 0.140625) / 7)
    #       = sqrt(1.875 / 7) = 0.517549; (1 - 0.375) / 0.517549 = 1.2076, (0 - 0.375) / 0.517549 = -0.7246.
    # RLOO: a correct one sees 2 correct among the 7 others: 1 - 2/7 = 0.7143; a wrong one 3 of 7: -3/7 = -0.4286.
    x = _outcome([1, 1, 1, 0, 0, 0, 0, 0], [2, 3, 4, 1, 2, 3, 4, 4])
    grpo = ADVANTAGE_ESTIMATORS["grpo"](x)
    rloo = ADVANTAGE_ESTIMATORS["rloo"](x)
    for adv, right, wrong in ((grpo, 1.2076, -0.7246), (rloo, 0.7143, -0.4286)):
        for row in range(8):
            expected = right if row < 3 else wrong
            valid = x.mask[row].bool()
            assert adv[row][valid].tolist() == pytest.approx([expected] * int(valid.sum()), abs=1e-4)
            assert adv[row][~valid].abs().sum() == 0  # nothing at padding


def test_grpo_scales_batch_and_none() -> None:
    x = AdvantageInputs(*_outcome([1, 0, 0, 0], [1, 1, 1, 1], width=1)[:2], group_size=2)  # groups [1, 0], [0, 0]
    # batch: centred [0.5, -0.5, 0, 0] / (batch std of [1, 0, 0, 0] = 0.5) = [1, -1, 0, 0]
    batch = ADVANTAGE_ESTIMATORS["grpo"](x, scale_rewards="batch").squeeze(1)
    assert batch.tolist() == pytest.approx([1.0, -1.0, 0.0, 0.0], abs=1e-5)
    none = ADVANTAGE_ESTIMATORS["grpo"](x, scale_rewards="none").squeeze(1)  # Dr. GRPO: centred only
    assert none.tolist() == pytest.approx([0.5, -0.5, 0.0, 0.0])


def _naive_returns(rewards: list[float], gamma: float) -> list[float]:
    out, carry = [], 0.0
    for r in reversed(rewards):
        carry = r + gamma * carry
        out.append(carry)
    return out[::-1]


def _naive_whiten(values: list[float]) -> list[float]:
    mean = sum(values) / len(values)
    var = sum((v - mean) ** 2 for v in values) / (len(values) - 1)
    return [(v - mean) / math.sqrt(var + 1e-8) for v in values]


@pytest.mark.parametrize("baseline", [False, True])
def test_reinforce_pp_matches_a_naive_loop(baseline: bool) -> None:
    g = torch.Generator().manual_seed(0)
    lengths, width, group = [3, 1, 4, 2], 4, 2
    mask = _mask(lengths, width)
    rewards = torch.randn(4, width, generator=g) * mask  # a per-token KL penalty plus the score at the end
    totals = [float(rewards[i, : lengths[i]].sum()) for i in range(4)]
    rows = []
    for i, n in enumerate(lengths):
        r = rewards[i, :n].tolist()
        if baseline:  # the group's mean total reward, subtracted at the last token
            mates = totals[(i // group) * group : (i // group + 1) * group]
            r[-1] -= sum(mates) / group
        rows.append(_naive_returns(r, 0.9))
    flat = _naive_whiten([v for row in rows for v in row])
    name = "reinforce_pp_baseline" if baseline else "reinforce_pp"
    out = ADVANTAGE_ESTIMATORS[name](AdvantageInputs(rewards, mask, group), gamma=0.9)
    got = [out[i, j].item() for i, n in enumerate(lengths) for j in range(n)]
    assert got == pytest.approx(flat, abs=1e-5)
    assert out[mask == 0].abs().sum() == 0


def test_gae_row_is_gae() -> None:
    g = torch.Generator().manual_seed(1)
    rewards, values = torch.randn(2, 3, generator=g), torch.randn(2, 3, generator=g)
    mask = _mask([3, 2], 3)
    row = ADVANTAGE_ESTIMATORS["gae"](AdvantageInputs(rewards, mask, 1, values), gamma=0.9, lam=0.8)
    assert torch.equal(row, gae(rewards, values, mask, 0.9, 0.8)[0])
    with pytest.raises(ValueError, match="critic values"):
        ADVANTAGE_ESTIMATORS["gae"](AdvantageInputs(rewards, mask, 1))


def test_group_rows_validate_and_hyperparameters_are_read_from_signatures() -> None:
    mask = torch.ones(5, 2)
    for name in GROUP_ESTIMATORS:
        with pytest.raises(ValueError, match="multiple of group_size"):
            ADVANTAGE_ESTIMATORS[name](AdvantageInputs(torch.zeros(5, 2), mask, 2))
    assert estimator_hyperparameters("grpo") == {"scale_rewards", "eps"}
    assert estimator_hyperparameters("rloo") == frozenset()
    assert estimator_hyperparameters("reinforce_pp") == {"gamma"}
    assert estimator_hyperparameters("gae") == {"gamma", "lam"}


def test_batch_wide_estimators_on_shards_match_the_whole_batch() -> None:
    """Two processes, each with whole groups: the moments summed over both give the whole batch's numbers."""
    from rlhfkit.algorithms.advantages import returns_to_go
    from rlhfkit.algorithms.common import masked_moments

    g = torch.Generator().manual_seed(2)
    mask = _mask([3, 1, 4, 2], 4)
    rewards = torch.randn(4, 4, generator=g) * mask
    halves = (slice(0, 2), slice(2, 4))
    totals = (rewards * mask).sum(dim=1)

    def moments(name: str, rows: slice) -> torch.Tensor:
        if name == "grpo":
            return masked_moments(totals[rows], torch.ones(2))
        return masked_moments(returns_to_go(rewards[rows], mask[rows]), mask[rows])

    for name, hyper in (("reinforce_pp", {}), ("grpo", {"scale_rewards": "batch"})):
        whole = ADVANTAGE_ESTIMATORS[name](AdvantageInputs(rewards, mask, 2), **hyper)
        parts = []
        for mine, other in (halves, halves[::-1]):
            add_other = lambda m, other=other, name=name: m + moments(name, other)  # noqa: E731
            inputs = AdvantageInputs(rewards[mine], mask[mine], 2, sum_over_processes=add_other)
            parts.append(ADVANTAGE_ESTIMATORS[name](inputs, **hyper))
        torch.testing.assert_close(torch.cat(parts), whole, atol=1e-5, rtol=1e-5)
