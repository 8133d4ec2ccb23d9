"""A deterministic OpenAI-compatible chat-completions server on loopback, for the HTTP judge's tests.

It prefers the response whose text holds "good", else the longest (or always the first shown, when
`biased`), answers
``"Answer: X"`` with the first token's top log-probs (unless `logprobs` is off), and can fail the
next `fail_next` requests with `fail_status`, or wait `delay_s` before answering. Asked about one
response (a score question, "Answer with one word, GOOD or BAD."), it says GOOD with probability
0.9 when the response holds "good", else one that grows with the response's length.
"""

from __future__ import annotations

import contextlib
import json
import math
import re
import threading
import time
from collections.abc import Iterator
from dataclasses import dataclass, field
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any

import pytest


@dataclass
class Behaviour:
    biased: bool = False
    logprobs: bool = True
    fail_next: int = 0
    fail_status: int = 503
    delay_s: float = 0.0
    hits: int = 0
    auth: list[str | None] = field(default_factory=list)


def pick(content: str, biased: bool) -> str:
    """The letter of the first shown response holding "good" (A when none, or when biased)."""
    shown = re.findall(r"Response ([A-Z]):\n(.*?)(?=\n\nResponse [A-Z]:|\n\n|$)", content, re.S)
    if biased or not shown:
        return "A"
    good = [letter for letter, text in shown if "good" in text]
    # Otherwise the longest response (the first shown among equals): content decides, not position.
    return good[0] if good else max(shown, key=lambda s: len(s[1]))[0]


def score(content: str) -> tuple[str, str, float] | None:
    """(good label, bad label, P(good)) of a score question; None for other questions."""
    asked = re.search(r"\nResponse:\n(.*?)\n\n.*one word, (\S+) or (\S+)\.", content, re.S)
    if asked is None:
        return None
    text, good, bad = asked.groups()
    return good, bad, 0.9 if "good" in text else 1 - 1 / (2 + len(text) / 10)


def reply(body: dict[str, Any], b: Behaviour) -> dict[str, Any]:
    content = body["messages"][-1]["content"]
    scored = score(content)
    if scored is not None:
        good, bad, p = scored
        top = [{"token": good, "logprob": math.log(p)}, {"token": bad, "logprob": math.log(1 - p)}]
        choice: dict[str, Any] = {"index": 0, "message": {"role": "assistant", "content": good if p >= 0.5 else bad}}
        if b.logprobs and body.get("logprobs"):
            choice["logprobs"] = {
                "content": [{"token": top[p < 0.5]["token"], "logprob": math.log(max(p, 1 - p)), "top_logprobs": top}]
            }
        return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}
    letter = pick(content, b.biased)
    choice = {"index": 0, "message": {"role": "assistant", "content": f"Answer: {letter}"}}
    if b.logprobs and body.get("logprobs"):
        other = "B" if letter == "A" else "A"
        top = [{"token": " " + letter, "logprob": math.log(0.8)}, {"token": " " + other, "logprob": math.log(0.15)}]
        verdict = {"token": " " + letter, "logprob": math.log(0.8), "top_logprobs": top}
        # Token by token, as servers report it: the verdict is the third token of "Answer: X".
        choice["logprobs"] = {
            "content": [{"token": "Answer", "logprob": -0.01}, {"token": ":", "logprob": 0.0}, verdict]
        }
    return {"id": "x", "object": "chat.completion", "model": body["model"], "choices": [choice]}


def serve(b: Behaviour) -> tuple[ThreadingHTTPServer, str]:
    class Handler(BaseHTTPRequestHandler):
        def log_message(self, *args: Any) -> None:
            pass

        def do_POST(self) -> None:
            b.hits += 1
            b.auth.append(self.headers.get("Authorization"))
            body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
            if b.delay_s:
                time.sleep(b.delay_s)
            if b.fail_next > 0:
                b.fail_next -= 1
                self.send_response(b.fail_status)
                self.end_headers()
                return
            data = json.dumps(reply(body, b)).encode()
            self.send_response(200)
            self.send_header("Content-Type", "application/json")
            self.send_header("Content-Length", str(len(data)))
            self.end_headers()
            with contextlib.suppress(BrokenPipeError, ConnectionResetError):  # the client timed out and left
                self.wfile.write(data)

    server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    server.daemon_threads = True
    threading.Thread(target=server.serve_forever, daemon=True).start()
    return server, f"http://127.0.0.1:{server.server_address[1]}/v1"


@pytest.fixture
def fake_server() -> Iterator[tuple[Behaviour, str]]:
    """(behaviour to tune, base URL) of a fresh fake server."""
    behaviour = Behaviour()
    server, url = serve(behaviour)
    yield behaviour, url
    server.shutdown()
    server.server_close()
