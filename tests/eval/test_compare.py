"""`rlhfkit eval`: win rates by a reward model, a gold scorer and people in the app, on tiny models."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.config import ConfigError, build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.eval.compare import CompareConfig
from rlhfkit.feedback.comparisons import item_outcome
from rlhfkit.loop.compare import compare
from rlhfkit.rollout.generate import SamplingConfig

PROMPTS = str(fixture_path("sentiment_prompts.jsonl"))
SAMPLING = SamplingConfig(max_new_tokens=8, temperature=1.0, batch_size=8)


def _cfg(**kw: object) -> CompareConfig:
    base = {
        "policy": "tiny:1",
        "baseline": "tiny:0",
        "prompts": PROMPTS,
        "limit": 6,
        "samples_per_prompt": 2,
        "sampling": SAMPLING,
        "progress": False,
    }
    return CompareConfig(**{**base, **kw})  # type: ignore[arg-type]


def test_item_outcome_majority_by_hand() -> None:
    # policy response id 10, baseline 20: votes a,a,b -> a; a,b -> tie; tie,b -> b; both_bad -> tie.
    assert item_outcome([10, 10, 20], 10, 20) == "a"
    assert item_outcome([10, 20], 10, 20) == "tie"
    assert item_outcome(["tie", 20], 10, 20) == "b"
    assert item_outcome(["both_bad"], 10, 20) == "tie"


def test_same_model_same_seeds_is_all_ties() -> None:
    result = compare(_cfg(policy="tiny:0", judge="gold:length"))
    # Both sides sample with the same seeds from the same weights: 12 identical pairs, 12 ties.
    assert result["n"] == 12 and result["ties"] == 12 and result["win_rate"] == 0.5
    assert result["ci_low"] < 0.5 < result["ci_high"]


def test_reward_model_judge_matches_a_naive_count(tmp_path: Path) -> None:
    from rlhfkit.eval.compare import sample_both
    from rlhfkit.models.reward import build_reward_model, save_reward_model

    rm = build_reward_model("tiny", n_heads=2, max_length=64, seed=3)
    save_reward_model(rm, tmp_path / "rm")
    result = compare(_cfg(judge=f"rm:{tmp_path / 'rm'}"))
    prompts, policy, baseline = sample_both(_cfg(judge="gold:length"))
    with torch.no_grad():
        a = rm.score(prompts, policy).mean.tolist()
        b = rm.score(prompts, baseline).mean.tolist()
    wins = sum(x > y for x, y in zip(a, b, strict=True))
    ties = sum(x == y for x, y in zip(a, b, strict=True))
    assert (result["wins"], result["ties"], result["n"]) == (wins, ties, 12)
    assert result["win_rate"] == pytest.approx((wins + ties / 2) / 12)


def _judge_everything(db: str, project: str, answer: str) -> None:
    """A person who prefers the policy (position 0) or the baseline, or calls every pair a tie."""
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(db)
    uid = store.create_user(f"person-{answer}", "annotator", "a long random-ish password").id
    while (task := store.next_task(project, uid)) is not None:
        by_position = sorted(store.item(task.item_id)["responses"], key=lambda r: r["position"])
        choice = {"policy": by_position[0]["id"], "baseline": by_position[1]["id"], "tie": "tie"}[answer]
        store.submit(task.assignment_id, uid, {"choice": choice})
    store.close()


def test_app_judge_creates_tasks_then_collects(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    first = compare(_cfg(judge=f"app:{db}#cmp"))
    assert first["n"] == 0 and first["pending"] == 12 and first["win_rate"] is None
    _judge_everything(db, "cmp", "policy")
    # The same command again reads the judgments back (nothing is sampled or added a second time).
    again = compare(_cfg(judge=f"app:{db}#cmp"))
    assert (again["n"], again["wins"], again["pending"], again["win_rate"]) == (12, 12, 0, 1.0)
    collected = compare(CompareConfig(judge=f"app:{db}#cmp", collect=True))
    assert collected["win_rate"] == 1.0 and collected["n"] == 12


def test_app_judge_overlap_two_ties_count_half(tmp_path: Path) -> None:
    db = f"sqlite:///{tmp_path / 'fb.db'}"
    compare(_cfg(judge=f"app:{db}#cmp2", overlap=2, samples_per_prompt=1))
    _judge_everything(db, "cmp2", "policy")
    _judge_everything(db, "cmp2", "tie")
    # Per item: one vote for the policy and one tie -> the policy has the majority -> 6 wins of 6.
    result = compare(CompareConfig(judge=f"app:{db}#cmp2", collect=True))
    assert (result["wins"], result["n"]) == (6, 6)


def test_cli_json_has_the_contract_keys(capsys: pytest.CaptureFixture[str]) -> None:
    from rlhfkit.cli import main

    assert (
        main(
            [
                "eval",
                "--policy",
                "tiny:1",
                "--baseline",
                "tiny:0",
                "--prompts",
                PROMPTS,
                "--judge",
                "gold:sentiment",
                "--json",
                "limit=4",
                "sampling.max_new_tokens=8",
                "progress=false",
            ]
        )
        == 0
    )
    out = json.loads(capsys.readouterr().out)
    assert {"win_rate", "n", "ci_low", "ci_high"} <= set(out) and out["n"] == 4
    assert 0.0 <= out["ci_low"] <= out["win_rate"] <= out["ci_high"] <= 1.0


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="judge must start"):
        build_config(CompareConfig, values={"judge": "human:x", "policy": "a", "baseline": "b", "prompts": "p"})
    with pytest.raises(ConfigError, match="collect applies"):
        build_config(CompareConfig, values={"judge": "gold:sentiment", "collect": True})
    with pytest.raises(ConfigError, match="required"):
        build_config(CompareConfig, values={"judge": "gold:sentiment"})
    with pytest.raises(ValueError, match="no project"):
        compare(CompareConfig(judge="app:sqlite:////tmp/rlhfkit-nonexistent-cmp.db#nothing", collect=True))


def test_every_judge_kind_the_config_accepts_has_a_judge() -> None:
    from rlhfkit.eval.compare import JUDGE_KINDS
    from rlhfkit.loop.compare import JUDGES

    assert tuple(JUDGES) == JUDGE_KINDS
