"""GRPO / RLOO / REINFORCE++ on tiny models: split invariance, real effects, faults, exact resume."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from rlhfkit.cli import run_command
from rlhfkit.config import ConfigError, build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.train.grpo import GRPOConfig, RLOOConfig, grpo

REWARDS = """
def count_e(prompts, responses):
    return [r.count("e") for r in responses]

def letters(prompts, responses):
    return [sum(c.isascii() and c.isalpha() for c in r) for r in responses]

def constant(prompts, responses):
    return [1.0 for _ in responses]
"""


@pytest.fixture(scope="module")
def rewards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rewards") / "grpo_rewards.py"
    path.write_text(REWARDS)
    return path


def _config(out: Path, reward: str, *overrides: str, policy: str = "tiny", cls: type = GRPOConfig) -> GRPOConfig:
    values = {
        "policy": policy,
        "reward": reward,
        "prompts": str(fixture_path("sentiment_prompts.jsonl")),
        "output": str(out),
    }
    base = [
        "progress=false",
        "prompts_per_step=2",
        "group_size=4",
        "batch_size=4",
        "grad_accum=2",
        "sampling.max_new_tokens=8",
        "max_steps=3",
        "save_every=0",
    ]
    return build_config(cls, values=values, overrides=[*base, *overrides])


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _series(run: Path, key: str) -> list[float]:
    return [r[key] for r in _metrics(run) if key in r]


def test_config_validation_and_rloo_defaults() -> None:
    with pytest.raises(ConfigError, match="needs a critic"):
        _config(Path("/tmp/x"), "python:m:f", "advantage=gae")
    with pytest.raises(ConfigError, match="group_size must be >= 2"):
        _config(Path("/tmp/x"), "python:m:f", "group_size=1", "prompts_per_step=8")
    with pytest.raises(ConfigError, match="multiple of batch_size"):
        _config(Path("/tmp/x"), "python:m:f", "group_size=3")
    with pytest.raises(ConfigError, match="top_p must be 1"):
        _config(Path("/tmp/x"), "python:m:f", "sampling.top_p=0.9")
    with pytest.raises(ConfigError, match="loss_aggregation must be one of"):
        _config(Path("/tmp/x"), "python:m:f", "loss_aggregation=sum")
    # REINFORCE++ without a group baseline may sample one response per prompt.
    assert _config(Path("/tmp/x"), "python:m:f", "advantage=reinforce_pp", "group_size=1", "prompts_per_step=8")
    rloo = _config(Path("/tmp/x"), "python:m:f", cls=RLOOConfig)
    assert (rloo.advantage, rloo.kl_in, rloo.kl_estimator) == ("rloo", "reward", "k1")


def _tiny_rollout(cfg: GRPOConfig, scores: list[float] | None = None, ended: list[bool] | None = None):
    """A tiny policy and one collected rollout of 2 prompts x 4 responses (of different lengths, up to
    `sampling.max_new_tokens`)."""
    from rlhfkit.models.loading import load_model
    from rlhfkit.rollout.collect import sample_rollout
    from rlhfkit.rollout.generate import truncate_at_stop
    from rlhfkit.rollout.group import collect_group_rollout
    from rlhfkit.train.engine import Engine
    from rlhfkit.train.grpo.update import minibatches_per_rollout

    engine = Engine("fp32", 0)
    loaded = load_model("tiny", dtype="fp32")
    ac = cfg.build(loaded.model, None)
    prompts = [p for p in ["Review the film Paper Moon.", "Say something kind."] for _ in range(4)]
    samples = sample_rollout(ac.policy, loaded.tokenizer, prompts, cfg.sampling, seed=3)
    # Responses of different lengths whatever was drawn: an EOS put at a row-dependent column.
    ids = samples.response_ids.clone()
    width = ids.shape[1]
    for row, length in enumerate([width, 3, 7, width, 5, 9, 1, width]):
        if length < width:
            ids[row, length - 1] = loaded.tokenizer.eos_token_id
    ids, mask, ended_at_eos = truncate_at_stop(ids, [loaded.tokenizer.eos_token_id], loaded.tokenizer.pad_token_id)
    samples = samples._replace(response_ids=ids, response_mask=mask, ended=ended_at_eos)
    if ended is not None:
        samples = samples._replace(ended=torch.tensor(ended))
    rollout = collect_group_rollout(
        ac,
        samples,
        torch.tensor(scores or [1.0, 0.0, 0.0, 2.0, 0.5, 0.5, 1.0, 0.0]),
        group_size=4,
        advantage=cfg.advantage,
        hyper={},
        beta=cfg.beta,
        kl_in=cfg.kl_in,
        kl_estimator=cfg.kl_estimator,
        need_old_logps=minibatches_per_rollout(cfg) > 1,
        mask_truncated=cfg.mask_truncated,
        temperature=cfg.sampling.temperature,
        batch_size=cfg.batch_size,
    )
    return ac, engine, rollout


@pytest.mark.parametrize("aggregation", ["token_mean", "seq_mean_token_mean", "seq_mean_token_sum_norm"])
def test_micro_batch_8_x_1_equals_micro_batch_1_x_8(aggregation: str, tmp_path: Path) -> None:
    """One optimizer step's gradient does not depend on how its minibatch is split into micro-batches,
    even when the responses differ in length (each micro-batch divides by the step's counts)."""
    from rlhfkit.train.grpo.update import _minibatch

    grads = []
    for batch_size, grad_accum in ((8, 1), (1, 8)):
        cfg = _config(
            tmp_path,
            "python:m:f",
            f"batch_size={batch_size}",
            f"grad_accum={grad_accum}",
            f"loss_aggregation={aggregation}",
            "sampling.temperature=1.0",
            "sampling.max_new_tokens=12",
            "mask_truncated=false",
            "beta=0.1",
        )
        torch.manual_seed(0)
        ac, engine, rollout = _tiny_rollout(cfg)
        lengths = rollout.response_mask.sum(dim=1)
        assert len(set(lengths.tolist())) > 1, "the test needs responses of different lengths"
        _minibatch(ac, rollout, torch.arange(8), cfg, engine, first_pass=True)
        grads.append([p.grad.clone() for p in ac.parameters() if p.requires_grad])
    for a, b in zip(*grads, strict=True):
        torch.testing.assert_close(a, b, atol=1e-6, rtol=1e-5)
    assert any(bool(g.abs().sum() > 0) for g in grads[0])


def test_updates_move_the_policy_and_leave_the_reference_unchanged(tmp_path: Path) -> None:
    from rlhfkit.train.grpo.update import grpo_update
    from rlhfkit.train.optim import make_optimizer

    cfg = _config(tmp_path, "python:m:f", "lr=1e-2", "epochs=2")  # 2 passes: the old log-probs are computed
    torch.manual_seed(0)
    ac, engine, rollout = _tiny_rollout(cfg)
    assert rollout.logps is not None and rollout.ref_logps is not None
    start = rollout.response_start
    before = ac.reference_logps(rollout.input_ids, rollout.attention_mask, start, temperature=1.0)
    torch.testing.assert_close(before, rollout.ref_logps)
    policy_before = ac(rollout.input_ids, rollout.attention_mask, start, temperature=1.0).logps.detach()
    optimizer, _ = make_optimizer([p for p in ac.parameters() if p.requires_grad], cfg)
    stats = grpo_update(ac, optimizer, rollout, cfg, 1, engine, tmp_path)
    after = ac(rollout.input_ids, rollout.attention_mask, start, temperature=1.0).logps
    assert not torch.allclose(after, policy_before, atol=1e-4)
    assert torch.equal(ac.reference_logps(rollout.input_ids, rollout.attention_mask, start, temperature=1.0), before)
    assert stats["rl/kl"] >= 0.0 and "rl/clip_low_frac" in stats and "rl/entropy" in stats


def test_equal_score_groups_and_truncated_responses_are_left_out(tmp_path: Path) -> None:
    cfg = _config(tmp_path, "python:m:f", "mask_truncated=true")
    torch.manual_seed(0)
    ended = [True, False] * 4
    scores = [1.0, 1.0, 1.0, 1.0, 0.0, 1.0, 0.0, 0.0]  # the first group's scores are all equal
    _, _, rollout = _tiny_rollout(cfg, scores, ended)
    kept = rollout.loss_mask.sum(dim=1) > 0
    assert kept.tolist() == [False] * 4 + [True, False, True, False]
    assert torch.equal(rollout.loss_mask[kept], rollout.response_mask[kept])
    assert rollout.advantages[:4].abs().sum() == 0  # GRPO: an equal-score group has no advantage anyway


def test_constant_reward_gives_no_gradient_and_is_counted(rewards: Path, tmp_path: Path) -> None:
    run = grpo(_config(tmp_path / "run", f"python:{rewards}:constant", "max_steps=2", "beta=0.1"))
    rows = [r for r in _metrics(run) if "rl/zero_std_frac" in r]
    assert [r["rl/zero_std_frac"] for r in rows] == [1.0, 1.0]
    assert [r["train/grad_norm"] for r in rows] == [0.0, 0.0]  # not even the KL term: the groups are out
    assert all(r["rl/loss_tokens_frac"] == 0.0 for r in rows)


def test_beta_zero_never_runs_the_reference(rewards: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    from rlhfkit.models.actor_critic import ActorCritic

    def refuse(*args: object, **kwargs: object) -> None:
        raise AssertionError("the reference ran with beta = 0")

    monkeypatch.setattr(ActorCritic, "reference_logps", refuse)
    run = grpo(_config(tmp_path / "run", f"python:{rewards}:letters", "beta=0", "max_steps=1"))
    assert "rl/kl" not in _metrics(run)[-1]


@pytest.mark.slow
@pytest.mark.parametrize("cls", [GRPOConfig, RLOOConfig])
def test_mean_reward_rises(cls: type, rewards: Path, peaked_tiny: Path, tmp_path: Path) -> None:
    cfg = _config(
        tmp_path / "run",
        f"python:{rewards}:count_e",
        "max_steps=25",
        "prompts_per_step=4",
        "group_size=4",
        "batch_size=8",
        "sampling.max_new_tokens=16",
        "lr=1e-2",
        "beta=0.01",
        policy=str(peaked_tiny),
        cls=cls,
    )
    run = grpo(cfg)
    scores = _series(run, "rl/reward")
    first, last = sum(scores[:6]) / 6, sum(scores[-6:]) / 6
    assert last > first + 1.0, scores  # 'e' count per 16-byte response: ~0.2 at the start
    assert _series(run, "rl/kl")[-1] > 0  # the policy moved away from the reference ...
    from safetensors.torch import load_file

    saved = load_file(str(run / "checkpoints" / "step-000025" / "policy.safetensors"))
    assert saved and all("lora_" in k for k in saved)  # ... and only adapters trained: the reference is intact


def _rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in _metrics(run)]


def test_resume_continues_exactly(rewards: Path, tmp_path: Path) -> None:
    reward = f"python:{rewards}:letters"
    common = (
        "lr=1e-2",
        "epochs=2",
        "eval_every=2",
        "eval_prompts=" + str(fixture_path("sentiment_prompts.jsonl")),
        "eval_samples=4",
    )
    straight = grpo(_config(tmp_path / "a", reward, "max_steps=4", *common))
    grpo(_config(tmp_path / "b", reward, "max_steps=2", *common))
    resumed = grpo(_config(tmp_path / "b", reward, "max_steps=4", *common))
    assert _rows(straight) == _rows(resumed)
    assert (straight / "samples.jsonl").read_text() == (resumed / "samples.jsonl").read_text()
    assert _series(straight, "eval/reward")  # the held-out evaluation ran (step 0 and the end)


@pytest.mark.parametrize("command", ["grpo", "rloo"])
def test_commands_write_a_model_directory_and_a_report(command: str, rewards: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    cls = RLOOConfig if command == "rloo" else GRPOConfig
    overrides = ("max_steps=1", "ratio=sequence", "clip_high=0.28", "loss_aggregation=seq_mean_token_sum_norm")
    run = run_command(command, _config(tmp_path / command, f"python:{rewards}:letters", *overrides, cls=cls))
    assert (run / "report.html").exists()
    AutoModelForCausalLM.from_pretrained(run)
