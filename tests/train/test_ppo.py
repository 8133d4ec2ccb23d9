"""PPO on tiny models: real effects (reward rises, reference untouched, beta adapts), faults, exact resume."""

from __future__ import annotations

import json
import math
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from rlhfkit.cli import run_command
from rlhfkit.config import ConfigError, build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.train.ppo import PPOConfig, ppo
from rlhfkit.train.ppo.trainer import collect, generate
from rlhfkit.train.ppo.update import ppo_update

REWARDS = """
import math

def count_e(prompts, responses):
    return [r.count("e") for r in responses]

def letters(prompts, responses):
    return [sum(c.isascii() and c.isalpha() for c in r) for r in responses]

def zero(prompt, response):
    return 0.0

CALLS = [0]

def nan_on_third_call(prompts, responses):
    CALLS[0] += 1
    return [math.nan if CALLS[0] >= 3 else 1.0 for _ in responses]
"""


@pytest.fixture(scope="module")
def rewards(tmp_path_factory: pytest.TempPathFactory) -> Path:
    path = tmp_path_factory.mktemp("rewards") / "ppo_rewards.py"
    path.write_text(REWARDS)
    return path


def _config(out: Path, reward: str, *overrides: str, policy: str = "tiny") -> PPOConfig:
    values = {
        "policy": policy,
        "reward": reward,
        "prompts": str(fixture_path("sentiment_prompts.jsonl")),
        "output": str(out),
    }
    base = [
        "progress=false",
        "rollout_batch_size=8",
        "batch_size=4",
        "grad_accum=1",
        "sampling.max_new_tokens=8",
        "max_steps=3",
        "save_every=0",
    ]
    return build_config(PPOConfig, values=values, overrides=[*base, *overrides])


def _metrics(run: Path) -> list[dict]:
    return [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]


def _series(run: Path, key: str) -> list[float]:
    return [r[key] for r in _metrics(run) if key in r]


def test_config_validation() -> None:
    with pytest.raises(ConfigError, match="top_p must be 1"):
        _config(Path("/tmp/x"), "python:m:f", "sampling.top_p=0.9")
    with pytest.raises(ConfigError, match="multiple of batch_size \\* grad_accum"):
        _config(Path("/tmp/x"), "python:m:f", "rollout_batch_size=6")
    with pytest.raises(ConfigError, match="value_init=reward needs"):
        _config(Path("/tmp/x"), "python:m:f", "value_init=reward")
    with pytest.raises(ConfigError, match="policy_mode must be one of"):
        _config(Path("/tmp/x"), "python:m:f", "policy_mode=qlora")
    with pytest.raises(ConfigError, match="min_kl_coef <= init_kl_coef"):
        _config(Path("/tmp/x"), "python:m:f", "kl_controller=pi", "init_kl_coef=0.01", "min_kl_coef=0.05")


@pytest.mark.parametrize("mode", ["lora", "top_layers", "full"])
def test_updates_leave_the_reference_unchanged(mode: str, rewards: Path, tmp_path: Path) -> None:
    from rlhfkit.models.actor_critic import build_actor_critic
    from rlhfkit.models.loading import load_model
    from rlhfkit.models.value import ValueHead
    from rlhfkit.train.engine import Engine
    from rlhfkit.train.optim import make_optimizer

    cfg = _config(tmp_path, f"python:{rewards}:count_e", f"policy_mode={mode}", "train_layers=1", "lr=1e-2")
    engine = Engine("fp32", 0)
    loaded = load_model("tiny", dtype="fp32")
    ac = build_actor_critic(loaded.model, ValueHead(64), mode, lora=cfg.lora, train_layers=1, value_trunk_grad=True)
    optimizer, _ = make_optimizer([p for p in ac.parameters() if p.requires_grad], cfg)
    prompts = ["Review the film Paper Moon.", "Say something kind."] * 4
    samples = generate(ac, loaded.tokenizer, prompts, cfg, 1, engine)
    ids = torch.cat([samples.prompt_ids, samples.response_ids], 1)
    mask = torch.cat([samples.prompt_mask, samples.response_mask], 1)
    start = samples.prompt_ids.shape[1]
    before = ac.reference_logps(ids, mask, start, temperature=0.7)
    policy_before = ac(ids, mask, start, temperature=0.7).logps.detach()
    raw = torch.linspace(-1.0, 1.0, len(prompts))  # distinct scores, so that the advantages are not all 0
    rollout, _ = collect(ac, samples, raw, raw, 0.05, cfg, engine)
    # The first minibatch's ratio is 1: the update recomputes exactly the rollout's log-probs.
    first = rollout.select(torch.arange(4))
    torch.testing.assert_close(
        ac(first.input_ids, first.attention_mask, first.response_start, temperature=0.7).logps,
        first.logps,
        atol=1e-5,
        rtol=1e-5,
    )
    ppo_update(ac, optimizer, rollout, cfg, 1, engine, tmp_path)
    assert not torch.allclose(ac(ids, mask, start, temperature=0.7).logps, policy_before, atol=1e-4)
    assert torch.equal(ac.reference_logps(ids, mask, start, temperature=0.7), before)


