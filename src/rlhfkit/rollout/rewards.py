"""Reward sources behind one interface: ``source(prompts, responses) -> RewardOutput``.

The RL loop never knows where a score comes from. `resolve_reward(spec)` turns the REWARD of the
command line into a source:

- a reward-model directory (from ``rlhfkit reward train``): scored by `rlhfkit.models.reward`, with the
  normalization saved in the directory applied; an ensemble model also reports its disagreement (std);
- ``python:MODULE:FUNCTION`` (MODULE may also be a path to a ``.py`` file): a Python function, either
  batched, ``f(prompts, responses) -> list[float]``, or per item, ``f(prompt, response) -> float``.
  Which one is read from the name of the first parameter (``prompts`` = batched, ``prompt`` = per
  item) or from a ``batched`` attribute on the function (``f.batched = True``), which wins;
- an ``http://`` or ``https://`` URL: ``POST {"prompts": [...], "responses": [...]}`` must answer
  ``{"scores": [...]}`` (and may add ``"std": [...]``); failures are retried with exponential backoff,
  then the step fails with a `RewardError` naming the URL;
- several of the above separated by commas: an ensemble whose score is the members' mean and whose
  std is their (unbiased) standard deviation.

Whenever a source reports a std, ``ensemble_k > 0`` turns its score into ``mean - k * std``: an
uncertainty-penalized reward that the policy cannot raise by drifting where the members disagree
(Coste et al. 2024, "Reward Model Ensembles Help Mitigate Overoptimization", eq. 6 with the std).
"""

from __future__ import annotations

import functools
import importlib
import importlib.util
import inspect
import math
import sys
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NamedTuple, Protocol

import torch
from torch import Tensor

from rlhfkit.data.records import PromptText


class RewardError(RuntimeError):
    """A reward source could not produce scores (unreachable endpoint, bad answer, wrong length)."""


class RewardOutput(NamedTuple):
    """Scores of one batch of (prompt, response) pairs."""

    scores: Tensor
    """(B,) float32 scores, higher is better (for an ensemble: the mean, minus k * std when asked)."""
    std: Tensor | None
    """(B,) float32 disagreement of an ensemble's members, or None for a single scorer."""


class RewardSource(Protocol):
    """Anything that scores responses to prompts."""

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        """Score ``responses[i]`` as a reply to ``prompts[i]``; returns (B,) tensors."""
        ...


def _as_scores(values: Sequence[Any], n: int, where: str) -> Tensor:
    """A (n,) float32 tensor of `values`, or a RewardError naming `where` when the length is wrong."""
    try:
        out = torch.tensor([float(v) for v in values], dtype=torch.float32)
    except (TypeError, ValueError) as e:
        raise RewardError(f"{where} returned non-numeric scores: {e}") from None
    if out.shape != (n,):
        raise RewardError(f"{where} returned {out.numel()} scores for {n} responses")
    return out


# --- Python functions -------------------------------------------------------------------------


def import_function(ref: str, what: str = "python reward") -> Callable[..., Any]:
    """``MODULE:FUNCTION`` or ``path/to/file.py:FUNCTION`` -> the function; errors name it as `what`.

    The one resolver of user-supplied Python callables (reward functions, gold scorers)."""
    module_ref, sep, name = ref.rpartition(":")
    if not sep or not module_ref or not name:
        raise ValueError(f"{what} {ref!r} must be MODULE:FUNCTION (or FILE.py:FUNCTION)")
    if module_ref.endswith(".py"):
        path = Path(module_ref).expanduser().resolve()
        if not path.is_file():
            raise ValueError(f"{what} file {path} does not exist")
        spec = importlib.util.spec_from_file_location(f"rlhfkit_user_{path.stem}", path)
        assert spec is not None and spec.loader is not None
        module = importlib.util.module_from_spec(spec)
        sys.modules[spec.name] = module
        spec.loader.exec_module(module)
    else:
        try:
            module = importlib.import_module(module_ref)
        except ImportError as e:
            raise ValueError(f"{what}: cannot import module {module_ref!r}: {e}") from None
    fn = getattr(module, name, None)
    if not callable(fn):
        raise ValueError(f"{what}: {module_ref} has no function {name!r}")
    return fn


