"""KL divergence estimators and KL-coefficient controllers for RLHF.

Estimators (Schulman 2020, "Approximating KL divergence", http://joschu.net/blog/kl-approx.html)
take the log-probabilities that the policy and the reference give to the *sampled* tokens, shape
``(B, T)``, and return a per-token estimate of KL(policy || reference) of the same shape. With
``r = ref_logp - logp`` (the log ratio reference/policy at a policy sample):

* k1 = -r: unbiased, high variance, can be negative per token;
* k2 = r^2 / 2: biased, low variance, always >= 0;
* k3 = (e^r - 1) - r: unbiased, low variance, always >= 0 (used by GRPO, DeepSeekMath eq. 4).

Controllers hold the KL penalty coefficient beta of the PPO reward ``score - beta * KL``
(Ziegler et al. 2019, "Fine-Tuning Language Models from Human Preferences", sec. 2.2).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Literal, Protocol

import torch
from torch import Tensor


def kl_k1(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k1 estimator ``logp - ref_logp``, ``(B, T) -> (B, T)`` (Schulman 2020)."""
    return logp - ref_logp


def kl_k2(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k2 estimator ``0.5 * (logp - ref_logp)^2``, ``(B, T) -> (B, T)`` (Schulman 2020)."""
    return 0.5 * (logp - ref_logp) ** 2


def kl_k3(logp: Tensor, ref_logp: Tensor) -> Tensor:
    """k3 estimator ``exp(r) - 1 - r`` with ``r = ref_logp - logp``, ``(B, T) -> (B, T)``.

    Schulman 2020; DeepSeekMath (Shao et al. 2024) eq. 4. ``expm1`` keeps it exact for small r,
    where the two terms nearly cancel.
    """
    log_ratio = ref_logp - logp
    return torch.expm1(log_ratio) - log_ratio


KLEstimatorName = Literal["k1", "k2", "k3"]
"""The keys of `KL_ESTIMATORS`, as a type for config fields."""

KL_ESTIMATORS: dict[str, Callable[[Tensor, Tensor], Tensor]] = {
    "k1": kl_k1,
    "k2": kl_k2,
    "k3": kl_k3,
}
"""Per-token KL estimators by name."""


class KLController(Protocol):
    """What a PPO trainer needs from a KL coefficient controller."""

    @property
    def value(self) -> float:
        """The current KL coefficient beta."""
        ...

    def update(self, current_kl: float, n_steps: int) -> None:
        """Adapt beta after a batch whose mean sequence KL was ``current_kl``."""
        ...

    def state_dict(self) -> dict[str, Any]:
        """Everything needed to resume."""
        ...

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore from :meth:`state_dict`."""
        ...


@dataclass
class FixedKLController:
    """Constant KL coefficient (Ziegler et al. 2019 use it for most offline runs)."""

    beta: float
    """The KL penalty coefficient; must be >= 0."""

    def __post_init__(self) -> None:
        if self.beta < 0:
            raise ValueError(f"beta must be >= 0, got {self.beta}")

    @property
    def value(self) -> float:
        """The (constant) KL coefficient."""
        return self.beta

    def update(self, current_kl: float, n_steps: int) -> None:
        """A fixed controller ignores the observed KL."""

    def state_dict(self) -> dict[str, Any]:
        """``{"value": beta}``."""
        return {"value": self.beta}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore beta from :meth:`state_dict`."""
        self.beta = float(state["value"])


ADAPTIVE_KL_CLIP = 0.2
"""Clip of the proportional error in Ziegler et al. 2019, sec. 2.2."""


@dataclass
class AdaptiveKLController:
    """Proportional controller that steers the measured KL towards ``target``.

    Ziegler et al. 2019, sec. 2.2: ``e_t = clip(KL_t / KL_target - 1, -0.2, 0.2)`` and
    ``beta_{t+1} = beta_t * (1 + e_t * n_steps / horizon)``, ``n_steps`` being the number of samples
    (episodes) the KL was measured over, so ``horizon`` is in the same unit.
    """

    init_beta: float
    """Initial KL coefficient; must be > 0 (a multiplicative update cannot leave 0)."""
    target: float
    """Target KL (in nats per sequence) the controller aims for; must be > 0."""
    horizon: int
    """Number of samples over which a full-size correction is spread; must be > 0."""
    beta: float = field(init=False)
    """Current coefficient, starts at ``init_beta``."""

    def __post_init__(self) -> None:
        if self.init_beta <= 0:
            raise ValueError(f"init_beta must be > 0, got {self.init_beta}")
        if self.target <= 0:
            raise ValueError(f"target must be > 0, got {self.target}")
        if self.horizon <= 0:
            raise ValueError(f"horizon must be > 0, got {self.horizon}")
        self.beta = float(self.init_beta)

    @property
    def value(self) -> float:
        """The current KL coefficient beta."""
        return self.beta

    def update(self, current_kl: float, n_steps: int) -> None:
        """Multiply beta by ``1 + clip(current_kl / target - 1, -0.2, 0.2) * n_steps / horizon``."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        error = min(max(current_kl / self.target - 1.0, -ADAPTIVE_KL_CLIP), ADAPTIVE_KL_CLIP)
        self.beta *= 1.0 + error * n_steps / self.horizon

    def state_dict(self) -> dict[str, Any]:
        """Current beta plus the settings, so a resume can check they still match."""
        return {"value": self.beta, "target": self.target, "horizon": self.horizon}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the current beta (settings come from the constructor, as in a fresh run)."""
        self.beta = float(state["value"])


PI_KL_ERROR_CLIP = 1.0
"""Clip of the relative KL error ``KL / target - 1`` in :class:`PIKLController`."""


@dataclass
class PIKLController:
    """Proportional-integral controller on log beta, with a bounded integrator.

    Ziegler et al.'s controller (:class:`AdaptiveKLController`) is a pure integrator: beta only moves
    by the accumulated error. The KL itself integrates the policy's drift, so in a short run the
    integrator winds down while the KL is still near zero (the policy has not moved yet) and the beta
    it has reached when the KL finally climbs is far too low to stop it: the KL overshoots.
    The textbook fixes for an integrating plant are a proportional term, which answers the KL's
    current level at once, and anti-windup, which bounds what the integrator can accumulate:

        e_t = clip(KL_t / target - 1, -1, 1)
        I_t = clip(I_{t-1} + e_t * n_steps / horizon, log(min_beta / init_beta), log(max_beta / init_beta))
        beta_t = clip(init_beta * exp(kp * e_t + I_t), min_beta, max_beta)

    With ``kp = 0`` and no bounds it is Ziegler's update in log space (``log(1 + x) ~= x``) with a
    wider error clip. With ``kp = 1``, a KL of twice the target multiplies beta by e at once.
    """

    init_beta: float
    """Initial KL coefficient (the integrator's centre); must be > 0."""
    target: float
    """Target KL (in nats per sequence); must be > 0."""
    horizon: int
    """Samples over which the integral term applies a full-size (factor e) correction; must be > 0."""
    kp: float = 1.0
    """Proportional gain on the relative error; must be >= 0 (0: integral only)."""
    min_beta: float = 1e-3
    """Lower bound of beta and of the integrator (anti-windup); must be in (0, init_beta]."""
    max_beta: float = 10.0
    """Upper bound of beta and of the integrator; must be >= init_beta."""
    integral: float = field(init=False, default=0.0)
    """Accumulated log-beta correction."""
    error: float = field(init=False, default=0.0)
    """The last clipped relative error (0 before the first update)."""

    def __post_init__(self) -> None:
        if self.init_beta <= 0 or self.target <= 0 or self.horizon <= 0:
            raise ValueError(
                f"init_beta, target and horizon must be > 0, got {self.init_beta}, {self.target}, {self.horizon}"
            )
        if self.kp < 0:
            raise ValueError(f"kp must be >= 0, got {self.kp}")
        if not 0 < self.min_beta <= self.init_beta <= self.max_beta:
            raise ValueError(
                f"need 0 < min_beta <= init_beta <= max_beta, got {self.min_beta}, {self.init_beta}, {self.max_beta}"
            )

    @property
    def value(self) -> float:
        """``init_beta * exp(kp * e + I)``, clipped to ``[min_beta, max_beta]``."""
        beta = self.init_beta * math.exp(self.kp * self.error + self.integral)
        return min(max(beta, self.min_beta), self.max_beta)

    def update(self, current_kl: float, n_steps: int) -> None:
        """Record the error of a batch of ``n_steps`` samples and integrate it (bounded)."""
        if n_steps < 0:
            raise ValueError(f"n_steps must be >= 0, got {n_steps}")
        self.error = min(max(current_kl / self.target - 1.0, -PI_KL_ERROR_CLIP), PI_KL_ERROR_CLIP)
        low, high = math.log(self.min_beta / self.init_beta), math.log(self.max_beta / self.init_beta)
        self.integral = min(max(self.integral + self.error * n_steps / self.horizon, low), high)

    def state_dict(self) -> dict[str, Any]:
        """Current beta, the integrator and the last error."""
        return {"value": self.value, "integral": self.integral, "error": self.error}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Restore the integrator and the last error."""
        self.integral = float(state["integral"])
        self.error = float(state["error"])


def _make_fixed(*, init_beta: float, **_: Any) -> FixedKLController:
    return FixedKLController(beta=init_beta)


def _make_adaptive(*, init_beta: float, target: float, horizon: int, **_: Any) -> AdaptiveKLController:
    return AdaptiveKLController(init_beta=init_beta, target=target, horizon=horizon)


def _make_pi(*, init_beta: float, target: float, horizon: int, **extra: Any) -> PIKLController:
    gains = {k: extra[k] for k in ("kp", "min_beta", "max_beta") if k in extra}  # absent: the class defaults
    return PIKLController(init_beta=init_beta, target=target, horizon=horizon, **gains)


KLControllerName = Literal["fixed", "adaptive", "pi"]
"""The keys of `KL_CONTROLLERS`, as a type for config fields."""

KL_CONTROLLERS: dict[str, Callable[..., KLController]] = {
    "fixed": _make_fixed,
    "adaptive": _make_adaptive,
    "pi": _make_pi,
}
"""Controller builders by name; each takes keyword arguments ``init_beta`` (+ ``target``,
``horizon`` for "adaptive"; + ``kp``, ``min_beta``, ``max_beta`` for "pi"); extra keywords are
ignored so one config can feed any kind."""


def make_kl_controller(kind: str, **kwargs: Any) -> KLController:
    """Build a KL controller by name, e.g. ``make_kl_controller("adaptive", init_beta=0.1,
    target=6.0, horizon=10000)``."""
    try:
        builder = KL_CONTROLLERS[kind]
    except KeyError:
        raise ValueError(f"unknown KL controller {kind!r}; choose from {sorted(KL_CONTROLLERS)}") from None
    return builder(**kwargs)


@dataclass(frozen=True)
class KLControlSettings:
    """The KL coefficient beta and its controller, as config fields: a base of the config of every
    trainer that puts ``-beta * KL(policy || reference)`` in its reward (PPO). The fields stay flat
    (``kl_target: 3.0`` in a YAML file); the checks here are the only ones a config makes of them."""

    kl_controller: KLControllerName = "adaptive"
    """'adaptive' (beta steers the KL towards kl_target, Ziegler et al. 2019), 'pi' (the same, plus a
    proportional term and a bounded integrator, which keep a short run from overshooting the target) or
    'fixed' (beta = init_kl_coef)."""
    init_kl_coef: float = 0.05
    """Initial KL coefficient beta (0 with kl_controller=fixed: no KL penalty at all)."""
    kl_target: float = 6.0
    """Target KL per response, in nats, of the adaptive and pi controllers."""
    kl_horizon: int = 10000
    """Samples over which the adaptive (or pi) controller's integral applies a full correction."""
    kl_kp: float = 1.0
    """Proportional gain of the 'pi' controller: a KL of twice the target multiplies beta by exp(kl_kp) at once."""
    min_kl_coef: float = 1e-3
    """Lower bound of beta for the 'pi' controller (also bounds its integrator: anti-windup)."""
    max_kl_coef: float = 10.0
    """Upper bound of beta for the 'pi' controller."""

    def __post_init__(self) -> None:
        parent = getattr(super(), "__post_init__", None)  # cooperative: a config may mix this in
        if parent is not None:
            parent()
        checks = (
            (self.init_kl_coef >= 0, "init_kl_coef must be >= 0"),
            (
                self.kl_controller == "fixed" or self.init_kl_coef > 0,
                f"the {self.kl_controller} controller needs init_kl_coef > 0 (or use kl_controller=fixed)",
            ),
            (self.kl_kp >= 0, f"kl_kp must be >= 0, got {self.kl_kp}"),
            (
                self.kl_controller != "pi" or 0 < self.min_kl_coef <= self.init_kl_coef <= self.max_kl_coef,
                "the pi controller needs 0 < min_kl_coef <= init_kl_coef <= max_kl_coef",
            ),
            (self.kl_target > 0 and self.kl_horizon > 0, "kl_target and kl_horizon must be positive"),
        )
        for ok, message in checks:
            if not ok:
                raise ValueError(message)

    def make_kl_controller(self) -> KLController:
        """A fresh controller with these settings."""
        return make_kl_controller(
            self.kl_controller,
            init_beta=self.init_kl_coef,
            target=self.kl_target,
            horizon=self.kl_horizon,
            kp=self.kl_kp,
            min_beta=self.min_kl_coef,
            max_beta=self.max_kl_coef,
        )
