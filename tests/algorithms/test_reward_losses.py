from __future__ import annotations

import itertools
import math

import pytest
import torch
import torch.nn.functional as F

from rlhfkit.algorithms.reward_losses import (
    PAIRWISE_LOSSES,
    RANKING_LOSSES,
    RATING_LOSSES,
    all_pairs_bradley_terry,
    bradley_terry,
    bradley_terry_ties,
    davidson,
    increasing_thresholds,
    ordinal_thresholds,
    plackett_luce,
    rating_regression,
    reward_centering,
)

BT_1 = math.log1p(math.exp(-1.0))  # -log sigmoid(1) = 0.313262
BT_2 = math.log1p(math.exp(-2.0))  # -log sigmoid(2) = 0.126928


def test_bradley_terry_hand_values() -> None:
    out = bradley_terry(torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0]), margin=torch.tensor([0.0, 1.0]))
    # d = 1 - 0 = 1 -> 0.313262; with margin 1: -log sigmoid(0) = ln 2 = 0.693147
    assert out.tolist() == pytest.approx([BT_1, math.log(2)])
    assert bradley_terry(torch.tensor([1.0]), torch.tensor([0.0])).item() == pytest.approx(BT_1)


def test_bradley_terry_equals_trl_reward_trainer_formula() -> None:
    g = torch.Generator().manual_seed(0)
    rc, rr, margin = (torch.randn(16, generator=g) * 3 for _ in range(3))
    # TRL RewardTrainer: mean of -logsigmoid(rewards_chosen - rewards_rejected - margin)
    trl = -F.logsigmoid(rc - rr - margin).mean()
    assert bradley_terry(rc, rr, margin).mean().item() == pytest.approx(trl.item(), abs=1e-5)
    trl_no_margin = -F.logsigmoid(rc - rr).mean()
    assert bradley_terry(rc, rr).mean().item() == pytest.approx(trl_no_margin.item(), abs=1e-5)


def test_bradley_terry_gradient_pushes_chosen_up() -> None:
    rc = torch.tensor([0.3], requires_grad=True)
    rr = torch.tensor([0.5], requires_grad=True)
    bradley_terry(rc, rr).sum().backward()
    # dL/dr_c = -sigmoid(r_r - r_c) = -sigmoid(0.2) = -0.549834; a descent step raises r_c
    assert rc.grad.item() == pytest.approx(-1 / (1 + math.exp(-0.2)))
    assert rr.grad.item() == pytest.approx(1 / (1 + math.exp(-0.2)))


def test_ties_half_hand_values_and_gradient() -> None:
    r_a = torch.tensor([1.0, 1.0, 0.0], requires_grad=True)
    r_b = torch.tensor([0.0, 0.0, 0.0])
    tie = torch.tensor([False, True, True])
    out = bradley_terry_ties(r_a, r_b, tie)
    # non-tie d=1: 0.313262; tie d=1: 0.5 * (0.313262 + 1.313262) = 0.813262; tie d=0: ln 2
    assert out.tolist() == pytest.approx([BT_1, 0.5 * (BT_1 + BT_1 + 1.0), math.log(2)])
    out.sum().backward()
    # tie row at d = 1: gradient 0.5 * (sigmoid(1) - sigmoid(-1)) = 0.231059 > 0 pulls d back to 0
    assert r_a.grad[1].item() == pytest.approx(0.5 * (1 / (1 + math.exp(-1)) - 1 / (1 + math.exp(1))))
    assert r_a.grad[2].item() == pytest.approx(0.0)


def test_ties_margin_only_applies_to_non_ties() -> None:
    r_a, r_b = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    margin = torch.tensor([1.0, 1.0])
    out = bradley_terry_ties(r_a, r_b, torch.tensor([False, True]), margin)
    assert out.tolist() == pytest.approx([math.log(2), 0.5 * (BT_1 + BT_1 + 1.0)])


def test_davidson_hand_values() -> None:
    # r_a = r_b = 0, nu = 1: D = 1 + 1 + 1 = 3, every outcome has probability 1/3 -> ln 3
    zero = torch.zeros(2)
    out = davidson(zero, zero, torch.tensor([False, True]), torch.tensor(0.0))
    assert out.tolist() == pytest.approx([math.log(3), math.log(3)])
    # r_a = 1, r_b = 0, nu = 2: D = e + 1 + 2 e^0.5 = 7.015724
    # P(a > b) = e / D -> 0.948154;  P(tie) = 2 e^0.5 / D -> 0.755007
    r_a, r_b = torch.tensor([1.0, 1.0]), torch.tensor([0.0, 0.0])
    out = davidson(r_a, r_b, torch.tensor([False, True]), torch.tensor(math.log(2.0)))
    assert out.tolist() == pytest.approx([0.948154, 0.755007], abs=1e-6)


