"""What one PPO rollout produces, and how raw reward scores become the score PPO credits.

`Rollout` is the container that flows from generation to the update (in the spirit of OpenRLHF's
``Experience``): every field documented with its shape and meaning. Shapes: B = samples in the
rollout, P = prompt columns (left-padded), R = response columns (right-padded after the stop token).

Score shaping (Huang et al. 2024, "The N+ Implementation Details of RLHF with PPO"; Ziegler et al.
2019, sec. 2.2), applied in this order by `shape_scores`:

1. normalization by a running mean and std of every raw score seen so far (`RunningMoments`, saved in
   checkpoints), so the KL coefficient means the same thing whatever the reward's scale;
2. the no-EOS rule: a response that did not end within the length limit gets its score replaced
   (Huang et al. use -1) or lowered by a penalty;
3. clipping to ``[-clip, clip]``.
"""

from __future__ import annotations

import math
from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, NamedTuple, Protocol, TypeVar

import torch
from torch import Tensor

from rlhfkit.rollout.generate import Samples


class Rollout(NamedTuple):
    """One batch of experience: sampled responses with everything the PPO update needs."""

    input_ids: Tensor
    """(B, P + R) long: left-padded prompt tokens, then the response tokens, pad after the stop."""
    attention_mask: Tensor
    """(B, P + R) long: 1 on real prompt and response tokens (the response up to and incl. its EOS)."""
    response_mask: Tensor
    """(B, R) long: 1 on response tokens (= ``attention_mask[:, P:]``); every per-token field uses it."""
    logps: Tensor
    """(B, R) float: log-prob of each sampled token under the policy that sampled it, at the sampling
    temperature ("old" log-probs of the PPO ratio)."""
    ref_logps: Tensor
    """(B, R) float: the same under the frozen reference policy."""
    values: Tensor
    """(B, R) float: value-head estimate V(s_t) of the state before response token t, at sampling time."""
    kl: Tensor
    """(B, R) float: per-token KL(policy || reference) estimate (k1, k2 or k3) at the sampled tokens."""
    scores: Tensor
    """(B,) float: the shaped score (normalized, no-EOS rule, clipped) credited at the last token."""
    raw_scores: Tensor
    """(B,) float: the reward source's score before shaping (what `ppo/score` reports)."""
    rewards: Tensor
    """(B, R) float: per-token reward ``-beta * kl`` plus ``scores`` at each row's last token."""
    advantages: Tensor
    """(B, R) float: GAE advantages, whitened over the rollout's valid tokens when configured."""
    returns: Tensor
    """(B, R) float: GAE lambda-returns ``A + V`` (before whitening): the value head's targets."""
    ended: Tensor
    """(B,) bool: the response ended with a stop token within the length limit."""
    trunk: Tensor | None = None
    """(B, P + R, H) float: output of the policy's frozen bottom blocks (`ActorCritic.trunk`), which
    training does not change, so every PPO epoch reuses it; None when nothing is frozen or cached."""

    @property
    def response_start(self) -> int:
        """P: the column where every response starts."""
        return self.input_ids.shape[1] - self.response_mask.shape[1]

    def select(self, rows: Tensor) -> Rollout:
        """The rows `rows` (a 1-D index tensor) of every field, with all-padding columns dropped."""
        return compact(Rollout._make(None if field is None else field[rows] for field in self))


class _Batch(Protocol):
    """A batch of experience laid out like `Rollout` (input_ids, attention_mask, response_mask, trunk)."""

    @property
    def input_ids(self) -> Tensor: ...
    @property
    def attention_mask(self) -> Tensor: ...
    @property
    def response_mask(self) -> Tensor: ...
    @property
    def response_start(self) -> int: ...
    def __iter__(self) -> Iterator[Any]: ...


B_ = TypeVar("B_", bound=_Batch)


def compact(rollout: B_) -> B_:
    """Drop the prompt columns that are padding in every row and the response columns past the
    longest response: a minibatch then costs only what its own rows need.

    Log-probs do not change: left padding is masked out, and rotary position embeddings depend only
    on the distance between tokens, which dropping whole leading columns preserves.
    """
    start = rollout.response_start
    used = rollout.attention_mask[:, :start].bool().any(dim=0)
    first = int(used.int().argmax()) if bool(used.any()) else start
    in_response = rollout.response_mask.bool().any(dim=0)
    width = int(in_response.nonzero().max()) + 1 if bool(in_response.any()) else 1
    fields: list[Tensor | None] = []
    for name, value in zip(type(rollout)._fields, rollout, strict=True):  # type: ignore[attr-defined]
        if name in ("input_ids", "attention_mask", "trunk") and value is not None:
            fields.append(value[:, first : start + width])
        elif value is not None and value.dim() == 2:
            fields.append(value[:, :width])
        else:
            fields.append(value)
    return type(rollout)._make(fields)  # type: ignore[attr-defined]  # every _Batch is a NamedTuple


