"""Rollout container and score shaping: hand-derived numbers and naive reference versions."""

from __future__ import annotations

import math
import random

import pytest
import torch

from rlhfkit.rollout.experience import (
    Rollout,
    RunningMoments,
    apply_no_eos_rule,
    compact,
    concat_samples,
    normalize_scores,
    shape_scores,
)
from rlhfkit.rollout.generate import Samples


def test_running_moments_hand_numbers() -> None:
    m = RunningMoments()
    m.update(torch.tensor([1.0, 3.0]))
    m.update(torch.tensor([5.0]))
    # all values 1, 3, 5: mean 3, squared deviations 4 + 0 + 4 = 8, unbiased var 8 / 2 = 4, std 2
    assert (m.count, m.mean, m.m2, m.std) == (3, pytest.approx(3.0), pytest.approx(8.0), pytest.approx(2.0))


def test_running_moments_match_a_naive_two_pass_over_everything() -> None:
    rng = random.Random(0)
    m = RunningMoments()
    seen: list[float] = []
    for _ in range(20):
        batch = [rng.gauss(1e4, 3.0) for _ in range(rng.randint(1, 9))]  # a large offset: the naive
        seen.extend(batch)  # sum-of-squares formula would lose digits here; the merge must not
        m.update(torch.tensor(batch, dtype=torch.float64))
        mean = 0.0
        for x in seen:
            mean += x
        mean /= len(seen)
        ss = 0.0
        for x in seen:
            ss += (x - mean) ** 2
        assert m.mean == pytest.approx(mean, rel=1e-12)
        if len(seen) > 1:
            assert m.std == pytest.approx(math.sqrt(ss / (len(seen) - 1)), rel=1e-9)
    restored = RunningMoments()
    restored.load_state_dict(m.state_dict())
    assert restored == m


def test_normalize_and_no_eos_rule_hand_numbers() -> None:
    m = RunningMoments(count=3, mean=3.0, m2=8.0)  # std 2
    s = torch.tensor([5.0, 1.0])
    assert normalize_scores(s, m).tolist() == pytest.approx([1.0, -1.0])  # (5-3)/2, (1-3)/2
    assert normalize_scores(s, m, shift=False).tolist() == pytest.approx([2.5, 0.5])
    ended = torch.tensor([True, False])
    assert apply_no_eos_rule(s, ended, replace=-1.0, penalty=0.0).tolist() == [5.0, -1.0]
    assert apply_no_eos_rule(s, ended, replace=None, penalty=2.0).tolist() == [5.0, -1.0]  # 1 - 2


def test_shape_scores_order_normalize_then_no_eos_then_clip() -> None:
    raw = torch.tensor([0.0, 10.0, 20.0, 30.0])
    ended = torch.tensor([True, True, True, False])
    out = shape_scores(raw, ended, RunningMoments(), no_eos_score=None, no_eos_penalty=1.0, clip=1.2)
    # mean 15, unbiased std sqrt(500/3) = 12.91: z = -1.162, -0.387, 0.387, 1.162; the last loses 1 -> 0.162
    z = [(x - 15.0) / math.sqrt(500 / 3) for x in (0.0, 10.0, 20.0, 30.0)]
    assert out.tolist() == pytest.approx([z[0], z[1], z[2], z[3] - 1.0], rel=1e-5)
    clipped = shape_scores(raw * 10, ended, None, no_eos_score=-3.0, no_eos_penalty=0.0, clip=5.0)
    assert clipped.tolist() == [0.0, 5.0, 5.0, -3.0]


def _rollout(attention: list[list[int]], response: list[list[int]]) -> Rollout:
    att = torch.tensor(attention)
    rmask = torch.tensor(response)
    b, r = rmask.shape
    per_token = torch.arange(b * r, dtype=torch.float32).view(b, r)
    per_row = torch.arange(b, dtype=torch.float32)
    ids = torch.arange(att.numel()).view(att.shape)
    return Rollout(
        ids,
        att,
        rmask,
        per_token,
        per_token + 1,
        per_token + 2,
        per_token + 3,
        per_row,
        per_row + 1,
        per_token + 4,
        per_token + 5,
        per_token + 6,
        torch.ones(b, dtype=torch.bool),
    )


def test_select_drops_columns_that_are_padding_in_every_row() -> None:
    # 3 prompt columns + 4 response columns; rows 1 and 2 only use prompt columns 1-2 and 3 response tokens.
    ro = _rollout(
        [[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0, 0]],
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]],
    )
    assert ro.response_start == 3
    part = ro.select(torch.tensor([2, 1]))
    assert part.response_start == 2 and part.response_mask.tolist() == [[1, 0, 0], [1, 1, 1]]
    assert part.input_ids.tolist() == [[15, 16, 17, 18, 19], [8, 9, 10, 11, 12]]
    assert part.logps.tolist() == [[8.0, 9.0, 10.0], [4.0, 5.0, 6.0]]
    assert part.scores.tolist() == [2.0, 1.0]
    assert compact(ro).input_ids.shape == ro.input_ids.shape  # row 0 uses every column
    assert ro.trunk is None and part.trunk is None


def test_select_cuts_the_cached_trunk_like_the_token_columns() -> None:
    ro = _rollout(
        [[1, 1, 1, 1, 1, 1, 1], [0, 1, 1, 1, 1, 1, 0], [0, 0, 1, 1, 0, 0, 0]],
        [[1, 1, 1, 1], [1, 1, 1, 0], [1, 0, 0, 0]],
    )
    trunk = torch.arange(3 * 7 * 2, dtype=torch.float32).view(3, 7, 2)  # (B, P + R, H)
    part = ro._replace(trunk=trunk).select(torch.tensor([2, 1]))
    # rows 2 and 1, columns 1..5 (the same columns as input_ids above)
    torch.testing.assert_close(part.trunk, trunk[[2, 1], 1:6])


def test_concat_samples_repads_both_sides() -> None:
    a = Samples(
        torch.tensor([[7, 8]]),
        torch.tensor([[1, 1]]),
        torch.tensor([[3]]),
        torch.tensor([[1]]),
        torch.tensor([True]),
        ["x"],
        0,
    )
    b = Samples(
        torch.tensor([[9]]),
        torch.tensor([[1]]),
        torch.tensor([[4, 5]]),
        torch.tensor([[1, 1]]),
        torch.tensor([False]),
        ["y"],
        1,
    )
    out = concat_samples([a, b], pad_id=0)
    assert out.prompt_ids.tolist() == [[7, 8], [0, 9]] and out.prompt_mask.tolist() == [[1, 1], [0, 1]]
    assert out.response_ids.tolist() == [[3, 0], [4, 5]] and out.response_mask.tolist() == [[1, 0], [1, 1]]
    assert out.ended.tolist() == [True, False] and out.texts == ["x", "y"] and out.prompts_truncated == 1
