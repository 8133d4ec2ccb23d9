"""Reward sources: Python functions (both forms), a real HTTP server, ensembles, reward-model dirs."""

from __future__ import annotations

import json
import socket
import threading
from collections.abc import Iterator
from http.server import BaseHTTPRequestHandler, HTTPServer
from pathlib import Path

import pytest
import torch

from rlhfkit.rollout.rewards import RewardError, is_batched, resolve_reward

REWARDS = """
def batched(prompts, responses):
    return [len(r) for r in responses]

def per_item(prompt, response):
    return float(response.count("a"))

def flagged(x, y):
    return [1.0 for _ in y]
flagged.batched = True

def ambiguous(x, y):
    return 0.0

def short(prompts, responses):
    return [1.0]
"""


@pytest.fixture
def reward_file(tmp_path: Path) -> Path:
    path = tmp_path / "my_rewards.py"
    path.write_text(REWARDS)
    return path


def test_python_function_batched_and_per_item(reward_file: Path) -> None:
    prompts, responses = ["p1", "p2"], ["banana", "xy"]
    batched = resolve_reward(f"python:{reward_file}:batched")
    assert batched(prompts, responses).scores.tolist() == [6.0, 2.0]
    per_item = resolve_reward(f"python:{reward_file}:per_item")
    out = per_item(prompts, responses)
    assert out.scores.tolist() == [3.0, 0.0] and out.std is None
    assert resolve_reward(f"python:{reward_file}:flagged")(prompts, responses).scores.tolist() == [1.0, 1.0]


def test_python_module_form(reward_file: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.syspath_prepend(str(reward_file.parent))
    assert resolve_reward("python:my_rewards:batched")(["p"], ["abc"]).scores.tolist() == [3.0]


def test_python_function_errors(reward_file: Path) -> None:
    from importlib import util

    spec = util.spec_from_file_location("r", reward_file)
    module = util.module_from_spec(spec)
    spec.loader.exec_module(module)
    with pytest.raises(ValueError, match="first parameter 'prompts'"):
        is_batched(module.ambiguous)
    with pytest.raises(RewardError, match="returned 1 scores for 2 responses"):
        resolve_reward(f"python:{reward_file}:short")(["a", "b"], ["x", "y"])
    with pytest.raises(ValueError, match="no function 'missing'"):
        resolve_reward(f"python:{reward_file}:missing")
    with pytest.raises(ValueError, match="not a reward-model directory"):
        resolve_reward(str(reward_file.parent / "nowhere"))


def test_ensemble_mean_and_uncertainty_penalty(reward_file: Path) -> None:
    spec = f"python:{reward_file}:batched, python:{reward_file}:per_item"
    prompts, responses = ["p", "q"], ["aaab", "xy"]
    out = resolve_reward(spec)(prompts, responses)
    # members: batched = [4, 2], per_item = [3, 0]; mean = [3.5, 1]; unbiased std of two values |a-b|/sqrt(2)
    assert out.scores.tolist() == pytest.approx([3.5, 1.0])
    assert out.std.tolist() == pytest.approx([1 / 2**0.5, 2 / 2**0.5])
    penalized = resolve_reward(spec, ensemble_k=2.0)(prompts, responses)
    assert penalized.scores.tolist() == pytest.approx([3.5 - 2 / 2**0.5, 1.0 - 4 / 2**0.5])


class _Server:
    """A real HTTP reward server on 127.0.0.1: scores = response lengths; fails the first `fail` calls."""

    def __init__(self, fail: int = 0, status: int = 503) -> None:
        self.calls = 0
        owner = self

        class Handler(BaseHTTPRequestHandler):
            def do_POST(self) -> None:
                owner.calls += 1
                body = json.loads(self.rfile.read(int(self.headers["Content-Length"])))
                if owner.calls <= fail:
                    self.send_response(status)
                    self.end_headers()
                    return
                answer = json.dumps({"scores": [len(r) for r in body["responses"]]}).encode()
                self.send_response(200)
                self.send_header("Content-Type", "application/json")
                self.send_header("Content-Length", str(len(answer)))
                self.end_headers()
                self.wfile.write(answer)

            def log_message(self, *args: object) -> None:
                pass

        self.httpd = HTTPServer(("127.0.0.1", 0), Handler)
        self.url = f"http://127.0.0.1:{self.httpd.server_address[1]}/score"
        self.thread = threading.Thread(target=self.httpd.serve_forever, daemon=True)

    def __enter__(self) -> _Server:
        self.thread.start()
        return self

    def __exit__(self, *exc: object) -> None:
        self.httpd.shutdown()
        self.httpd.server_close()


def test_http_source_scores_and_retries_server_errors() -> None:
    with _Server(fail=2) as server:
        source = resolve_reward(server.url, http_retries=3, http_backoff=0.01)
        assert source(["p", "q"], ["abc", "de"]).scores.tolist() == [3.0, 2.0]
        assert server.calls == 3  # two 503s retried, the third answered


def test_http_source_gives_up_with_the_url() -> None:
    with _Server(fail=100) as server:
        source = resolve_reward(server.url, http_retries=2, http_backoff=0.01)
        with pytest.raises(RewardError, match=f"{server.url} failed after 3 attempts.*HTTP 503"):
            source(["p"], ["x"])
        assert server.calls == 3
    with _Server(fail=100, status=400) as server:  # a client error is not retried
        with pytest.raises(RewardError, match="refused the request: HTTP 400"):
            resolve_reward(server.url, http_retries=2, http_backoff=0.01)(["p"], ["x"])
        assert server.calls == 1


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def test_http_source_unreachable_port_fails_with_the_url() -> None:
    url = f"http://127.0.0.1:{_free_port()}/reward"
    source = resolve_reward(url, http_retries=2, http_backoff=0.01, http_timeout=2.0)
    with pytest.raises(RewardError, match=f"reward endpoint {url} failed after 3 attempts.*ConnectError"):
        source(["p"], ["x"])


@pytest.fixture(scope="module")
def reward_dir(tmp_path_factory: pytest.TempPathFactory) -> Iterator[Path]:
    from rlhfkit.models.reward import Normalization, build_reward_model, save_reward_model

    rm = build_reward_model("tiny", n_heads=3, seed=1)
    rm.set_normalization(Normalization(gain=(2.0, 0.5, 1.0), bias=(0.1, -0.2, 0.3)))
    out = save_reward_model(rm, tmp_path_factory.mktemp("rm") / "rm")
    yield out


def test_reward_model_directory_source(reward_dir: Path) -> None:
    from rlhfkit.models.reward import load_reward_model

    prompts, responses = ["Hello", "Review a film"], ["Nice.", "It was long and dull"]
    expected = load_reward_model(reward_dir).score(prompts, responses)
    out = resolve_reward(str(reward_dir))(prompts, responses)
    torch.testing.assert_close(out.scores, expected.mean)
    torch.testing.assert_close(out.std, expected.std)
    penalized = resolve_reward(str(reward_dir), ensemble_k=0.5)(prompts, responses)
    torch.testing.assert_close(penalized.scores, expected.mean - 0.5 * expected.std)
