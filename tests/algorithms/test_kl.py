from __future__ import annotations

import math

import pytest
import torch

from rlhfkit.algorithms.kl import (
    KL_CONTROLLERS,
    KL_ESTIMATORS,
    AdaptiveKLController,
    FixedKLController,
    PIKLController,
    kl_k1,
    kl_k2,
    kl_k3,
    make_kl_controller,
)


def test_estimators_hand_values() -> None:
    logp, ref = torch.tensor([-1.0]), torch.tensor([-2.0])
    assert kl_k1(logp, ref).item() == pytest.approx(1.0)  # -1 - (-2)
    assert kl_k2(logp, ref).item() == pytest.approx(0.5)  # 0.5 * 1^2
    # r = ref - logp = -1: e^-1 - 1 - (-1) = e^-1 = 0.367879
    assert kl_k3(logp, ref).item() == pytest.approx(math.exp(-1.0))
    assert set(KL_ESTIMATORS) == {"k1", "k2", "k3"}


def test_estimators_vanish_when_policies_agree_and_k2_k3_nonnegative() -> None:
    g = torch.Generator().manual_seed(0)
    logp = -torch.rand(4, 6, generator=g) * 3
    for fn in KL_ESTIMATORS.values():
        assert torch.allclose(fn(logp, logp), torch.zeros_like(logp))
    ref = -torch.rand(4, 6, generator=g) * 3
    assert (kl_k2(logp, ref) >= 0).all()
    assert (kl_k3(logp, ref) >= 0).all()


def test_k1_and_k3_are_unbiased_monte_carlo() -> None:
    # policy p and reference q over 5 tokens; sample from p, average the per-sample estimates.
    g = torch.Generator().manual_seed(1)
    p_logits, q_logits = torch.randn(5, generator=g), torch.randn(5, generator=g)
    logp_all, logq_all = torch.log_softmax(p_logits, 0), torch.log_softmax(q_logits, 0)
    true_kl = (logp_all.exp() * (logp_all - logq_all)).sum().item()
    samples = torch.multinomial(logp_all.exp(), 200_000, replacement=True, generator=g)
    logp, ref = logp_all[samples], logq_all[samples]
    assert kl_k1(logp, ref).mean().item() == pytest.approx(true_kl, abs=0.01)
    assert kl_k3(logp, ref).mean().item() == pytest.approx(true_kl, abs=0.01)


def test_fixed_controller_never_moves_and_round_trips() -> None:
    ctl = FixedKLController(0.05)
    ctl.update(current_kl=100.0, n_steps=512)
    assert ctl.value == 0.05
    other = FixedKLController(1.0)
    other.load_state_dict(ctl.state_dict())
    assert other.value == 0.05
    with pytest.raises(ValueError):
        FixedKLController(-0.1)


def test_adaptive_controller_hand_values() -> None:
    ctl = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    # KL 12 -> error 12/6 - 1 = 1, clipped to 0.2 -> beta *= 1 + 0.2 * 256 / 10000 = 1.00512
    ctl.update(12.0, 256)
    assert ctl.value == pytest.approx(0.1 * 1.00512)
    # KL 6.6 -> error 0.1 (inside the clip) -> beta *= 1 + 0.1 * 256 / 10000 = 1.00256
    ctl.update(6.6, 256)
    assert ctl.value == pytest.approx(0.1 * 1.00512 * 1.00256)
    # KL 3 -> error -0.5, clipped to -0.2 -> beta *= 1 - 0.00512
    ctl.update(3.0, 256)
    assert ctl.value == pytest.approx(0.1 * 1.00512 * 1.00256 * 0.99488)


def test_adaptive_controller_matches_naive_loop() -> None:
    ctl = AdaptiveKLController(init_beta=0.2, target=4.0, horizon=1000)
    beta = 0.2
    for kl in [0.0, 1.0, 3.9, 4.0, 4.5, 9.0, 20.0]:
        err = kl / 4.0 - 1.0
        err = 0.2 if err > 0.2 else (-0.2 if err < -0.2 else err)
        beta = beta * (1.0 + err * 64 / 1000)
        ctl.update(kl, 64)
        assert ctl.value == pytest.approx(beta)


@pytest.mark.parametrize(
    "make, kls, n",
    [
        (lambda: AdaptiveKLController(0.1, 6.0, 10_000), [10.0, 8.0, 7.0], 128),
        (lambda: PIKLController(0.1, 3.0, 64), [0.0, 1.0, 5.0], 16),
    ],
    ids=["adaptive", "pi"],
)
def test_controller_resumes_from_state_dict(make, kls: list[float], n: int) -> None:
    a = make()
    for kl in kls:
        a.update(kl, n)
    b = make()
    b.load_state_dict(a.state_dict())
    assert b.value == a.value
    a.update(2.0, n)
    b.update(2.0, n)
    assert b.value == a.value


