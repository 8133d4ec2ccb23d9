"""One side of the PPO benchmark, run as its own process (rlhfkit's venv or TRL's).

    python bench/ppo_sides.py {rm|rlhfkit|trl|effect} SPEC.json RESULT.json

- rm: train the shared reward model with rlhfkit (frozen SmolLM2 trunk, one head, normalized);
- rlhfkit: `rlhfkit.train.ppo.ppo` for `steps` PPO steps, timed at the end of every step;
- trl: TRL 1.12's PPOTrainer with the same policy, prompts, reward model, batch, response length,
  PPO epochs and learning rate; its value model starts from the reward model (its documented setup);
- effect: an rlhfkit run against a known reward (VADER positive sentiment), for the curve.

Only the standard library is imported at load time, so both venvs can run this file.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import read_json, steady_rate, write_json


class StepRecorder:
    """When each PPO step ended and the process's peak RSS so far."""

    def __init__(self, samples_per_step: int) -> None:
        self.samples = samples_per_step
        self.times: list[float] = []
        self.cpu: list[float] = []
        self.rss_mb_at_last_step = 0.0

    def step(self) -> None:
        self.times.append(time.perf_counter())
        self.cpu.append(time.process_time())
        self.rss_mb_at_last_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self) -> dict[str, Any]:
        return {
            "samples_per_s": steady_rate(self.times, [self.samples] * len(self.times), skip=1),
            "samples_per_cpu_s": steady_rate(self.cpu, [self.samples] * len(self.cpu), skip=1),
            "step_s": [round(b - a, 2) for a, b in pairwise(self.times)],
            "step_cpu_s": [round(b - a, 2) for a, b in pairwise(self.cpu)],
            "train_max_rss_mb": self.rss_mb_at_last_step,
        }


def train_rm(spec: dict[str, Any]) -> dict[str, Any]:
    from rlhfkit.config import build_config
    from rlhfkit.data.fixtures import fixture_path
    from rlhfkit.train.reward import RewardConfig, train_reward_model

    cfg = build_config(
        RewardConfig,
        values={"model": spec["model_dir"], "data": [str(fixture_path("pairs_small.jsonl"))], "output": spec["rm_dir"]},
        overrides=[
            "freeze_layers=-1",
            "max_steps=30",
            "lr=1e-3",
            "batch_size=8",
            "progress=false",
            "normalize_prompts=16",
            "max_length=256",
        ],
    )
    return {"rm_dir": str(train_reward_model(cfg))}


