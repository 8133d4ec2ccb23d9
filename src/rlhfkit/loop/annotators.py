"""Simulated annotators: a panel that judges by a known gold scorer plus noise.

Each member perceives a response's utility

    u(x) = gold(prompt, x) + bias * log(1 + words(x))

``bias`` is the member's length preference (> 0 favours longer answers, < 0 shorter ones; the log
makes one extra word matter less in a long answer than in a short one), a documented human rater
bias that reward models are known to absorb (Singhal et al. 2023, "A Long Way to Go: Investigating
Length Correlations in RLHF"). Judgments add logistic noise of scale ``temperature`` to utilities,
which is exactly the Bradley-Terry model (Bradley and Terry 1952):

    P(a preferred to b) = sigmoid((u(a) - u(b)) / temperature)

Rankings are Plackett-Luce samples with the same noise (Gumbel perturbations of u / temperature;
restricted to two responses they reduce to the pairwise formula), and 1-7 ratings map the noisy
utility linearly onto the scale. ``temperature = 0`` is a noiseless annotator. A *careless* member
ignores the content: uniform over "a" / "b", uniformly random orders, uniform ratings.

Every method is a pure function of the panel's seed, the member, its inputs and an ``occasion``
number: the same question asked again gets the same answer, unless a new ``occasion`` is given
(e.g. for the repeated items that quality control uses to measure self-consistency).
"""

from __future__ import annotations

import hashlib
import json
import math
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np

from rlhfkit.data.records import Choice
from rlhfkit.eval.gold import GoldScorer, resolve_gold, tokenize

RATING_LOW = 1
"""Lowest rating of the Likert scale."""
RATING_HIGH = 7
"""Highest rating of the Likert scale."""


@dataclass(frozen=True)
class AnnotatorProfile:
    """One simulated annotator."""

    name: str
    """Unique name (used as the user name when the panel submits through the feedback app)."""
    bias: float = 0.0
    """Length preference: utility gains ``bias * log(1 + words)`` (0 = none)."""
    temperature: float = 0.1
    """Scale of the logistic judgment noise in gold units (0 = always follows the utility)."""
    careless: bool = False
    """Answers uniformly at random, ignoring the responses."""

    def __post_init__(self) -> None:
        if not self.name:
            raise ValueError("AnnotatorProfile.name must not be empty")
        if not math.isfinite(self.bias):
            raise ValueError(f"AnnotatorProfile.bias must be finite, got {self.bias}")
        if not (math.isfinite(self.temperature) and self.temperature >= 0):
            raise ValueError(f"AnnotatorProfile.temperature must be >= 0, got {self.temperature}")