@pytest.mark.parametrize(
    "kwargs",
    [
        {"init_beta": 0.0, "target": 6.0, "horizon": 10},
        {"init_beta": 0.1, "target": 0.0, "horizon": 10},
        {"init_beta": 0.1, "target": 6.0, "horizon": 0},
    ],
)
def test_adaptive_controller_validates(kwargs: dict[str, float]) -> None:
    with pytest.raises(ValueError):
        AdaptiveKLController(**kwargs)  # type: ignore[arg-type]


def test_factory() -> None:
    assert set(KL_CONTROLLERS) == {"fixed", "adaptive", "pi"}
    fixed = make_kl_controller("fixed", init_beta=0.3, target=6.0, horizon=100)
    assert isinstance(fixed, FixedKLController) and fixed.value == 0.3
    adaptive = make_kl_controller("adaptive", init_beta=0.3, target=6.0, horizon=100)
    assert isinstance(adaptive, AdaptiveKLController) and adaptive.value == 0.3
    pi = make_kl_controller("pi", init_beta=0.3, target=6.0, horizon=100, kp=0.5, min_beta=0.01, max_beta=2.0)
    assert isinstance(pi, PIKLController) and (pi.kp, pi.min_beta, pi.max_beta) == (0.5, 0.01, 2.0)
    with pytest.raises(ValueError):
        make_kl_controller("pid", init_beta=0.3)


def test_pi_controller_hand_values() -> None:
    ctl = PIKLController(init_beta=0.1, target=4.0, horizon=64, kp=1.0, min_beta=0.01, max_beta=1.0)
    assert ctl.value == pytest.approx(0.1)  # no error seen yet
    # KL 0 -> e = -1; I = -1 * 16 / 64 = -0.25; beta = 0.1 * exp(-1 - 0.25)
    ctl.update(0.0, 16)
    assert ctl.value == pytest.approx(0.1 * math.exp(-1.25))
    # KL 6 -> e = 0.5; I = -0.25 + 0.125 = -0.125; beta = 0.1 * exp(0.5 - 0.125): the level answers at once
    ctl.update(6.0, 16)
    assert ctl.value == pytest.approx(0.1 * math.exp(0.375))
    # KL 40 -> e clipped to 1; I = -0.125 + 0.25 = 0.125
    ctl.update(40.0, 16)
    assert ctl.value == pytest.approx(0.1 * math.exp(1.125))


def test_pi_controller_matches_naive_loop() -> None:
    kp, horizon, n, lo, hi = 0.7, 100, 32, 0.02, 0.5
    ctl = PIKLController(init_beta=0.1, target=3.0, horizon=horizon, kp=kp, min_beta=lo, max_beta=hi)
    integral = 0.0
    for kl in [0.0, 0.0, 0.0, 0.0, 0.0, 0.0, 0.5, 2.0, 3.0, 9.0, 30.0, 30.0, 30.0, 30.0, 30.0, 1.0]:
        err = max(-1.0, min(1.0, kl / 3.0 - 1.0))
        integral = max(math.log(lo / 0.1), min(math.log(hi / 0.1), integral + err * n / horizon))
        beta = max(lo, min(hi, 0.1 * math.exp(kp * err + integral)))
        ctl.update(kl, n)
        assert ctl.value == pytest.approx(beta)


def test_pi_controller_integrator_is_bounded() -> None:
    # anti-windup: a long run of zero KL stops accumulating at min_beta, so beta recovers in one step
    # once the KL reaches the target instead of climbing back out of a deep hole
    ctl = PIKLController(init_beta=0.1, target=2.0, horizon=16, kp=1.0, min_beta=0.05, max_beta=1.0)
    for _ in range(100):
        ctl.update(0.0, 16)
    assert ctl.value == pytest.approx(0.05)
    assert ctl.integral == pytest.approx(math.log(0.5))
    ctl.update(2.0, 16)  # at target: e = 0, the integral stays at its bound
    assert ctl.value == pytest.approx(0.05)
    ctl.update(4.0, 16)  # twice the target: e = 1 -> exp(1 + log 0.5 + 1)
    assert ctl.value == pytest.approx(min(1.0, 0.1 * math.exp(1 + math.log(0.5) + 1)))


def test_pi_controller_with_kp_zero_is_ziegler_in_log_space() -> None:
    # for small errors, exp(e * n / H) ~= 1 + e * n / H: the integral-only PI is Ziegler's update
    pi = PIKLController(init_beta=0.1, target=6.0, horizon=10_000, kp=0.0, min_beta=1e-6, max_beta=1e6)
    zg = AdaptiveKLController(init_beta=0.1, target=6.0, horizon=10_000)
    for kl in [6.3, 6.6, 5.7, 5.9, 7.0]:
        pi.update(kl, 256)
        zg.update(kl, 256)
    assert pi.value == pytest.approx(zg.value, rel=1e-4)


def test_pi_controller_validates() -> None:
    for bad in [{"kp": -1.0}, {"min_beta": 0.2}, {"max_beta": 0.05}, {"min_beta": 0.0}]:
        with pytest.raises(ValueError):
            PIKLController(0.1, 3.0, 64, **bad)  # type: ignore[arg-type]