@pytest.mark.parametrize("mode", ["lora", "top_layers"])
def test_a_cached_frozen_trunk_changes_no_number_of_the_rollout_or_the_update(
    mode: str, rewards: Path, tmp_path: Path
) -> None:
    """The same rollout and PPO update with and without running the frozen bottom block once per rollout."""
    from rlhfkit.models.actor_critic import build_actor_critic
    from rlhfkit.models.loading import load_model
    from rlhfkit.models.value import ValueHead
    from rlhfkit.train.engine import Engine
    from rlhfkit.train.optim import make_optimizer

    engine = Engine("fp32", 0)
    prompts = ["Review the film Paper Moon.", "Say something kind."] * 4
    raw = torch.linspace(-1.0, 1.0, len(prompts))
    results = []
    for cache in (False, True):
        cfg = _config(
            tmp_path,
            f"python:{rewards}:count_e",
            f"policy_mode={mode}",
            "train_layers=1",
            "lora.layers=1",
            "lr=1e-2",
            f"cache_frozen_trunk={str(cache).lower()}",
        )
        loaded = load_model("tiny", dtype="fp32")
        torch.manual_seed(0)
        ac = build_actor_critic(
            loaded.model,
            ValueHead(64),
            mode,
            lora=cfg.lora,
            train_layers=1,
            value_trunk_grad=True,
            cache_frozen_trunk=cache,
        )
        assert ac.frozen_blocks == (1 if cache else 0)
        optimizer, _ = make_optimizer([p for p in ac.parameters() if p.requires_grad], cfg)
        samples = generate(ac, loaded.tokenizer, prompts, cfg, 1, engine)
        rollout, _ = collect(ac, samples, raw, raw, 0.05, cfg, engine)
        assert (rollout.trunk is not None) == cache
        stats = ppo_update(ac, optimizer, rollout, cfg, 1, engine, tmp_path)
        results.append((rollout, stats, [p.detach().clone() for p in ac.parameters() if p.requires_grad]))
    (plain, plain_stats, plain_weights), (cached, cached_stats, cached_weights) = results
    assert torch.equal(plain.input_ids, cached.input_ids)  # the same samples
    for field in ("logps", "ref_logps", "values", "advantages", "returns"):
        torch.testing.assert_close(getattr(cached, field), getattr(plain, field), atol=1e-5, rtol=1e-5)
    assert cached_stats == pytest.approx(plain_stats, rel=1e-4, abs=1e-6)
    for a, b in zip(cached_weights, plain_weights, strict=True):
        torch.testing.assert_close(a, b, atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_mean_reward_rises_with_the_default_lora_policy(rewards: Path, peaked_tiny: Path, tmp_path: Path) -> None:
    cfg = _config(
        tmp_path / "run",
        f"python:{rewards}:count_e",
        "max_steps=30",
        "rollout_batch_size=16",
        "batch_size=8",
        "sampling.max_new_tokens=16",
        "sampling.temperature=1.0",
        "lr=1e-2",
        "init_kl_coef=0.01",
        policy=str(peaked_tiny),
    )
    run = ppo(cfg)
    scores = _series(run, "ppo/score")
    first, last = sum(scores[:8]) / 8, sum(scores[-8:]) / 8
    assert last > first + 1.0, scores  # 'e' count per 16-byte response: ~0.2 at the start
    assert _series(run, "ppo/kl")[-1] > 0  # the policy moved away from the reference ...
    from safetensors.torch import load_file

    saved = load_file(str(run / "checkpoints" / "step-000030" / "actor_critic.safetensors"))
    # ... while only adapters and the value head trained: the base weights (the reference) are untouched.
    assert saved and all("lora_" in k or k.startswith("value_head.") for k in saved)


def test_adaptive_controller_moves_beta_toward_the_target(rewards: Path, tmp_path: Path) -> None:
    reward = f"python:{rewards}:letters"  # dense: random bytes are letters ~10% of the time
    common = ("lr=1e-2", "kl_horizon=8", "init_kl_coef=0.1")
    low = ppo(_config(tmp_path / "low", reward, "kl_target=0.0001", *common))
    high = ppo(_config(tmp_path / "high", reward, "kl_target=1000", *common))
    b_low, b_high = _series(low, "ppo/beta"), _series(high, "ppo/beta")
    kl_low = _series(low, "ppo/kl")
    # Step 1: the policy IS the reference, KL = 0: error clipped to -0.2, beta *= 1 - 0.2 * 8/8 = 0.8.
    assert kl_low[0] == 0.0 and b_low[1] == pytest.approx(0.08)
    # Then the KL exceeds the tiny target: error clipped to +0.2, beta *= 1.2.
    assert kl_low[1] > 0.0001 and b_low[2] == pytest.approx(0.096)
    # A target far above the KL lowers beta every step: 0.1, 0.08, 0.064.
    assert b_high == pytest.approx([0.1, 0.08, 0.064])


def test_pi_controller_answers_the_kl_level_in_the_loop(rewards: Path, tmp_path: Path) -> None:
    reward = f"python:{rewards}:letters"
    run = ppo(
        _config(
            tmp_path / "pi",
            reward,
            "lr=1e-2",
            "kl_controller=pi",
            "kl_target=0.0001",
            "kl_horizon=8",
            "init_kl_coef=0.1",
            "min_kl_coef=0.01",
            "kl_kp=1.0",
        )
    )
    betas, kls = _series(run, "ppo/beta"), _series(run, "ppo/kl")
    # Step 1: KL = 0, error -1: the integrator takes -1 * 8/8 (its bound is log(0.01/0.1) = -2.3) and the
    # proportional term another -1: beta = 0.1 * e^-2.
    assert kls[0] == 0.0 and betas[1] == pytest.approx(0.1 * math.exp(-2.0))
    # Step 2: the KL is far above the tiny target, error clipped to +1: I = 0, beta = 0.1 * e^(1 + 0).
    assert kls[1] > 0.0002 and betas[2] == pytest.approx(0.1 * math.exp(1.0))


def test_no_eos_responses_get_the_configured_score(rewards: Path, tmp_path: Path) -> None:
    run = ppo(
        _config(
            tmp_path / "r",
            f"python:{rewards}:zero",
            "no_eos_score=-3",
            "normalize_scores=false",
            "sampling.max_new_tokens=3",
            "max_steps=2",
        )
    )
    for row in _metrics(run):
        assert row["ppo/no_eos_frac"] > 0
        assert row["ppo/score_shaped"] == pytest.approx(-3.0 * row["ppo/no_eos_frac"])


def test_nan_reward_stops_the_run_and_keeps_the_last_good_checkpoint(rewards: Path, tmp_path: Path) -> None:
    from rlhfkit.train.checkpoint import latest_checkpoint

    out = tmp_path / "r"
    with pytest.raises(
        FloatingPointError, match="step 3: the reward .*nan_on_third_call.* returned NaN or inf for 8 of 8"
    ):
        ppo(_config(out, f"python:{rewards}:nan_on_third_call", "max_steps=5", "save_every=1"))
    assert latest_checkpoint(out / "checkpoints").name == "step-000002"
    assert not (out / "model.safetensors").exists()


def test_unreachable_http_reward_fails_the_step_with_the_url(tmp_path: Path) -> None:
    import socket

    from rlhfkit.rollout.rewards import RewardError

    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    url = f"http://127.0.0.1:{port}/score"
    with pytest.raises(RewardError, match=f"{url} failed after 2 attempts"):
        ppo(_config(tmp_path / "r", url, "reward_retries=1", "reward_backoff=0.01", "reward_timeout=2"))


def test_long_prompts_are_cut_and_counted_and_the_run_dir_is_a_model_dir(rewards: Path, tmp_path: Path) -> None:
    from transformers import AutoModelForCausalLM

    prompts = tmp_path / "prompts.jsonl"
    prompts.write_text("".join(json.dumps({"prompt": p}) + "\n" for p in ["Hi.", "Tell me " * 30, "Yo.", "Ok."]))
    cfg = build_config(
        PPOConfig,
        values={
            "policy": "tiny",
            "reward": f"python:{rewards}:count_e",
            "prompts": str(prompts),
            "output": str(tmp_path / "r"),
        },
        overrides=[
            "progress=false",
            "rollout_batch_size=4",
            "batch_size=4",
            "grad_accum=1",
            "sampling.max_new_tokens=4",
            "sampling.max_prompt_length=24",
            "max_steps=2",
            "samples_per_log=2",
        ],
    )
    run = run_command("ppo", cfg)  # the command, so the run directory gets its report
    assert sum(_series(run, "ppo/prompts_truncated")) >= 1
    rows = [json.loads(line) for line in (run / "samples.jsonl").read_text().splitlines()]
    assert len(rows) == 4 and set(rows[0]) == {"step", "prompt", "response", "score"}
    assert (run / "report.html").exists() and (run / "value_head.safetensors").exists() and (run / "adapter").is_dir()
    AutoModelForCausalLM.from_pretrained(run)
    keys = set(_metrics(run)[-1])
    for key in (
        "ppo/score",
        "ppo/kl",
        "ppo/beta",
        "ppo/entropy",
        "ppo/clip_frac",
        "ppo/approx_kl",
        "ppo/value_loss",
        "ppo/response_len",
        "ppo/no_eos_frac",
        "perf/tokens_per_s",
        "perf/samples_per_s",
    ):
        assert key in keys


def _ppo_rows(run: Path) -> list[dict]:
    return [{k: v for k, v in r.items() if not k.startswith("perf/")} for r in _metrics(run)]


def test_resume_continues_exactly(rewards: Path, tmp_path: Path) -> None:
    reward = f"python:{rewards}:count_e"
    straight = ppo(_config(tmp_path / "a", reward, "max_steps=4", "lr=1e-2"))
    ppo(_config(tmp_path / "b", reward, "max_steps=2", "lr=1e-2"))
    resumed = ppo(_config(tmp_path / "b", reward, "max_steps=4", "lr=1e-2"))
    assert _ppo_rows(straight) == _ppo_rows(resumed)
    assert (straight / "samples.jsonl").read_text() == (resumed / "samples.jsonl").read_text()


def _cli(out: Path, rewards: Path) -> list[str]:
    code = (
        "import sys; from rlhfkit.config import build_config; from rlhfkit.train.ppo import PPOConfig, ppo; "
        "ppo(build_config(PPOConfig, values={'policy': 'tiny', 'prompts': sys.argv[1], 'reward': sys.argv[2], "
        "'output': sys.argv[3]}, overrides=sys.argv[4:]))"
    )
    return [
        sys.executable,
        "-c",
        code,
        str(fixture_path("sentiment_prompts.jsonl")),
        f"python:{rewards}:count_e",
        str(out),
        "progress=false",
        "max_steps=14",
        "save_every=2",
        "rollout_batch_size=8",
        "batch_size=4",
        "sampling.max_new_tokens=8",
        "lr=1e-2",
        "kl_horizon=64",
        "grad_accum=1",
    ]


@pytest.mark.slow
def test_kill_9_midway_then_resume_gives_the_same_run(rewards: Path, tmp_path: Path) -> None:
    env = {**os.environ, "PYTHONUNBUFFERED": "1"}
    straight = tmp_path / "straight"
    subprocess.run(_cli(straight, rewards), check=True, env=env, capture_output=True)

    crashed = tmp_path / "crashed"
    proc = subprocess.Popen(_cli(crashed, rewards), env=env, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    deadline = time.time() + 300
    while time.time() < deadline:  # kill as soon as a mid-run checkpoint is published
        latest = crashed / "checkpoints" / "latest"
        if latest.exists() and latest.read_text().strip() >= "step-000006":
            break
        time.sleep(0.05)
    proc.send_signal(signal.SIGKILL)
    proc.wait()
    assert not (crashed / "model.safetensors").exists(), "the run finished before it could be killed"
    subprocess.run(_cli(crashed, rewards), check=True, env=env, capture_output=True)
    assert _ppo_rows(straight) == _ppo_rows(crashed)
    assert (straight / "samples.jsonl").read_text() == (crashed / "samples.jsonl").read_text()