def is_batched(fn: Callable[..., Any]) -> bool:
    """Whether `fn` scores whole lists (``fn(prompts, responses)``) or one pair (``fn(prompt, response)``).

    An explicit ``fn.batched`` attribute decides; otherwise the first parameter's name does.
    """
    flag = getattr(fn, "batched", None)
    if isinstance(flag, bool):
        return flag
    params = list(inspect.signature(fn).parameters)
    first = params[0] if params else ""
    if first == "prompts":
        return True
    if first == "prompt":
        return False
    raise ValueError(
        f"python reward {getattr(fn, '__name__', fn)!r}: name its first parameter 'prompts' (batched: "
        f"f(prompts, responses) -> list[float]) or 'prompt' (per item: f(prompt, response) -> float), "
        f"or set f.batched = True/False"
    )


@dataclass
class PythonReward:
    """A Python function as a reward source."""

    fn: Callable[..., Any]
    """The scoring function (see `is_batched` for its two accepted forms)."""
    name: str
    """How errors name it (the spec)."""

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        if is_batched(self.fn):
            values = self.fn(list(prompts), list(responses))
        else:
            values = [self.fn(p, r) for p, r in zip(prompts, responses, strict=True)]
        return RewardOutput(_as_scores(values, len(responses), self.name), None)


@functools.cache
def _vader() -> Any:
    from vaderSentiment.vaderSentiment import SentimentIntensityAnalyzer

    return SentimentIntensityAnalyzer()


def vader_sentiment(prompts: list[PromptText], responses: list[str]) -> list[float]:
    """A known reward for demos and benchmarks: the VADER compound sentiment of each response, in
    [-1, 1] (Hutto and Gilbert 2014). ``--reward python:rlhfkit.rollout.rewards:vader_sentiment``."""
    return [float(_vader().polarity_scores(r)["compound"]) for r in responses]


# --- HTTP endpoints ---------------------------------------------------------------------------


class TransientError(Exception):
    """A failed request that the same request may yet pass (connection error, timeout, 5xx, 429)."""


@dataclass
class HTTPReward:
    """A reward served elsewhere: ``POST {"prompts", "responses"} -> {"scores"[, "std"]}``.

    Connection errors, timeouts and 5xx/429 answers are retried ``retries`` times, waiting
    ``backoff * 2**attempt`` seconds between tries; 4xx answers and malformed JSON fail at once
    (sending the same request again cannot fix them).
    """

    url: str
    """Endpoint URL."""
    timeout: float = 30.0
    """Seconds to wait for one answer."""
    retries: int = 3
    """Retries after the first failed attempt."""
    backoff: float = 0.5
    """First wait between attempts, in seconds; doubled after each retry."""

    def _attempt(self, payload: dict[str, Any]) -> dict[str, Any]:
        """One POST: the body, a `TransientError` worth retrying, or a `RewardError` that is final."""
        import httpx

        try:
            answer = httpx.post(self.url, json=payload, timeout=self.timeout)
        except httpx.HTTPError as e:  # connection refused, timeout, DNS ...
            raise TransientError(f"{type(e).__name__}: {e}") from None
        if answer.status_code >= 500 or answer.status_code == 429:
            raise TransientError(f"HTTP {answer.status_code}")
        if answer.status_code >= 400:
            raise RewardError(
                f"reward endpoint {self.url} refused the request: HTTP {answer.status_code} {answer.text[:200]}"
            )
        try:
            body = answer.json()
        except ValueError:
            raise RewardError(f"reward endpoint {self.url} did not answer JSON: {answer.text[:200]!r}") from None
        if not isinstance(body, dict) or "scores" not in body:
            raise RewardError(f"reward endpoint {self.url} answered without a 'scores' list: {str(body)[:200]}")
        return body

    def _post(self, payload: dict[str, Any]) -> dict[str, Any]:
        """`_attempt` retried by `tenacity`: ``backoff * 2**(n - 1)`` seconds after the n-th failure."""
        from tenacity import RetryError, Retrying, retry_if_exception_type, stop_after_attempt, wait_exponential

        retrying = Retrying(
            stop=stop_after_attempt(self.retries + 1),
            wait=wait_exponential(multiplier=self.backoff, exp_base=2),
            retry=retry_if_exception_type(TransientError),
        )
        try:
            return retrying(self._attempt, payload)
        except RetryError as e:
            raise RewardError(
                f"reward endpoint {self.url} failed after {self.retries + 1} attempts (last error: "
                f"{e.last_attempt.exception()}); the step was not trained"
            ) from None

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        body = self._post({"prompts": list(prompts), "responses": list(responses)})
        scores = _as_scores(body["scores"], len(responses), f"reward endpoint {self.url}")
        std = body.get("std")
        return RewardOutput(
            scores, None if std is None else _as_scores(std, len(responses), f"reward endpoint {self.url}")
        )


# --- Reward models and ensembles --------------------------------------------------------------


