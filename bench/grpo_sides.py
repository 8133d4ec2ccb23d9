"""One side of the GRPO / RLOO benchmark, run as its own process (rlhfkit's venv or TRL's).

    python bench/grpo_sides.py {rlhfkit|trl} SPEC.json RESULT.json

- rlhfkit: `rlhfkit.train.grpo.grpo` (GRPOConfig or RLOOConfig as ``spec["method"]`` says), timed at
  the end of every step;
- trl: TRL's GRPOTrainer or RLOOTrainer with the same policy, prompts, reward function, group size,
  prompts per step, response length, temperature, beta, loss aggregation and learning rate.

The reward is the shipped arithmetic verifier (`rlhfkit.data.arithmetic.reward`), which both sides
import from the repository's src/ (TRL's venv gets it on PYTHONPATH). Only the standard library is
imported at load time, so both venvs can run this file.
"""

from __future__ import annotations

import json
import sys
import time
from pathlib import Path
from typing import Any

from common import read_json, write_json
from ppo_sides import StepRecorder


def rlhfkit_side(spec: dict[str, Any]) -> dict[str, Any]:
    from rlhfkit.config import build_config
    from rlhfkit.train import metrics as metrics_module
    from rlhfkit.train.grpo import GRPOConfig, RLOOConfig, grpo

    recorder = StepRecorder(spec["prompts_per_step"] * spec["group_size"])
    log = metrics_module.MetricsLogger.log

    def timed_log(self: Any, step: int, metrics: dict[str, float]) -> dict[str, float]:  # log_every=1: once per step
        if step > 0:
            recorder.step()
        return log(self, step, metrics)

    metrics_module.MetricsLogger.log = timed_log  # type: ignore[method-assign]
    rollout = spec["prompts_per_step"] * spec["group_size"]
    cfg = build_config(
        RLOOConfig if spec["method"] == "rloo" else GRPOConfig,
        values={
            "policy": spec["model_dir"],
            "reward": "python:rlhfkit.data.arithmetic:reward",
            "output": spec["out_dir"],
            "prompts": spec["prompts_file"],
        },
        overrides=[
            f"max_steps={spec['steps']}",
            f"prompts_per_step={spec['prompts_per_step']}",
            f"group_size={spec['group_size']}",
            f"batch_size={spec['micro']}",
            f"grad_accum={rollout // spec['micro']}",
            f"sampling.max_new_tokens={spec['response_length']}",
            f"sampling.temperature={spec['temperature']}",
            f"sampling.batch_size={rollout}",
            f"lr={spec['lr']}",
            f"beta={spec['beta']}",
            "loss_aggregation=token_mean",
            "resume=false",
            "save_every=0",
            "progress=false",
            "log_every=1",
            f"seed={spec['seed']}",
            *spec.get("rlhfkit_overrides", []),
        ],
    )
    start = time.perf_counter()
    run = grpo(cfg)
    rows = [json.loads(line) for line in (run / "metrics.jsonl").read_text().splitlines()]
    return {**recorder.summary(), "call_s": time.perf_counter() - start, "metrics": rows}


def trl_side(spec: dict[str, Any]) -> dict[str, Any]:
    import torch
    import trl
    from datasets import Dataset
    from peft import LoraConfig
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback

    from rlhfkit.data.arithmetic import reward as verifier

    recorder = StepRecorder(spec["prompts_per_step"] * spec["group_size"])

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.step()

    def reward(prompts: list[Any], completions: list[Any], **_: Any) -> list[float]:
        texts = [c[-1]["content"] if isinstance(c, list) else c for c in completions]
        return verifier(prompts, texts)

    rows = [json.loads(line) for line in Path(spec["prompts_file"]).read_text().splitlines() if line]
    dataset = Dataset.from_list([{"prompt": r["prompt"]} for r in rows])
    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"], padding_side="left")
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    rollout = spec["prompts_per_step"] * spec["group_size"]
    common = {
        "output_dir": str(Path(spec["out_dir"]) / "trl-run"),
        "use_cpu": True,
        "bf16": False,
        "gradient_checkpointing": False,
        "per_device_train_batch_size": spec["micro"],
        "gradient_accumulation_steps": rollout // spec["micro"],
        "num_generations": spec["group_size"],
        "max_completion_length": spec["response_length"],
        "temperature": spec["temperature"],
        "beta": spec["beta"],
        "max_steps": spec["steps"],
        "learning_rate": spec["lr"],
        "lr_scheduler_type": "constant",
        "save_strategy": "no",
        "report_to": "none",
        "logging_steps": 1,
        "disable_tqdm": True,
        "seed": spec["seed"],
        "dataloader_num_workers": 0,
    }
    if spec["method"] == "rloo":
        args: Any = trl.RLOOConfig(**common)
        trainer_cls: Any = trl.RLOOTrainer
    else:
        args = trl.GRPOConfig(**common, loss_type="dapo", epsilon_high=spec.get("clip_high", 0.2))
        trainer_cls = trl.GRPOTrainer
    lora = LoraConfig(r=16, lora_alpha=32, lora_dropout=0.0, target_modules="all-linear", task_type="CAUSAL_LM")
    peft = lora if spec.get("trl_lora", True) else None
    trainer = trainer_cls(
        model=model,
        reward_funcs=reward,
        args=args,
        train_dataset=dataset,
        processing_class=tokenizer,
        peft_config=peft,
        callbacks=[StepTimer()],
    )
    start = time.perf_counter()
    trainer.train()
    history = [h for h in trainer.state.log_history if "reward" in h]
    return {
        **recorder.summary(),
        "call_s": time.perf_counter() - start,
        "version": trl.__version__,
        "reward": [h["reward"] for h in history],
        "settings": f"{trainer_cls.__name__}, use_cpu=True, fp32, LoRA r=16 on all linear layers"
        if peft
        else f"{trainer_cls.__name__}, use_cpu=True, fp32, full fine-tuning",
    }


JOBS = {"rlhfkit": rlhfkit_side, "trl": trl_side}
"""Job name -> function(spec) -> result dict."""


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in JOBS:
        raise SystemExit(f"usage: grpo_sides.py {{{'|'.join(JOBS)}}} SPEC.json RESULT.json")
    job, spec_path, out_path = argv
    import torch

    spec = read_json(Path(spec_path))
    if spec.get("threads"):
        torch.set_num_threads(int(spec["threads"]))
    result = JOBS[job](spec)
    write_json(Path(out_path), {"job": job, "torch": torch.__version__, "threads": torch.get_num_threads(), **result})


if __name__ == "__main__":
    main(sys.argv[1:])
