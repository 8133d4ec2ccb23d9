"""The OpenAI-compatible judge against a fake server on loopback: readouts, retries, failures, slowness, keys."""

from __future__ import annotations

from typing import Any

import pytest

from rlhfkit.judges import Asker, judge_pair, load_templates
from rlhfkit.judges.http import HTTPJudge, JudgeHTTPError


def _judge(url: str, **kw: Any) -> HTTPJudge:
    return HTTPJudge(url, "fake-model", backoff_s=0.01, **kw)


def test_verdict_from_logprobs_and_both_orders(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    v = judge_pair(Asker(_judge(url)), load_templates(), "Q", "a good answer", "a poor answer", on_flip="tie")
    # Each order: P(good) = 0.8 / (0.8 + 0.15); both orders agree.
    assert v.label == "first" and not v.flipped and v.p_first == pytest.approx(0.8 / 0.95)
    assert b.hits == 2


def test_text_readout_when_the_server_gives_no_logprobs(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.logprobs = False
    v = judge_pair(Asker(_judge(url)), load_templates(), "Q", "a poor answer", "a good answer", on_flip="tie")
    assert (v.label, v.p_forward, v.p_reverse) == ("second", 0.0, 0.0)


def test_position_bias_is_a_flip(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.biased = True
    v = judge_pair(Asker(_judge(url)), load_templates(), "Q", "x", "y", on_flip="unlabelled")
    assert v.flipped and v.label is None


def test_transient_failures_are_retried(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.fail_next = 2  # two 503s, then an answer
    answer = _judge(url, attempts=3).answer(
        [{"role": "user", "content": "Response A:\ngood\n\nResponse B:\nbad"}], ("A", "B")
    )
    assert answer.text == "Answer: A" and b.hits == 3


def test_gives_up_after_its_attempts_and_does_not_retry_client_errors(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.fail_next = 5
    with pytest.raises(JudgeHTTPError, match="HTTP 503"):
        _judge(url, attempts=2).answer([{"role": "user", "content": "x"}], ("A", "B"))
    assert b.hits == 2
    b.fail_next, b.fail_status, b.hits = 1, 400, 0
    with pytest.raises(JudgeHTTPError, match="HTTP 400"):
        _judge(url, attempts=5).answer([{"role": "user", "content": "x"}], ("A", "B"))
    assert b.hits == 1


def test_slow_answers_time_out_and_are_retried(fake_server: tuple[Any, str]) -> None:
    b, url = fake_server
    b.delay_s = 0.5
    with pytest.raises(JudgeHTTPError, match="Timeout"):
        _judge(url, attempts=2, timeout_s=0.1).answer([{"role": "user", "content": "x"}], ("A", "B"))
    assert b.hits == 2
    b.delay_s = 0.05  # slow but within the timeout
    assert _judge(url, timeout_s=5).answer([{"role": "user", "content": "x"}], ("A", "B")).text == "Answer: A"


def test_key_comes_from_the_environment_only(fake_server: tuple[Any, str], monkeypatch: pytest.MonkeyPatch) -> None:
    b, url = fake_server
    monkeypatch.setenv("FAKE_JUDGE_KEY", "s3cret-value")
    judge = _judge(url, key_env="FAKE_JUDGE_KEY")
    judge.answer([{"role": "user", "content": "x"}], ("A", "B"))
    assert b.auth[-1] == "Bearer s3cret-value" and "s3cret" not in judge.name and "s3cret" not in repr(judge)
    monkeypatch.delenv("FAKE_JUDGE_KEY")
    with pytest.raises(JudgeHTTPError, match="FAKE_JUDGE_KEY is not set"):
        judge.answer([{"role": "user", "content": "x"}], ("A", "B"))


def test_option_logprobs_read_at_the_verdict_token() -> None:
    from rlhfkit.judges.http import option_logprobs

    choice = {
        "logprobs": {
            "content": [
                {"token": "I", "logprob": -0.1, "top_logprobs": [{"token": "I", "logprob": -0.1}]},
                {"token": " pick", "logprob": -0.2},
                {
                    "token": " B",
                    "logprob": -0.3,
                    "top_logprobs": [{"token": " B", "logprob": -0.3}, "junk", {"token": " A"}],
                },
            ]
        }
    }
    assert option_logprobs(choice, ("A", "B")) == {" B": -0.3}  # "I" is no option; malformed alternatives skipped
    assert option_logprobs({"logprobs": None}, ("A", "B")) is None
    assert option_logprobs({"logprobs": {"content": [{"token": "C", "logprob": 0.0}]}}, ("A", "B")) is None
