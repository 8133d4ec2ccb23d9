"""DPO-family losses against hand-derived numbers and against TRL's formulas.

The ``trl_*`` helpers restate, term by term, what TRL computes (DPOTrainer for sigmoid / robust /
hinge / ipo, the label-smoothed "sigmoid" of TRL <= 0.2x for cDPO, CPOTrainer for simpo,
ORPOTrainer for orpo), so a change of convention on our side shows up as a mismatch.
"""

from __future__ import annotations

import math

import pytest
import torch
import torch.nn.functional as F

from rlhfkit.algorithms.dpo_losses import (
    DPO_LOSSES,
    RANKING_DPO_LOSSES,
    REFERENCE_FREE_LOSSES,
    PreferenceLogps,
    cdpo_loss,
    hinge_loss,
    ipo_loss,
    orpo_loss,
    plackett_luce_dpo,
    robust_loss,
    sigmoid_loss,
    simpo_loss,
)

NEG_LOGSIG_01 = -math.log(1 / (1 + math.exp(-0.1)))  # -log sigmoid(0.1) = 0.644397
NEG_LOGSIG_M01 = -math.log(1 / (1 + math.exp(0.1)))  # -log sigmoid(-0.1) = 0.744397


def _t(*xs: float) -> torch.Tensor:
    return torch.tensor(xs, dtype=torch.float32)


def _unit_logit_batch() -> PreferenceLogps:
    # (logp_c - ref_c) - (logp_r - ref_r) = (-10 + 11) - (-12 + 12) = 1
    return PreferenceLogps(_t(-10.0), _t(-12.0), _t(-11.0), _t(-12.0), _t(4), _t(4), _t(1.0))


def _random_batch(seed: int, n: int = 12) -> PreferenceLogps:
    g = torch.Generator().manual_seed(seed)
    chosen_len = torch.randint(1, 30, (n,), generator=g)
    rejected_len = torch.randint(1, 30, (n,), generator=g)

    def summed(lengths: torch.Tensor) -> torch.Tensor:
        return -(torch.rand(n, generator=g) * 2 + 0.05) * lengths

    chosen, rejected = summed(chosen_len), summed(rejected_len)
    return PreferenceLogps(
        chosen_logps=chosen,
        rejected_logps=rejected,
        ref_chosen_logps=chosen + torch.randn(n, generator=g),
        ref_rejected_logps=rejected + torch.randn(n, generator=g),
        chosen_lengths=chosen_len,
        rejected_lengths=rejected_len,
        chosen_nll=-chosen / chosen_len,
    )


def test_sigmoid_hand_value() -> None:
    out = sigmoid_loss(_unit_logit_batch(), beta=0.1)
    # logits = 1, beta 0.1: -log sigmoid(0.1) = 0.644397
    assert out.losses.item() == pytest.approx(NEG_LOGSIG_01)
    # rewards: 0.1 * (-10 + 11) = 0.1 and 0.1 * (-12 + 12) = 0
    assert out.chosen_rewards.item() == pytest.approx(0.1)
    assert out.rejected_rewards.item() == pytest.approx(0.0)


def test_cdpo_and_robust_hand_values() -> None:
    batch = _unit_logit_batch()
    # cDPO eps 0.1: 0.9 * 0.644397 + 0.1 * 0.744397 = 0.654397
    assert cdpo_loss(batch, 0.1, label_smoothing=0.1).losses.item() == pytest.approx(0.654397, abs=1e-6)
    # robust eps 0.1: (0.9 * 0.644397 - 0.1 * 0.744397) / 0.8 = 0.631897
    assert robust_loss(batch, 0.1, label_smoothing=0.1).losses.item() == pytest.approx(0.631897, abs=1e-6)
    # both reduce to DPO at eps = 0
    assert cdpo_loss(batch, 0.1, label_smoothing=0.0).losses.item() == pytest.approx(NEG_LOGSIG_01)
    assert robust_loss(batch, 0.1, label_smoothing=0.0).losses.item() == pytest.approx(NEG_LOGSIG_01)
    with pytest.raises(ValueError):
        robust_loss(batch, 0.1, label_smoothing=0.5)


def test_hinge_hand_values() -> None:
    # logits 1, beta 0.1: relu(1 - 0.1) = 0.9; logits 20: relu(1 - 2) = 0
    assert hinge_loss(_unit_logit_batch(), 0.1).losses.item() == pytest.approx(0.9)
    far = PreferenceLogps(_t(0.0), _t(-20.0), _t(0.0), _t(0.0))
    assert hinge_loss(far, 0.1).losses.item() == 0.0