def test_davidson_probabilities_sum_to_one_and_reduce_to_bt() -> None:
    g = torch.Generator().manual_seed(1)
    r_a, r_b = torch.randn(8, generator=g) * 2, torch.randn(8, generator=g) * 2
    log_nu = torch.tensor(0.3)
    no, yes = torch.zeros(8, dtype=torch.bool), torch.ones(8, dtype=torch.bool)
    total = (-davidson(r_a, r_b, no, log_nu)).exp() + (-davidson(r_b, r_a, no, log_nu)).exp()
    total = total + (-davidson(r_a, r_b, yes, log_nu)).exp()
    assert torch.allclose(total, torch.ones(8), atol=1e-6)
    # nu -> 0 removes ties: the model is Bradley-Terry
    bt_limit = davidson(r_a, r_b, no, torch.tensor(-40.0))
    assert torch.allclose(bt_limit, bradley_terry(r_a, r_b), atol=1e-6)


def test_davidson_gradient_on_log_nu() -> None:
    log_nu = torch.tensor(0.0, requires_grad=True)
    davidson(torch.zeros(1), torch.zeros(1), torch.tensor([True]), log_nu).sum().backward()
    # observing a tie makes ties likelier: dL/dlog_nu = -(1 - P(tie)) = -2/3
    assert log_nu.grad.item() == pytest.approx(-2.0 / 3.0)


def _naive_plackett_luce(row: list[float]) -> float:
    loss = 0.0
    for k in range(len(row)):
        loss -= row[k] - math.log(sum(math.exp(s) for s in row[k:]))
    return loss


def test_plackett_luce_hand_value_and_bt_special_case() -> None:
    # [2, 1, 0]: -(2 - ln(e^2 + e + 1)) - (1 - ln(e + 1)) - 0 = 0.407606 + 0.313262 = 0.720868
    assert plackett_luce(torch.tensor([[2.0, 1.0, 0.0]])).item() == pytest.approx(0.720868, abs=1e-6)
    g = torch.Generator().manual_seed(2)
    scores = torch.randn(5, 2, generator=g)
    assert torch.allclose(plackett_luce(scores), bradley_terry(scores[:, 0], scores[:, 1]), atol=1e-6)


def test_plackett_luce_matches_naive_loop_with_masks() -> None:
    g = torch.Generator().manual_seed(3)
    scores = torch.randn(6, 5, generator=g) * 2
    mask = torch.rand(6, 5, generator=g) > 0.35
    mask[0] = False  # an empty ranking gives 0
    out = plackett_luce(scores, mask)
    for b in range(6):
        row = [scores[b, k].item() for k in range(5) if mask[b, k]]
        assert out[b].item() == pytest.approx(_naive_plackett_luce(row), abs=1e-5)
    junk = torch.where(mask, scores, torch.full_like(scores, 1e3))
    assert torch.allclose(plackett_luce(junk, mask), out)


def test_plackett_luce_gradient_finite_with_masks_and_prefers_top() -> None:
    scores = torch.tensor([[0.0, 0.0, 0.0], [1.0, 2.0, 0.0]], requires_grad=True)
    mask = torch.tensor([[1, 1, 1], [1, 1, 0]], dtype=torch.bool)
    plackett_luce(scores, mask).sum().backward()
    assert torch.isfinite(scores.grad).all()
    assert scores.grad[0, 0] < 0 < scores.grad[0, 2]  # best pushed up, worst pushed down
    assert scores.grad[1, 2].item() == 0.0  # absent item gets no gradient


def test_all_pairs_hand_value_and_naive_loop() -> None:
    # [2, 1, 0]: pairs (0,1) d=1, (0,2) d=2, (1,2) d=1 -> (0.313262 * 2 + 0.126928) / 3 = 0.251150
    assert all_pairs_bradley_terry(torch.tensor([[2.0, 1.0, 0.0]])).item() == pytest.approx((2 * BT_1 + BT_2) / 3)
    g = torch.Generator().manual_seed(4)
    scores = torch.randn(6, 4, generator=g)
    mask = torch.rand(6, 4, generator=g) > 0.3
    out = all_pairs_bradley_terry(scores, mask)
    for b in range(6):
        row = [scores[b, k].item() for k in range(4) if mask[b, k]]
        pairs = list(itertools.combinations(range(len(row)), 2))
        expected = sum(math.log1p(math.exp(-(row[i] - row[j]))) for i, j in pairs) / max(len(pairs), 1)
        assert out[b].item() == pytest.approx(expected, abs=1e-5)
    two = torch.randn(5, 2, generator=g)
    assert torch.allclose(all_pairs_bradley_terry(two), bradley_terry(two[:, 0], two[:, 1]), atol=1e-6)


