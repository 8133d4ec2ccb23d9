"""A judge behind an OpenAI-compatible chat-completions endpoint (vLLM, llama.cpp server, Ollama, a hosted API).

``POST {url}/chat/completions`` with ``temperature: 0`` and, when asked, ``logprobs: true`` and
``top_logprobs``; the verdict then comes from the alternatives at the first answer token that names an
option, else from the text. Transient failures (connection errors, timeouts, 408/409/429 and 5xx answers) are retried with
exponential backoff by ``tenacity``; any other 4xx is the caller's mistake and fails at once. The API
key is read from the environment variable the config names, sent as a bearer token and never logged
or stored (the cache key holds the URL and model, not the key).
"""

from __future__ import annotations

import os
from dataclasses import dataclass, field
from typing import Any

import httpx
from tenacity import Retrying, retry_if_exception, stop_after_attempt, wait_exponential

from rlhfkit.judges.base import Answer

RETRY_STATUS = frozenset({408, 409, 429, 500, 502, 503, 504})
"""HTTP answers worth asking again."""


class JudgeHTTPError(RuntimeError):
    """The endpoint refused the question or answered something unreadable."""


def _transient(err: BaseException) -> bool:
    if isinstance(err, httpx.HTTPStatusError):
        return err.response.status_code in RETRY_STATUS
    return isinstance(err, httpx.TransportError)  # connection refused/reset, timeouts


def api_key(env_var: str) -> str | None:
    """The key from `env_var` ('' = no key); a named but unset variable is an error naming only the variable."""
    if not env_var:
        return None
    key = os.environ.get(env_var)
    if not key:
        raise JudgeHTTPError(f"the judge's API key variable {env_var} is not set in the environment")
    return key


def option_logprobs(choice: dict[str, Any], options: tuple[str, ...]) -> dict[str, float] | None:
    """Token -> log-prob of the alternatives at the first generated token that names an option, from an
    OpenAI ``choices[0]`` (an answer may begin "Answer: B": the verdict is at the third token)."""
    wanted = {o.lower() for o in options}
    for position in (choice.get("logprobs") or {}).get("content") or []:
        if not isinstance(position, dict) or str(position.get("token", "")).strip().lower() not in wanted:
            continue
        alternatives = position.get("top_logprobs") or [position]
        out: dict[str, float] = {}
        for alt in alternatives:
            token, lp = (alt.get("token"), alt.get("logprob")) if isinstance(alt, dict) else (None, None)
            if isinstance(token, str) and isinstance(lp, int | float):
                out[token] = max(out.get(token, -float("inf")), float(lp))
        return out or None
    return None


@dataclass
class HTTPJudge:
    """An OpenAI-compatible server as a judge."""

    url: str
    """Base URL up to the API version, e.g. ``http://127.0.0.1:8000/v1``."""
    model: str
    """The server's model name."""
    key_env: str = ""
    """Environment variable holding the API key ('' = send none)."""
    timeout_s: float = 60.0
    """Per-request timeout."""
    attempts: int = 5
    """Tries per question (the first included) before giving up."""
    backoff_s: float = 1.0
    """First wait between tries; doubles each time, at most 30 s."""
    max_tokens: int = 8
    """Longest answer (a label needs one or two tokens)."""
    top_logprobs: int = 5
    """Alternatives per token to ask for (0 = do not ask for log-probs)."""
    client: httpx.Client = field(default_factory=lambda: httpx.Client(), repr=False)
    """The HTTP client (tests inject one)."""

    @property
    def name(self) -> str:
        return f"http:{self.url.rstrip('/')}#{self.model}"

    def _body(self, messages: list[dict[str, str]]) -> dict[str, Any]:
        body: dict[str, Any] = {
            "model": self.model,
            "messages": messages,
            "temperature": 0,
            "max_tokens": self.max_tokens,
        }
        if self.top_logprobs:
            body |= {"logprobs": True, "top_logprobs": self.top_logprobs}
        return body

    def _post(self, body: dict[str, Any], headers: dict[str, str]) -> dict[str, Any]:
        reply = self.client.post(
            self.url.rstrip("/") + "/chat/completions", json=body, headers=headers, timeout=self.timeout_s
        )
        reply.raise_for_status()
        data = reply.json()
        if not isinstance(data, dict) or not data.get("choices"):
            raise JudgeHTTPError(f"{self.url}: the answer holds no choices")
        return data

    def answer(self, messages: list[dict[str, str]], options: tuple[str, ...]) -> Answer:
        key = api_key(self.key_env)
        headers = {"Authorization": f"Bearer {key}"} if key else {}
        retrying = Retrying(
            retry=retry_if_exception(_transient),
            stop=stop_after_attempt(self.attempts),
            wait=wait_exponential(multiplier=self.backoff_s, max=30),
            reraise=True,
        )
        try:
            data = retrying(self._post, self._body(messages), headers)
        except httpx.HTTPStatusError as err:
            # The body may echo the request; the status and URL say enough (and hold no key).
            raise JudgeHTTPError(f"{self.url}: HTTP {err.response.status_code} from the judge") from None
        except httpx.TransportError as err:
            raise JudgeHTTPError(f"{self.url}: {type(err).__name__} after {self.attempts} tries") from None
        choice = data["choices"][0]
        text = (choice.get("message") or {}).get("content") or ""
        return Answer(text=str(text), logprobs=option_logprobs(choice, options))