def test_ipo_hand_value_uses_length_averages() -> None:
    # chosen log-ratio 2 over 4 tokens = 0.5; rejected -1 over 2 tokens = -0.5 -> delta 1
    # beta 0.1: target 1 / (2 * 0.1) = 5 -> (1 - 5)^2 = 16
    batch = PreferenceLogps(_t(-6.0), _t(-9.0), _t(-8.0), _t(-8.0), _t(4), _t(2))
    out = ipo_loss(batch, 0.1)
    assert out.losses.item() == pytest.approx(16.0)
    assert out.chosen_rewards.item() == pytest.approx(0.2)  # 0.1 * 2 on the summed log-ratio


def test_simpo_hand_value() -> None:
    # avg_c = -4/4 = -1, avg_r = -6/3 = -2; beta 2, gamma 0.5: 2 * 1 - 0.5 = 1.5
    # -log sigmoid(1.5) = log(1 + e^-1.5) = 0.201413; rewards 2 * -1 = -2, 2 * -2 = -4
    batch = PreferenceLogps(_t(-4.0), _t(-6.0), chosen_lengths=_t(4), rejected_lengths=_t(3), chosen_nll=_t(1.0))
    out = simpo_loss(batch, 2.0, gamma=0.5)
    assert out.losses.item() == pytest.approx(0.201413, abs=1e-6)
    assert (out.chosen_rewards.item(), out.rejected_rewards.item()) == pytest.approx((-2.0, -4.0))
    # sft_weight adds weight * chosen NLL: 0.201413 + 0.5 * 1.0
    assert simpo_loss(batch, 2.0, gamma=0.5, sft_weight=0.5).losses.item() == pytest.approx(0.701413, abs=1e-6)


def test_orpo_hand_value() -> None:
    # avg_c = ln 0.5, avg_r = ln 0.25: odds_c = 0.5/0.5 = 1, odds_r = 0.25/0.75 = 1/3 -> log odds ratio ln 3
    # log sigmoid(ln 3) = ln(3/4); loss = nll 0.693147 - 0.1 * ln(0.75) = 0.721915
    batch = PreferenceLogps(
        _t(2 * math.log(0.5)),
        _t(2 * math.log(0.25)),
        chosen_lengths=_t(2),
        rejected_lengths=_t(2),
        chosen_nll=_t(math.log(2.0)),
    )
    out = orpo_loss(batch, 0.1)
    assert out.losses.item() == pytest.approx(0.721915, abs=1e-6)
    assert out.chosen_rewards.item() == pytest.approx(0.1 * math.log(0.5))


# --- TRL formulas, restated ------------------------------------------------------------------


def _trl_logits(b: PreferenceLogps) -> torch.Tensor:
    return (b.chosen_logps - b.ref_chosen_logps) - (b.rejected_logps - b.ref_rejected_logps)


def trl_sigmoid(b: PreferenceLogps, beta: float) -> torch.Tensor:
    return -F.logsigmoid(beta * _trl_logits(b))


def trl_cdpo(b: PreferenceLogps, beta: float, eps: float) -> torch.Tensor:
    z = beta * _trl_logits(b)
    return -F.logsigmoid(z) * (1 - eps) - F.logsigmoid(-z) * eps


def trl_robust(b: PreferenceLogps, beta: float, eps: float) -> torch.Tensor:
    z = beta * _trl_logits(b)
    return (-(1 - eps) * F.logsigmoid(z) - (-eps * F.logsigmoid(-z))) / (1 - 2 * eps)


def trl_hinge(b: PreferenceLogps, beta: float) -> torch.Tensor:
    return torch.relu(1 - beta * _trl_logits(b))


def trl_ipo(b: PreferenceLogps, beta: float) -> torch.Tensor:
    chosen_avg = (b.chosen_logps - b.ref_chosen_logps) / b.chosen_lengths.float().clamp(min=1.0)
    rejected_avg = (b.rejected_logps - b.ref_rejected_logps) / b.rejected_lengths.float().clamp(min=1.0)
    return (chosen_avg - rejected_avg - 1 / (2 * beta)) ** 2


def trl_simpo(b: PreferenceLogps, beta: float, simpo_gamma: float) -> torch.Tensor:
    logits = b.chosen_logps / b.chosen_lengths - b.rejected_logps / b.rejected_lengths
    return -F.logsigmoid(beta * (logits - simpo_gamma / beta))


def trl_orpo(b: PreferenceLogps, beta: float) -> torch.Tensor:
    c, r = b.chosen_logps / b.chosen_lengths, b.rejected_logps / b.rejected_lengths
    log_odds = (c - r) - (torch.log1p(-torch.exp(c)) - torch.log1p(-torch.exp(r)))
    return b.chosen_nll - beta * F.logsigmoid(log_odds)