@dataclass
class RunningMoments:
    """Running mean and variance of every value seen, merged batch by batch.

    Chan, Golub and LeVeque 1979 ("Updating formulae and a pairwise algorithm for computing sample
    variances"), eq. 2.1b: for batches A and B with counts n_A, n_B, means m_A, m_B and sums of
    squared deviations M_A, M_B, ``delta = m_B - m_A``, ``m = m_A + delta * n_B / n`` and
    ``M = M_A + M_B + delta^2 * n_A * n_B / n``; numerically stable, unlike sum-of-squares.
    """

    count: int = 0
    """Values seen."""
    mean: float = 0.0
    """Their mean."""
    m2: float = 0.0
    """Their summed squared deviation from the mean."""

    def update(self, values: Tensor) -> None:
        """Merge a batch ``(N,)`` of values."""
        x = values.detach().double().flatten()
        n_b = x.numel()
        if n_b == 0:
            return
        mean_b = float(x.mean())
        m2_b = float(((x - mean_b) ** 2).sum())
        n = self.count + n_b
        delta = mean_b - self.mean
        self.mean += delta * n_b / n
        self.m2 += m2_b + delta * delta * self.count * n_b / n
        self.count = n

    @property
    def std(self) -> float:
        """Unbiased standard deviation (1.0 until two values have been seen)."""
        return math.sqrt(self.m2 / (self.count - 1)) if self.count > 1 else 1.0

    def state_dict(self) -> dict[str, Any]:
        return {"count": self.count, "mean": self.mean, "m2": self.m2}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.count, self.mean, self.m2 = int(state["count"]), float(state["mean"]), float(state["m2"])


SCORE_EPS = 1e-8
"""Floor added to the running std before dividing by it."""


def normalize_scores(scores: Tensor, moments: RunningMoments, shift: bool = True) -> Tensor:
    """``(s - mean) / (std + eps)`` with the running moments; ``shift=False`` only rescales. ``(B,) -> (B,)``."""
    centered = scores - moments.mean if shift else scores
    return centered / (moments.std + SCORE_EPS)


def apply_no_eos_rule(scores: Tensor, ended: Tensor, *, replace: float | None, penalty: float) -> Tensor:
    """Scores of responses that did not end (``ended`` False) replaced by `replace` when it is set,
    else lowered by `penalty`. ``(B,), (B,) -> (B,)``. Huang et al. 2024, detail on EOS: replace by -1."""
    if replace is not None:
        return torch.where(ended, scores, torch.full_like(scores, replace))
    return torch.where(ended, scores, scores - penalty)


def shape_scores(
    raw: Tensor,
    ended: Tensor,
    moments: RunningMoments | None,
    *,
    no_eos_score: float | None,
    no_eos_penalty: float,
    clip: float,
) -> Tensor:
    """Raw ``(B,)`` scores -> the ``(B,)`` scores credited at the last token (see the module docstring).

    `moments` (None: no normalization) is updated with `raw` first, so the batch is normalized by
    statistics that include it, as TRL's running-moments scaling does. ``clip <= 0`` disables clipping.
    """
    scores = raw.float()
    if moments is not None:
        moments.update(scores)
        scores = normalize_scores(scores, moments)
    scores = apply_no_eos_rule(scores, ended, replace=no_eos_score, penalty=no_eos_penalty)
    return scores.clamp(-clip, clip) if clip > 0 else scores


def concat_samples(parts: list[Samples], pad_id: int) -> Samples:
    """One `Samples` from several generation calls of different widths: prompts re-padded on the
    left to the widest, responses on the right to the longest (masks padded with 0)."""
    if len(parts) == 1:
        return parts[0]
    p_width = max(s.prompt_ids.shape[1] for s in parts)
    r_width = max(s.response_ids.shape[1] for s in parts)

    def left(t: Tensor, value: int) -> Tensor:
        return torch.nn.functional.pad(t, (p_width - t.shape[1], 0), value=value)

    def right(t: Tensor, value: int) -> Tensor:
        return torch.nn.functional.pad(t, (0, r_width - t.shape[1]), value=value)

    return Samples(
        prompt_ids=torch.cat([left(s.prompt_ids, pad_id) for s in parts]),
        prompt_mask=torch.cat([left(s.prompt_mask, 0) for s in parts]),
        response_ids=torch.cat([right(s.response_ids, pad_id) for s in parts]),
        response_mask=torch.cat([right(s.response_mask, 0) for s in parts]),
        ended=torch.cat([s.ended for s in parts]),
        texts=[t for s in parts for t in s.texts],
        prompts_truncated=sum(s.prompts_truncated for s in parts),
    )