@dataclass
class ModelReward:
    """A trained reward-model directory (``reward_head.safetensors`` + ``reward.json``)."""

    model: Any
    """The loaded `rlhfkit.models.reward.RewardModel`."""
    batch_size: int = 16
    """Rows per scoring forward pass."""

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        out = self.model.score(list(prompts), list(responses), batch_size=self.batch_size)
        std = None if out.std is None else out.std.detach().float().cpu()
        return RewardOutput(out.mean.detach().float().cpu(), std)


@dataclass
class EnsembleReward:
    """Several sources scored together: mean over members, std across them ((M, B) -> (B,))."""

    members: list[RewardSource]
    """At least two sources."""

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        stacked = torch.stack([m(prompts, responses).scores for m in self.members])  # (M, B)
        return RewardOutput(stacked.mean(dim=0), stacked.std(dim=0))


@dataclass
class UncertaintyPenalized:
    """``mean - k * std`` wherever the inner source reports a std (Coste et al. 2024)."""

    inner: RewardSource
    """The source whose score is penalized."""
    k: float
    """Weight of the std; 0 leaves the mean as it is."""

    def __call__(self, prompts: list[PromptText], responses: list[str]) -> RewardOutput:
        out = self.inner(prompts, responses)
        if out.std is None or self.k == 0.0:
            return out
        return RewardOutput(out.scores - self.k * out.std, out.std)


def _python_source(spec: str, **_: Any) -> RewardSource:
    ref = spec.removeprefix("python:")
    return PythonReward(import_function(ref), name=spec)


def _http_source(
    spec: str, *, http_timeout: float = 30.0, http_retries: int = 3, http_backoff: float = 0.5, **_: Any
) -> RewardSource:
    return HTTPReward(spec, timeout=http_timeout, retries=http_retries, backoff=http_backoff)


def _model_source(spec: str, *, device: str | torch.device = "cpu", batch_size: int = 16, **_: Any) -> RewardSource:
    path = Path(spec).expanduser()
    if not path.is_dir():
        raise ValueError(
            f"reward {spec!r} is not a reward-model directory, a python:MODULE:FUNCTION or an http(s):// URL"
        )
    if not (path / "reward_head.safetensors").exists():
        raise ValueError(
            f"{path} is not a reward-model directory (no reward_head.safetensors); train one with `rlhfkit reward train`"
        )
    from rlhfkit.models.reward import load_reward_model

    return ModelReward(load_reward_model(path, device), batch_size=batch_size)


REWARD_KINDS: dict[str, Callable[..., RewardSource]] = {
    "python:": _python_source,
    "http://": _http_source,
    "https://": _http_source,
}
"""Spec prefix -> source builder; a spec with none of these prefixes is a reward-model directory."""


def _resolve_one(spec: str, **options: Any) -> RewardSource:
    for prefix, build in REWARD_KINDS.items():
        if spec.startswith(prefix):
            return build(spec, **options)
    return _model_source(spec, **options)


def resolve_reward(
    spec: str,
    *,
    ensemble_k: float = 0.0,
    device: str | torch.device = "cpu",
    batch_size: int = 16,
    http_timeout: float = 30.0,
    http_retries: int = 3,
    http_backoff: float = 0.5,
) -> RewardSource:
    """The reward source named by `spec` (see the module docstring for the forms).

    Args:
        spec: a reward-model directory, ``python:MODULE:FUNCTION``, an ``http(s)://`` URL, or several
            of these separated by commas (an ensemble).
        ensemble_k: score = mean - ensemble_k * std where a std is known; must be >= 0.
        device: where a reward model runs.
        batch_size: rows per reward-model forward pass.
        http_timeout, http_retries, http_backoff: see `HTTPReward`.
    """
    if not spec.strip():
        raise ValueError("reward is required: a reward-model directory, python:MODULE:FUNCTION or an http(s):// URL")
    if ensemble_k < 0 or not math.isfinite(ensemble_k):
        raise ValueError(f"ensemble_k must be a finite number >= 0, got {ensemble_k}")
    options = {
        "device": device,
        "batch_size": batch_size,
        "http_timeout": http_timeout,
        "http_retries": http_retries,
        "http_backoff": http_backoff,
    }
    parts = [p.strip() for p in spec.split(",") if p.strip()]
    source: RewardSource
    if len(parts) > 1:
        source = EnsembleReward([_resolve_one(p, **options) for p in parts])
    else:
        source = _resolve_one(parts[0], **options)
    return UncertaintyPenalized(source, ensemble_k) if ensemble_k > 0 else source