@pytest.mark.parametrize("beta", [0.1, 0.5])
def test_every_variant_matches_trl(beta: float) -> None:
    b = _random_batch(0)
    cases = [
        (sigmoid_loss(b, beta), trl_sigmoid(b, beta)),
        (cdpo_loss(b, beta, label_smoothing=0.2), trl_cdpo(b, beta, 0.2)),
        (robust_loss(b, beta, label_smoothing=0.2), trl_robust(b, beta, 0.2)),
        (hinge_loss(b, beta), trl_hinge(b, beta)),
        (ipo_loss(b, beta), trl_ipo(b, beta)),
        (simpo_loss(b, beta, gamma=0.8), trl_simpo(b, beta, 0.8)),
        (orpo_loss(b, beta), trl_orpo(b, beta)),
    ]
    for ours, trl in cases:
        assert torch.allclose(ours.losses, trl, atol=1e-5)
        assert ours.losses.mean().item() == pytest.approx(trl.mean().item(), abs=1e-5)


def test_rewards_conventions() -> None:
    b = _random_batch(1)
    for name, fn in DPO_LOSSES.items():
        out = fn(b, 0.3)
        if name in REFERENCE_FREE_LOSSES:
            assert torch.allclose(out.chosen_rewards, 0.3 * b.chosen_logps / b.chosen_lengths)
        else:
            assert torch.allclose(out.chosen_rewards, 0.3 * (b.chosen_logps - b.ref_chosen_logps))
            assert torch.allclose(out.rejected_rewards, 0.3 * (b.rejected_logps - b.ref_rejected_logps))
        assert out.losses.shape == (12,)


def test_gradients_raise_chosen_and_lower_rejected() -> None:
    base = _random_batch(2, n=4)
    for name, fn in DPO_LOSSES.items():
        chosen = base.chosen_logps.clone().requires_grad_(True)
        rejected = base.rejected_logps.clone().requires_grad_(True)
        batch = PreferenceLogps(
            chosen,
            rejected,
            base.ref_chosen_logps,
            base.ref_rejected_logps,
            base.chosen_lengths,
            base.rejected_lengths,
            base.chosen_nll,
        )
        out = fn(batch, 0.1)
        assert not out.chosen_rewards.requires_grad and not out.rejected_rewards.requires_grad
        out.losses.sum().backward()
        # The hinge is flat once satisfied; IPO's target margin 1 / (2 * 0.1) = 5 lies above every
        # averaged margin of this batch, so it too pushes chosen up and rejected down.
        assert (chosen.grad <= 0).all() and (rejected.grad >= 0).all(), name


def test_missing_inputs_raise() -> None:
    no_ref = PreferenceLogps(_t(-1.0), _t(-2.0), chosen_lengths=_t(1), rejected_lengths=_t(1))
    for name in ("sigmoid", "cdpo", "robust", "hinge", "ipo"):
        with pytest.raises(ValueError):
            DPO_LOSSES[name](no_ref, 0.1)
    with pytest.raises(ValueError):
        orpo_loss(no_ref, 0.1)  # needs chosen_nll
    with pytest.raises(ValueError):
        simpo_loss(PreferenceLogps(_t(-1.0), _t(-2.0)), 0.1)  # needs lengths
    with pytest.raises(ValueError):
        PreferenceLogps(_t(-1.0, -2.0), _t(-2.0))  # shape mismatch
    with pytest.raises(ValueError):
        PreferenceLogps(_t(-1.0), _t(-2.0), ref_chosen_logps=_t(-1.0))  # half a reference


def test_plackett_luce_dpo_k2_equals_dpo_and_hand_k3() -> None:
    b = _random_batch(3)
    policy = torch.stack([b.chosen_logps, b.rejected_logps], dim=1)
    ref = torch.stack([b.ref_chosen_logps, b.ref_rejected_logps], dim=1)
    out = plackett_luce_dpo(policy, ref, None, 0.1)
    assert torch.allclose(out.losses, sigmoid_loss(b, 0.1).losses, atol=1e-5)
    # K = 3 with beta * log-ratios [2, 1, 0] (beta 0.5, log-ratios [4, 2, 0]): PL NLL = 0.720868
    out = plackett_luce_dpo(_t(4.0, 2.0, 0.0, 7.0).unsqueeze(0), torch.zeros(1, 4), torch.tensor([[1, 1, 1, 0]]), 0.5)
    assert out.losses.item() == pytest.approx(0.720868, abs=1e-6)
    assert out.rewards.tolist()[0] == pytest.approx([2.0, 1.0, 0.0, 0.0])
    assert set(RANKING_DPO_LOSSES) == {"plackett_luce_dpo"}


def test_table_names() -> None:
    assert set(DPO_LOSSES) == {"sigmoid", "ipo", "cdpo", "robust", "hinge", "simpo", "orpo"}
