"""The demo pipeline end to end on tiny models: every stage ran, through the app, with real effects."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.loop.loop import ROUND_STAGES

pytestmark = pytest.mark.slow


def test_every_stage_ran_and_left_its_marker(tiny_demo: Path) -> None:
    assert (tiny_demo / "stages" / "sft.done").is_file()
    assert all((tiny_demo / "round-00" / "stages" / f"{s}.done").is_file() for s in ("prompts", "eval"))
    assert all((tiny_demo / "round-01" / "stages" / f"{s}.done").is_file() for s in ROUND_STAGES)
    result = json.loads((tiny_demo / "demo_result.json").read_text())
    assert set(result["stages_s"]) >= {"sft", "round-01/policy", "round-01/eval"}
    assert {"win_rate", "ci_low", "ci_high", "kl", "target_met"} <= set(result)


def test_feedback_went_through_the_app(tiny_demo: Path) -> None:
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(f"sqlite:///{tiny_demo / 'feedback.db'}", migrate=False)
    try:
        progress = store.progress("loop")
        assert progress.items >= 2 and progress.complete_items == progress.items
        assert progress.judgments == 3 * progress.items  # overlap 3
        annotators = {j["annotator"] for j in store.judgments("loop")}
        assert annotators <= {f"sim-0{i}" for i in range(1, 6)} and len(annotators) >= 3
        qc = store.qc_report("loop")
        assert {a.name for a in qc.annotators} == annotators
        rankings = store.export_rows("loop", "rankings", "majority")
        assert len(rankings) == progress.items
    finally:
        store.close()


def test_reward_model_and_policy_trained_on_it(tiny_demo: Path) -> None:
    from rlhfkit.models.loading import load_model

    round1 = tiny_demo / "round-01"
    reward = json.loads((round1 / "reward" / "reward.json").read_text())
    assert reward["n_heads"] == 3 and reward["normalization"]["reference"].endswith("sft")
    ppo_rows = [json.loads(line) for line in (round1 / "policy" / "metrics.jsonl").read_text().splitlines()]
    assert [r["step"] for r in ppo_rows if "ppo/score" in r] == [1, 2, 3]
    sft = load_model(tiny_demo / "sft").model.state_dict()
    policy = load_model(round1 / "policy").model.state_dict()
    assert any(not torch.equal(sft[k], policy[k]) for k in sft)  # PPO changed the weights


def test_loop_evaluation_files(tiny_demo: Path) -> None:
    evaluation = json.loads((tiny_demo / "eval.json").read_text())
    gold_wr = evaluation["win_rate"][0]
    assert gold_wr["label"] == "round 1 vs round 0 (gold)" and gold_wr["n"] > 0
    assert gold_wr["ci_low"] <= gold_wr["win_rate"] <= gold_wr["ci_high"]
    assert [row["name"] for row in evaluation["leaderboard"]] != []
    points = evaluation["hacking"]["points"]
    assert len(points) == 3 and all(p["gold"] is not None for p in points)
    assert evaluation["hacking"]["best"]["by"] == "gold"
    assert set(evaluation["agreement"]["per_annotator"]) >= {"sim-01"}
    rounds = evaluation["rounds"]
    assert rounds[0]["kl"] == 0.0 and rounds[1]["kl"] is not None
    samples = [json.loads(line) for line in (tiny_demo / "samples.jsonl").read_text().splitlines()]
    assert {s["step"] for s in samples} == {0, 3}
    html = (tiny_demo / "report.html").read_text()
    assert "win rate" in html and 'id="proxy-gold"' in html and 'id="agreement"' in html
