"""`rlhfkit eval --judge ai:URL`: the policy's win rate by an AI judge, both orders or by scores."""

from __future__ import annotations

from typing import Any

import pytest

from rlhfkit.config import build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.eval.compare import CompareConfig, sample_both
from rlhfkit.judges import JudgeSettings
from rlhfkit.loop.compare import compare
from rlhfkit.rollout.generate import SamplingConfig


def _cfg(url: str, **judge: Any) -> CompareConfig:
    return CompareConfig(
        policy="tiny:1",
        baseline="tiny:0",
        prompts=str(fixture_path("sentiment_prompts.jsonl")),
        judge=f"ai:{url}",
        ai_judge=JudgeSettings(judge="-", model="fake", **judge),
        limit=6,
        samples_per_prompt=2,
        sampling=SamplingConfig(max_new_tokens=8, temperature=1.0, batch_size=8),
        progress=False,
    )


@pytest.mark.parametrize("how", ["both_orders", "scores"])
def test_ai_judge_win_rate_matches_a_naive_count(fake_server: tuple[Any, str], how: str) -> None:
    """The fake judge prefers the longer response side by side (a flip, so a tie, between equals) and
    scores a response higher the longer it is: both ways, the longer response wins."""
    behaviour, url = fake_server
    result = compare(_cfg(url, compare=how))
    _, policy, baseline = sample_both(_cfg(url))
    wins = sum(len(a) > len(b) for a, b in zip(policy, baseline, strict=True))
    losses = sum(len(a) < len(b) for a, b in zip(policy, baseline, strict=True))
    assert (result["wins"], result["losses"], result["n"]) == (wins, losses, 12) and wins + losses > 0
    assert result["judge_requests"] == 24 and behaviour.hits >= 24
    assert (result["flip_rate"] is None) == (how == "scores")


def test_a_position_biased_judge_only_ties_side_by_side_but_scores_still_decide(fake_server: tuple[Any, str]) -> None:
    behaviour, url = fake_server
    behaviour.biased = True
    side_by_side = compare(_cfg(url, compare="both_orders"))
    assert side_by_side["ties"] == 12 and side_by_side["flip_rate"] == 1.0
    dropped = compare(_cfg(url, compare="both_orders", on_flip="unlabelled"))
    assert (dropped["n"], dropped["unlabelled"], dropped["win_rate"]) == (0, 12, None)
    assert compare(_cfg(url, compare="scores"))["ties"] < 12


def test_the_cli_takes_the_judge_settings() -> None:
    cfg = build_config(
        CompareConfig,
        values={"policy": "p", "baseline": "b", "prompts": "f", "judge": "ai:smollm2"},
        overrides=["ai_judge.compare=scores", "ai_judge.score_labels=[positive,negative]"],
    )
    assert cfg.ai_judge.asking().labels == ("positive", "negative")
