"""The judge interface, and the wrapper every judge is asked through (cache, request budget, readout).

A judge answers one chat question with its text and, where it can, the log-probabilities of the first
answer token's candidates. `Asker` puts a cache and a budget in front of any judge and turns the
answer into option probabilities (`rlhfkit.judges.verdicts`).
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal, NamedTuple, Protocol

from rlhfkit.judges.cache import JudgeCache, cache_key
from rlhfkit.judges.verdicts import OptionProbs, probs_from_logprobs, probs_from_text

Readout = Literal["auto", "logprobs", "text"]
"""Where the verdict is read: log-probs when the judge returns them (auto), only log-probs, only text."""


class Answer(NamedTuple):
    """A judge's reply to one question."""

    text: str
    """The answer text."""
    logprobs: dict[str, float] | None
    """Candidate tokens at the answer's verdict position -> log-probability (None: not available)."""


class Judge(Protocol):
    """Anything that answers a chat question: a local model or an OpenAI-compatible server."""

    @property
    def name(self) -> str:
        """Identity of the judge (model and endpoint) for the cache key."""
        ...

    def answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer:
        """Reply to `messages`; `options` are the labels a valid answer uses."""
        ...


class BudgetExhausted(RuntimeError):
    """The run asked for more judge requests than its budget allows."""


@dataclass
class Asker:
    """A judge behind a cache and a request budget, returning option probabilities."""

    judge: Judge
    """The judge."""
    cache: JudgeCache | None = None
    """Answers already paid for (None: no cache)."""
    max_requests: int = 0
    """Requests this asker may send to the judge (0 = unlimited); cache hits are free."""
    readout: Readout = "auto"
    """Where verdicts are read."""
    requests: int = 0
    """Requests sent so far."""
    hits: int = 0
    """Answers found in the cache."""
    unreadable: int = 0
    """Answers that named no option."""

    def ask(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> OptionProbs | None:
        """Option probabilities of one question (None when the answer names no option)."""
        key = cache_key(self.judge.name, messages, options)
        answer = self.cache.get(key) if self.cache is not None else None
        if answer is None:
            if self.max_requests and self.requests >= self.max_requests:
                raise BudgetExhausted(f"the judge's request budget ({self.max_requests}) is spent")
            self.requests += 1
            answer = self.judge.answer(messages, options)
            if self.cache is not None:
                self.cache.put(key, answer.text, answer.logprobs)
        else:
            self.hits += 1
        probs = read_verdict(Answer(*answer), options, self.readout)
        self.unreadable += probs is None
        return probs


def read_verdict(answer: Answer, options: tuple[str, ...], readout: Readout) -> OptionProbs | None:
    """Option probabilities from the answer's log-probs and/or text, as `readout` says."""
    from_logprobs = None
    if readout != "text" and answer.logprobs:
        from_logprobs = probs_from_logprobs(answer.logprobs, options)
    if from_logprobs is not None or readout == "logprobs":
        return from_logprobs
    return probs_from_text(answer.text, options)
