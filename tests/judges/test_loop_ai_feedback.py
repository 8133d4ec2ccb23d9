"""`rlhfkit loop` with feedback from an AI judge: alone (ai) or beside the simulated panel (mixed)."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from rlhfkit.config import ConfigError, build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.loop import AI_ACCOUNT, run_loop

TINY = [
    "candidates.prompts_per_round=4",
    "candidates.per_prompt=2",
    "candidates.sampling.max_new_tokens=10",
    "feedback.task_type=pairwise",
    "reward.max_steps=5",
    "reward.normalize_prompts=4",
    "eval.samples_per_prompt=1",
    "eval.sampling.max_new_tokens=10",
    "progress=false",
    "feedback.gold_items=0",
    "policy.max_steps=2",
    "policy.rollout_batch_size=8",
    "policy.batch_size=8",
    "policy.sampling.max_new_tokens=10",
]


def _config(out: Path, *overrides: str) -> LoopConfig:
    values = {"output": str(out), "policy_model": "tiny", "prompts": str(fixture_path("sentiment_prompts.jsonl"))}
    return build_config(LoopConfig, values=values, overrides=[*TINY, *overrides])


def test_ai_feedback_settings_are_checked(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "feedback.source=ai", "feedback.overlap=1", "gold=", "feedback.judge.judge=tiny:3")
    assert cfg.feedback.judge.judge == "tiny:3"
    with pytest.raises(ConfigError, match="overlap=1"):
        _config(tmp_path, "feedback.source=ai", "feedback.overlap=3")
    with pytest.raises(ConfigError, match="overlap >= 2"):
        _config(tmp_path, "feedback.source=mixed", "feedback.overlap=1")
    with pytest.raises(ConfigError, match="on_flip"):
        _config(tmp_path, "feedback.judge.on_flip=coin")


@pytest.mark.slow
def test_mixed_feedback_panel_and_judge_share_items(tmp_path: Path, fake_server: tuple[Any, str]) -> None:
    out = tmp_path / "loop"
    _, url = fake_server
    judge = [f"feedback.judge.judge={url}", "feedback.judge.model=fake"]
    # Overlap 3: the panel gives two judgments per item and the judge the third, so every item has a majority.
    cfg = _config(out, "feedback.source=mixed", "feedback.overlap=3", "feedback.panel.members=2", *judge)
    run_loop(cfg)
    done = json.loads((out / "round-01" / "stages" / "feedback.done").read_text())
    info = done.get("result", done)
    assert (info["ai_judgments"], info["panel_judgments"], info["items"]) == (4, 8, 4)
    store = FeedbackStore(cfg.db_url())
    qc = {a.name: a for a in store.qc_report(cfg.feedback.project).annotators}
    assert qc[AI_ACCOUNT].role == "ai" and qc[AI_ACCOUNT].flip_questions == 4 and qc[AI_ACCOUNT].flip_rate is not None
    store.close()
    assert (out / "judge" / "judge-cache.sqlite").exists()
    report = (out / "report.html").read_text()
    assert f"{AI_ACCOUNT} (AI judge; order flips" in report and "without the AI judges" in report