def _rlhfkit_run(spec: dict[str, Any], reward: str, steps: int, extra: list[str]) -> dict[str, Any]:
    from rlhfkit.config import build_config
    from rlhfkit.data.fixtures import fixture_path
    from rlhfkit.train import metrics as metrics_module
    from rlhfkit.train.ppo import PPOConfig, ppo

    recorder = StepRecorder(spec["rollout_batch_size"])
    log = metrics_module.MetricsLogger.log

    def timed_log(self: Any, step: int, metrics: dict[str, float]) -> dict[str, float]:  # log_every=1: once per step
        recorder.step()
        return log(self, step, metrics)

    metrics_module.MetricsLogger.log = timed_log  # type: ignore[method-assign]
    cfg = build_config(
        PPOConfig,
        values={
            "policy": spec["model_dir"],
            "reward": reward,
            "output": spec["out_dir"],
            "prompts": str(fixture_path("sentiment_prompts.jsonl")),
        },
        overrides=[
            f"max_steps={steps}",
            f"rollout_batch_size={spec['rollout_batch_size']}",
            f"batch_size={spec['micro']}",
            f"grad_accum={spec['minibatch'] // spec['micro']}",
            f"ppo_epochs={spec['ppo_epochs']}",
            f"sampling.max_new_tokens={spec['response_length']}",
            f"sampling.temperature={spec['temperature']}",
            f"sampling.batch_size={spec['rollout_batch_size']}",
            f"lr={spec['lr']}",
            f"reward_batch_size={spec['rollout_batch_size']}",
            "resume=false",
            "save_every=0",
            "progress=false",
            "log_every=1",
            f"seed={spec['seed']}",
            *extra,
        ],
    )
    start = time.perf_counter()
    run = ppo(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {**recorder.summary(), "call_s": time.perf_counter() - start, "metrics": rows}


def rlhfkit_side(spec: dict[str, Any]) -> dict[str, Any]:
    return _rlhfkit_run(spec, spec["rm_dir"], spec["steps"], spec.get("rlhfkit_overrides", []))


def effect(spec: dict[str, Any]) -> dict[str, Any]:
    reward = "python:rlhfkit.rollout.rewards:vader_sentiment"
    return _rlhfkit_run(spec, reward, spec["steps"], spec.get("rlhfkit_overrides", []))


def _trl_reward_model(rm_dir: str) -> Any:
    """The rlhfkit reward model as a transformers sequence classifier (what TRL's get_reward reads):
    the same trunk, and a `score` layer holding the head with the normalization folded in."""
    import torch
    from safetensors.torch import load_file
    from transformers import AutoModelForSequenceClassification

    model = AutoModelForSequenceClassification.from_pretrained(rm_dir, num_labels=1, dtype=torch.float32)
    head = load_file(str(Path(rm_dir) / "reward_head.safetensors"))
    norm = json.loads((Path(rm_dir) / "reward.json").read_text())["normalization"]
    gain, shift = torch.tensor(norm["gain"]), torch.tensor(norm["bias"])
    score = torch.nn.Linear(head["weight"].shape[1], 1, bias=True)
    with torch.no_grad():
        score.weight.copy_((gain[:, None] * head["weight"]).mean(0, keepdim=True))
        score.bias.copy_((gain * head["bias"] + shift).mean().reshape(1))
    model.score = score
    return model.eval()


def trl_side(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl.experimental.ppo import PPOConfig, PPOTrainer

    recorder = StepRecorder(spec["rollout_batch_size"])

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.step()

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"], padding_side="left")
    prompts = [json.loads(line)["prompt"] for line in Path(spec["prompts_file"]).read_text().splitlines() if line]
    ids = [
        tokenizer.apply_chat_template([{"role": "user", "content": p}], add_generation_prompt=True, tokenize=True)
        for p in prompts
    ]
    # transformers 5 returns a BatchEncoding (a Mapping, not a dict); older ones a plain list of ids
    ids = [list(x["input_ids"]) if hasattr(x, "keys") else list(x) for x in ids]
    dataset = Dataset.from_dict({"input_ids": ids})
    policy = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    ref = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    value = _trl_reward_model(spec["rm_dir"])
    reward = _trl_reward_model(spec["rm_dir"])
    rollout, mini = spec["rollout_batch_size"], spec["minibatch"]
    args = PPOConfig(
        output_dir=str(Path(spec["out_dir"]) / "trl-run"),
        use_cpu=True,
        bf16=bool(spec.get("trl_bf16")),
        fp16=False,
        gradient_checkpointing=False,
        per_device_train_batch_size=mini,
        gradient_accumulation_steps=rollout // mini,
        num_mini_batches=rollout // mini,
        num_ppo_epochs=spec["ppo_epochs"],
        response_length=spec["response_length"],
        temperature=spec["temperature"],
        stop_token="eos",
        total_episodes=rollout * spec["steps"],
        local_rollout_forward_batch_size=rollout,
        num_sample_generations=0,
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        kl_coef=0.05,
        save_strategy="no",
        report_to="none",
        logging_steps=1,
        disable_tqdm=True,
        seed=spec["seed"],
        dataloader_num_workers=0,
    )
    trainer = PPOTrainer(
        args=args,
        processing_class=tokenizer,
        model=policy,
        ref_model=ref,
        reward_model=reward,
        value_model=value,
        train_dataset=dataset,
        eval_dataset=dataset.select(range(2)),
        callbacks=[StepTimer()],
    )
    start = time.perf_counter()
    trainer.train()
    history = [h for h in trainer.state.log_history if "objective/scores" in h]
    return {
        **recorder.summary(),
        "call_s": time.perf_counter() - start,
        "version": trl.__version__,
        "scores": [h["objective/scores"] for h in history],
        "kl": [h["objective/kl"] for h in history],
        "settings": f"use_cpu=True, bf16={bool(spec.get('trl_bf16'))}, gradient_checkpointing=False, full fine-tuning, "
        "separate reference and value models (value from the reward model)",
    }


JOBS = {"rm": train_rm, "rlhfkit": rlhfkit_side, "trl": trl_side, "effect": effect}
"""Job name -> function(spec) -> result dict."""


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in JOBS:
        raise SystemExit(f"usage: ppo_sides.py {{{'|'.join(JOBS)}}} SPEC.json RESULT.json")
    job, spec_path, out_path = argv
    import torch

    spec = read_json(Path(spec_path))
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    result = JOBS[job](spec)
    write_json(Path(out_path), {"job": job, "torch": torch.__version__, "threads": torch.get_num_threads(), **result})


if __name__ == "__main__":
    main(sys.argv[1:])