def test_rating_regression() -> None:
    # rating 4 on a 1..5 scale -> target (4 - 1) / 4 = 0.75; (0.5 - 0.75)^2 = 0.0625
    assert rating_regression(torch.tensor([0.5]), torch.tensor([4]), 1, 5).item() == pytest.approx(0.0625)
    with pytest.raises(ValueError):
        rating_regression(torch.zeros(1), torch.zeros(1), 5, 5)


def test_increasing_thresholds() -> None:
    # raw [0, 0, 0] -> [0, softplus(0), 2 softplus(0)] = [0, ln 2, 2 ln 2]
    out = increasing_thresholds(torch.zeros(3))
    assert out.tolist() == pytest.approx([0.0, math.log(2), 2 * math.log(2)])
    raw = torch.randn(6, generator=torch.Generator().manual_seed(5)) * 3
    th = increasing_thresholds(raw)
    assert (th[1:] > th[:-1]).all()


def test_ordinal_hand_values() -> None:
    thresholds = torch.tensor([-1.0, 1.0])  # three classes
    pred = torch.zeros(3)
    out = ordinal_thresholds(pred, torch.tensor([0, 1, 2]), thresholds)
    # P(0) = sigmoid(-1) = 0.268941 -> 1.313262
    # P(1) = sigmoid(1) - sigmoid(-1) = 0.462117 -> 0.771937
    # P(2) = 1 - sigmoid(1) = 0.268941 -> 1.313262
    assert out.tolist() == pytest.approx([1.313262, 0.771937, 1.313262], abs=1e-6)


def test_ordinal_matches_naive_probabilities_and_sums_to_one() -> None:
    g = torch.Generator().manual_seed(6)
    thresholds = increasing_thresholds(torch.randn(4, generator=g))
    pred = torch.randn(7, generator=g) * 2
    n_classes = 5
    total = torch.zeros(7, dtype=torch.float64)
    cuts = [-math.inf, *thresholds.tolist(), math.inf]
    for c in range(n_classes):
        nll = ordinal_thresholds(pred, torch.full((7,), c), thresholds)
        total += (-nll.double()).exp()
        for b in range(7):
            f = pred[b].item()
            sig = lambda z: 1.0 / (1.0 + math.exp(-z)) if math.isfinite(z) else float(z > 0)  # noqa: E731
            p = sig(cuts[c + 1] - f) - sig(cuts[c] - f)
            assert nll[b].item() == pytest.approx(-math.log(p), rel=1e-4)
    assert torch.allclose(total, torch.ones(7, dtype=torch.float64), atol=1e-5)


def test_ordinal_gradients_are_finite_and_point_the_right_way() -> None:
    raw = torch.zeros(2, requires_grad=True)
    pred = torch.zeros(3, requires_grad=True)
    ordinal_thresholds(pred, torch.tensor([0, 1, 2]), increasing_thresholds(raw)).sum().backward()
    assert torch.isfinite(pred.grad).all() and torch.isfinite(raw.grad).all()
    assert pred.grad[0] > 0 > pred.grad[2]  # lowest class lowers the reward, highest raises it


def test_ordinal_validates() -> None:
    with pytest.raises(ValueError):
        ordinal_thresholds(torch.zeros(1), torch.tensor([0]), torch.tensor([1.0, 0.0]))
    with pytest.raises(ValueError):
        ordinal_thresholds(torch.zeros(1), torch.tensor([3]), torch.tensor([0.0, 1.0]))


def test_reward_centering_matches_trl() -> None:
    # r_c + r_r = [0, 2] -> mean of squares (0 + 4) / 2 = 2 -> 0.01 * 2 = 0.02
    rc, rr = torch.tensor([1.0, 2.0]), torch.tensor([-1.0, 0.0])
    assert reward_centering(rc, rr, coef=0.01).item() == pytest.approx(0.02)
    g = torch.Generator().manual_seed(7)
    rc, rr = torch.randn(9, generator=g), torch.randn(9, generator=g)
    trl = 0.05 * torch.mean((rc + rr) ** 2)  # TRL center_rewards_coefficient term
    assert reward_centering(rc, rr, coef=0.05).item() == pytest.approx(trl.item(), abs=1e-7)
    # single rewards: coef * mean(r^2); [1, 3] -> 0.01 * 5 = 0.05
    assert reward_centering(torch.tensor([1.0, 3.0])).item() == pytest.approx(0.05)


def test_tables() -> None:
    assert set(PAIRWISE_LOSSES) == {"bradley_terry", "ties_half", "davidson"}
    assert set(RANKING_LOSSES) == {"plackett_luce", "all_pairs"}
    assert set(RATING_LOSSES) == {"regression", "ordinal"}
