"""LoopConfig validation, overrides, and the trainer configs a round builds from it."""

from __future__ import annotations

from pathlib import Path

import pytest

from rlhfkit.config import ConfigError, build_config
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.loop import check_config

BASE = {"output": "/tmp/rlhfkit-loop-cfg", "policy_model": "tiny", "prompts": "p.jsonl"}


def _build(*overrides: str) -> LoopConfig:
    return build_config(LoopConfig, values=BASE, overrides=list(overrides))


def test_defaults_and_nested_overrides() -> None:
    cfg = _build("feedback.panel.members=4", "policy.sampling.max_new_tokens=8", "reward.pairwise_loss=ties_half")
    assert cfg.feedback.panel.members == 4 and cfg.policy.sampling.max_new_tokens == 8
    assert cfg.reward.pairwise_loss == "ties_half"
    assert cfg.db_url().endswith("/tmp/rlhfkit-loop-cfg/feedback.db")


@pytest.mark.parametrize(
    ("overrides", "message"),
    [
        (["feedback.task_type=pairwise"], "per_prompt=2"),
        (["feedback.panel.members=2"], "cannot give 3 judgments"),
        (["feedback.panel.transport=rest"], "needs feedback.serve"),
        (["gold=nonsense"], "unknown gold scorer"),
        (["gold=", "feedback.gold_items=0"], "panel judges by a gold scorer"),
        (["feedback.source=both", "feedback.overlap=1"], "overlap >= 2"),
        (["policy.method=rlhf"], "policy.method"),
        (["candidates.per_prompt=1"], "per_prompt must be >= 2"),
        (["eval.select_by=vibes"], "select_by"),
        (["rounds=0"], "rounds"),
    ],
)
def test_contradictions_are_refused(overrides: list[str], message: str) -> None:
    with pytest.raises(ConfigError, match=message):
        _build(*overrides)


def test_people_only_loop_needs_no_gold() -> None:
    cfg = _build("gold=", "feedback.source=app", "feedback.gold_items=0")
    assert cfg.gold == ""


def test_restart_with_another_config_is_refused(tmp_path: Path) -> None:
    first = build_config(LoopConfig, values={**BASE, "output": str(tmp_path)})
    check_config(first, tmp_path)
    # More rounds or another port are fine when resuming ...
    check_config(
        build_config(
            LoopConfig, values={**BASE, "output": str(tmp_path)}, overrides=["rounds=3", "feedback.port=9000"]
        ),
        tmp_path,
    )
    # ... another learning rate is not.
    with pytest.raises(ConfigError, match="policy.lr"):
        check_config(
            build_config(LoopConfig, values={**BASE, "output": str(tmp_path)}, overrides=["policy.lr=1e-3"]), tmp_path
        )


def test_trainer_configs_follow_the_loop(tmp_path: Path) -> None:
    from rlhfkit.loop.training import dpo_config, ppo_config, reward_config

    cfg = build_config(
        LoopConfig,
        values={**BASE, "output": str(tmp_path)},
        overrides=["policy.max_steps=7", "policy.lora.r=4", "reward.n_heads=2"],
    )
    rm = reward_config(cfg, tmp_path / "r", "policy-dir")
    assert rm.data == (f"{cfg.db_url()}#loop",) and rm.kind == "rankings" and rm.n_heads == 2
    assert rm.model == str(tmp_path.resolve() / "reward-trunk-15") and rm.normalize_policy == "policy-dir"
    assert rm.freeze_layers == -1
    ppo = ppo_config(cfg, tmp_path / "p", "policy-dir", tmp_path / "r", "train.jsonl")
    assert ppo.max_steps == 7 and ppo.lora.r == 4 and ppo.policy == "policy-dir" and ppo.reward == str(tmp_path / "r")
    assert ppo.samples_per_log == ppo.rollout_batch_size  # every rollout logged: gold at every step
    cfg = build_config(LoopConfig, values={**BASE, "output": str(tmp_path)}, overrides=["policy.method=dpo"])
    dpo = dpo_config(cfg, tmp_path / "d", "policy-dir", tmp_path / "r", "train.jsonl")
    assert dpo.data == f"{cfg.db_url()}#loop" and dpo.kind == "pairs" and dpo.model == "policy-dir"


def test_truncated_trunk_is_the_bottom_of_the_model(tmp_path: Path) -> None:
    import torch

    from rlhfkit.loop.training import build_truncated_trunk
    from rlhfkit.models.adapters import decoder_layers
    from rlhfkit.models.loading import load_model

    out = build_truncated_trunk("tiny", 1, tmp_path / "trunk")
    cut = load_model(out).model
    full = load_model("tiny").model
    assert len(decoder_layers(cut)) == 1 and cut.config.num_hidden_layers == 1
    ids = torch.tensor([[5, 6, 7, 8, 9]])
    with torch.no_grad():
        after_first = full.model(input_ids=ids, output_hidden_states=True).hidden_states[1]
        # The cut model's output = the full model's state after block 1, through the (shared) final norm.
        torch.testing.assert_close(cut.model(input_ids=ids).last_hidden_state, full.model.norm(after_first))
    assert build_truncated_trunk("tiny", 1, tmp_path / "trunk") == out  # built once, then reused
    whole = load_model(build_truncated_trunk("tiny", 5, tmp_path / "whole")).model
    assert len(decoder_layers(whole)) == 2  # a model with fewer blocks is kept whole