@dataclass(frozen=True)
class SimulatedPanel:
    """A panel of simulated annotators judging by ``gold`` (see the module docstring)."""

    gold: GoldScorer
    """``gold(prompt, response) -> float``, higher is better."""
    members: tuple[AnnotatorProfile, ...]
    """The annotators; names must be unique."""
    seed: int = 0
    """Seed of all judgment noise."""
    tie_margin: float = 0.0
    """``judge_pair`` says "tie" when the noisy utility gap is at most this (0: ties only on exact
    equality, which noise makes rare)."""
    rating_center: float = 0.0
    """Utility rated 4, the middle of the 1-7 scale."""
    rating_scale: float = 1.0
    """Utility span from the middle to the ends of the scale (``center +- scale`` -> 1 and 7)."""

    def __post_init__(self) -> None:
        object.__setattr__(self, "members", tuple(self.members))
        names = [m.name for m in self.members]
        if not names:
            raise ValueError("SimulatedPanel needs at least one member")
        if len(set(names)) != len(names):
            raise ValueError(f"member names must be unique, got {names}")
        if self.seed < 0:
            raise ValueError(f"seed must be >= 0, got {self.seed}")
        if self.tie_margin < 0:
            raise ValueError(f"tie_margin must be >= 0, got {self.tie_margin}")
        if self.rating_scale <= 0:
            raise ValueError(f"rating_scale must be > 0, got {self.rating_scale}")

    def member(self, who: AnnotatorProfile | str) -> AnnotatorProfile:
        """A member by profile or by name."""
        if isinstance(who, AnnotatorProfile):
            return who
        for m in self.members:
            if m.name == who:
                return m
        raise ValueError(f"no member named {who!r}; members: {[m.name for m in self.members]}")

    def utility(self, prompt: str, response: str, who: AnnotatorProfile | str) -> float:
        """The member's noiseless utility ``gold + bias * log(1 + words)``."""
        member = self.member(who)
        return float(self.gold(prompt, response)) + member.bias * math.log1p(len(tokenize(response)))

    def _rng(self, kind: str, member: AnnotatorProfile, payload: list[str], occasion: int) -> np.random.Generator:
        """A generator determined by the seed and the question (blake2b: stable across processes)."""
        key = json.dumps([kind, member.name, payload, occasion], ensure_ascii=False)
        digest = int.from_bytes(hashlib.blake2b(key.encode("utf-8"), digest_size=8).digest(), "little")
        return np.random.default_rng([self.seed, digest])

    def prob_a(self, prompt: str, a: str, b: str, who: AnnotatorProfile | str) -> float:
        """P(member picks "a") with ``tie_margin = 0``: ``sigmoid((u(a) - u(b)) / T)`` (1/2 if careless)."""
        member = self.member(who)
        if member.careless:
            return 0.5
        diff = self.utility(prompt, a, member) - self.utility(prompt, b, member)
        if member.temperature == 0.0:
            return 0.5 if diff == 0.0 else float(diff > 0.0)
        return 0.5 * (1.0 + math.tanh(diff / (2.0 * member.temperature)))

    def judge_pair(self, prompt: str, a: str, b: str, who: AnnotatorProfile | str, *, occasion: int = 0) -> Choice:
        """The member's choice between responses ``a`` and ``b``: "a", "b" or "tie"."""
        member = self.member(who)
        rng = self._rng("pair", member, [prompt, a, b], occasion)
        if member.careless:
            return "a" if rng.random() < 0.5 else "b"
        # Logistic noise on the gap: P(gap + T * L > 0) = sigmoid(gap / T), the Bradley-Terry model.
        gap = self.utility(prompt, a, member) - self.utility(prompt, b, member)
        perceived = gap + member.temperature * float(rng.logistic())
        if abs(perceived) <= self.tie_margin:
            return "tie"
        return "a" if perceived > 0 else "b"

    def rank(self, prompt: str, responses: list[str], who: AnnotatorProfile | str, *, occasion: int = 0) -> list[int]:
        """The member's order of ``responses``: indices, best first (a Plackett-Luce sample).

        Sorting ``u / T + Gumbel`` draws from Plackett-Luce with weights ``exp(u / T)`` (the
        Gumbel-max trick); ``u + T * Gumbel`` sorts the same way and also works at ``T = 0``.
        """
        member = self.member(who)
        if len(responses) < 2:
            raise ValueError("rank needs at least 2 responses")
        rng = self._rng("rank", member, [prompt, *responses], occasion)
        if member.careless:
            return [int(i) for i in rng.permutation(len(responses))]
        utilities = np.array([self.utility(prompt, r, member) for r in responses])
        noisy = utilities + member.temperature * rng.gumbel(size=len(responses))
        return [int(i) for i in np.argsort(-noisy, kind="stable")]

    def rate(self, prompt: str, response: str, who: AnnotatorProfile | str, *, occasion: int = 0) -> int:
        """The member's 1-7 rating: ``4 + 3 (u + T * L - center) / scale`` rounded half up, clipped."""
        member = self.member(who)
        rng = self._rng("rate", member, [prompt, response], occasion)
        if member.careless:
            return int(rng.integers(RATING_LOW, RATING_HIGH + 1))
        noisy = self.utility(prompt, response, member) + member.temperature * float(rng.logistic())
        mid = (RATING_LOW + RATING_HIGH) / 2.0
        half = (RATING_HIGH - RATING_LOW) / 2.0
        # floor(x + 1/2) rounds halves up; round() would send 4.5 to 4 but 5.5 to 6 (banker's).
        value = math.floor(mid + half * (noisy - self.rating_center) / self.rating_scale + 0.5)
        return int(min(RATING_HIGH, max(RATING_LOW, value)))


def make_panel(
    gold: GoldScorer | str,
    n_members: int = 5,
    careless_share: float = 0.0,
    bias_std: float = 0.0,
    temperature: float = 0.1,
    seed: int = 0,
    **panel_options: float,
) -> SimulatedPanel:
    """A panel of ``n_members`` named ``sim-01``, ``sim-02``, ...

    Args:
        gold: a gold scorer, or a name / ``python:module:function`` for :func:`resolve_gold`.
        careless_share: share of careless members (rounded to a count, chosen at random).
        bias_std: each member's length bias is drawn from ``Normal(0, bias_std)``.
        temperature: judgment noise of every member.
        seed: seeds both the panel's composition and its judgments.
        panel_options: ``tie_margin``, ``rating_center``, ``rating_scale`` of :class:`SimulatedPanel`.
    """
    if n_members < 1:
        raise ValueError(f"n_members must be >= 1, got {n_members}")
    if not 0.0 <= careless_share <= 1.0:
        raise ValueError(f"careless_share must be in [0, 1], got {careless_share}")
    if bias_std < 0:
        raise ValueError(f"bias_std must be >= 0, got {bias_std}")
    scorer: Callable[[str, str], float] = resolve_gold(gold) if isinstance(gold, str) else gold
    rng = np.random.default_rng(seed)
    careless = set(rng.permutation(n_members)[: round(n_members * careless_share)].tolist())
    biases = rng.normal(0.0, bias_std, size=n_members) if bias_std > 0 else np.zeros(n_members)
    width = max(2, len(str(n_members)))
    members = tuple(
        AnnotatorProfile(f"sim-{i + 1:0{width}d}", float(biases[i]), temperature, i in careless)
        for i in range(n_members)
    )
    return SimulatedPanel(scorer, members, seed, **panel_options)
