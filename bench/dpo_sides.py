"""The two sides of bench/dpo_vs_trl.py; each runs in its own process, under its own venv.

    python bench/dpo_sides.py JOB SPEC.json RESULT.json
        JOB: rlhfkit-train | trl-train     timed DPO training (throughput, memory, eval accuracy)
             rlhfkit-losses | trl-losses   every variant's loss on one batch, for the equality check

SPEC (written by dpo_vs_trl.py) names the model directory, the data files and the shared
hyper-parameters. The TRL venv has no rlhfkit and rlhfkit's venv has no trl, so each job imports
only its own side. TRL gets the prompt already rendered by rlhfkit's chat template (its "standard"
prompt/chosen/rejected format, to which it appends EOS), so both sides see the very same tokens;
the harness checks that on the tokens each side reports.
"""

from __future__ import annotations

import json
import resource
import sys
import time
from collections.abc import Callable
from itertools import pairwise
from pathlib import Path
from typing import Any

from common import read_json, steady_rate, write_json


class StepRecorder:
    """When each optimizer step ended, the pairs it trained, and the peak RSS so far."""

    def __init__(self) -> None:
        self.times: list[float] = []
        self.pairs: list[int] = []
        self.rss_mb_at_last_step = 0.0

    def step(self, pairs: int) -> None:
        self.times.append(time.perf_counter())
        self.pairs.append(int(pairs))
        self.rss_mb_at_last_step = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024

    def summary(self) -> dict[str, Any]:
        return {
            "steps_per_s": steady_rate(self.times, [1] * len(self.times), skip=1),
            "pairs_per_s": steady_rate(self.times, self.pairs, skip=1),
            "step_s": [round(b - a, 3) for a, b in pairwise(self.times)],
            "train_max_rss_mb": self.rss_mb_at_last_step,
        }


def _version(package: str) -> str:
    from importlib.metadata import version

    return version(package)


def _rlhfkit_config(spec: dict[str, Any], out: Path, **values: Any) -> Any:
    from rlhfkit.train.dpo import DPOConfig

    base = {
        "model": spec["model_dir"],
        "data": spec["train_file"],
        "eval_data": spec.get("eval_file", ""),
        "eval_fraction": 0.0,
        "max_length": spec["max_length"],
        "max_prompt_length": spec["max_length"] - 1,
        "chat_template": "always",  # as encode_group below (its default): the same tokens on both sides
        "batch_size": spec["batch_size"],
        "lr": spec["lr"],
        "warmup_steps": 0,
        "schedule": "constant",
        "max_grad_norm": 1.0,
        "max_steps": spec["steps"],
        "beta": spec["beta"],
        "loss": spec["loss"],
        "dtype": spec["rlhfkit_dtype"],
        "layout": spec["rlhfkit_layout"],
        "seed": spec["seed"],
        "group_by_length": spec["rlhfkit_group_by_length"],
        "save_every": 0,
        "log_every": 1,
        "eval_every": spec.get("eval_every", 0),
        "eval_batches": 10**6,
        "kl_prompts": spec.get("kl_prompts", 0),
        "ref_batch_size": spec["batch_size"],
        "progress": False,
        "resume": False,
        "output": out,
    }
    return DPOConfig(**{**base, **values})


def rlhfkit_train(spec: dict[str, Any]) -> dict[str, Any]:
    """rlhfkit.train.dpo.dpo, timed through its run's Throughput counter (one add() per step)."""
    from rlhfkit.train import run as run_module
    from rlhfkit.train.dpo import trainer as dpo_module

    recorder = StepRecorder()
    ref_s: list[float] = []

    class RecordingThroughput(run_module.Throughput):
        def add(self, n: float) -> None:
            super().add(n)
            recorder.step(int(n))

    real_reference = dpo_module.compute_reference_logps

    def timed_reference(*args: Any, **kwargs: Any) -> Any:
        start = time.perf_counter()
        out = real_reference(*args, **kwargs)
        ref_s.append(time.perf_counter() - start)
        return out

    # Measurement hooks only; the loop itself is unchanged.
    run_module.Throughput = RecordingThroughput
    dpo_module.compute_reference_logps = timed_reference
    cfg = _rlhfkit_config(spec, Path(spec["work_dir"]) / "rlhfkit-run")
    start = time.perf_counter()
    run_dir = dpo_module.dpo(cfg)
    call_s = time.perf_counter() - start
    rows = [json.loads(line) for line in (run_dir / "metrics.jsonl").read_text().splitlines()]
    return {
        **recorder.summary(),
        "version": _version("rlhfkit"),
        "settings": f"dtype={cfg.dtype}, layout={cfg.layout}, group_by_length={cfg.group_by_length}, full fine-tuning",
        "reference_pass_s": sum(ref_s),
        "call_s": call_s,
        "train_loss": [r["train/loss"] for r in rows if "train/loss" in r],
        "eval": [
            {k: v for k, v in r.items() if k.startswith("eval/") or k == "step"}
            for r in rows
            if any(k.startswith("eval/") for k in r)
        ],
        "run_dir": str(run_dir),
    }


def _trl_dataset(path: str) -> Any:
    from datasets import Dataset

    return Dataset.from_list([json.loads(line) for line in Path(path).read_text().splitlines() if line])


def trl_train(spec: dict[str, Any]) -> dict[str, Any]:
    """TRL's DPOTrainer on CPU, timed by a callback at the end of every optimizer step."""
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer, TrainerCallback
    from trl import DPOConfig, DPOTrainer

    recorder = StepRecorder()

    class StepTimer(TrainerCallback):
        def on_step_end(self, args: Any, state: Any, control: Any, **kwargs: Any) -> None:
            recorder.step(spec["batch_size"])

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    model = AutoModelForCausalLM.from_pretrained(spec["model_dir"], dtype=torch.float32)
    args = DPOConfig(
        output_dir=str(Path(spec["work_dir"]) / "trl-run"),
        use_cpu=True,
        bf16=spec["trl_dtype"] == "bf16",
        fp16=False,
        gradient_checkpointing=spec["trl_gradient_checkpointing"],
        precompute_ref_log_probs=spec["trl_precompute_ref"],
        precompute_ref_batch_size=spec["batch_size"],
        per_device_train_batch_size=spec["batch_size"],
        per_device_eval_batch_size=spec["batch_size"],
        learning_rate=spec["lr"],
        lr_scheduler_type="constant",
        warmup_steps=0,
        weight_decay=0.0,
        adam_beta1=0.9,
        adam_beta2=0.95,  # rlhfkit's AdamW betas
        adam_epsilon=1e-8,
        max_grad_norm=1.0,
        max_steps=spec["steps"],
        max_length=spec["max_length"],
        beta=spec["beta"],
        loss_type=[spec["loss"]],
        train_sampling_strategy="group_by_length" if spec.get("trl_group_by_length") else "random",
        dataloader_num_workers=0,
        logging_steps=1,
        save_strategy="no",
        eval_strategy="no",
        report_to="none",
        disable_tqdm=True,
        seed=spec["seed"],
    )
    trainer = DPOTrainer(
        model=model,
        args=args,
        train_dataset=_trl_dataset(spec["trl_train_file"]),
        processing_class=tokenizer,
        callbacks=[StepTimer()],
    )
    start = time.perf_counter()
    trainer.train()
    train_s = time.perf_counter() - start
    return {
        **recorder.summary(),
        "version": trl.__version__,
        "settings": (
            f"use_cpu=True, bf16={args.bf16}, gradient_checkpointing={args.gradient_checkpointing}, "
            f"precompute_ref_log_probs={args.precompute_ref_log_probs}, "
            f"train_sampling_strategy={args.train_sampling_strategy}, full fine-tuning"
        ),
        "train_call_s": train_s,
        "train_loss": [h["loss"] for h in trainer.state.log_history if "loss" in h],
    }


# ---- step-0 losses of every variant -------------------------------------------------------------


def rlhfkit_losses(spec: dict[str, Any]) -> dict[str, Any]:
    """Each variant's loss on one batch from the functions the dpo() loop runs: the reference from
    `compute_reference_logps` (the loop's one pass), the policy's log-probs from `response_logps` on
    the loop's layout, the loss from the loop's `pairwise_terms`. Step 0: the policy is the base model;
    trained: the accuracy job's model."""
    import contextlib

    import torch

    from rlhfkit.data.loaders import load_records
    from rlhfkit.models.loading import load_model
    from rlhfkit.train.dpo.batches import LAYOUTS, compute_reference_logps, encode_group, record_texts, response_logps
    from rlhfkit.train.dpo.terms import RANKING_MODES

    base = load_model(spec["model_dir"], dtype="fp32")
    texts, _ = record_texts(load_records(spec["train_file"], "pairs").records)
    groups = [
        encode_group(base.tokenizer, p, r, max_length=spec["max_length"], max_prompt_length=spec["max_length"] - 1)
        for p, r in texts
    ]
    layout, pad = spec["rlhfkit_layout"], base.tokenizer.pad_token_id
    ref = compute_reference_logps(
        base.model,
        groups,
        layout=layout,
        pad_id=pad,
        batch_size=len(groups),
        device=torch.device("cpu"),
        autocast=contextlib.nullcontext,
    )
    batch = LAYOUTS[layout](groups, pad)
    policies = {"step0": base.model, "trained": load_model(spec["trained_dir"], dtype="fp32").model}
    out: dict[str, Any] = {}
    for setting, model in policies.items():
        with torch.no_grad():
            logps, lengths = response_logps(model.eval(), batch)
        out[setting] = {}
        for name, hyper in spec["variants"].items():
            cfg = _rlhfkit_config(
                {**spec, "loss": hyper["loss"]}, Path(spec["work_dir"]) / "unused", **hyper.get("rlhfkit", {})
            )
            terms = RANKING_MODES["pairs"].terms(logps, lengths, ref, batch.sizes, cfg)
            value = float(terms.losses.mean())
            if hyper.get("part") == "odds_ratio":  # minus the NLL term: mean token NLL of each chosen response
                chosen = torch.arange(0, len(logps), 2)
                value -= float((-logps[chosen] / lengths[chosen]).mean())
            out[setting][name] = value
    out["tokens"] = [[list(g.prompt_ids), [list(r) for r in g.responses]] for g in groups]
    out["version"] = _version("rlhfkit")
    return out


def _trl_trainer(
    kind: str,
    model: Any,
    ref_model: Any,
    tokenizer: Any,
    dataset: Any,
    spec: dict[str, Any],
    options: dict[str, Any],
    batch_size: int,
) -> Any:
    """A TRL trainer of `kind` (dpo, cpo, orpo) set to compute the loss on CPU in fp32."""
    from trl import DPOConfig, DPOTrainer
    from trl.experimental.cpo import CPOConfig, CPOTrainer
    from trl.experimental.orpo import ORPOConfig, ORPOTrainer

    common = {
        "output_dir": str(Path(spec["work_dir"]) / "trl-loss"),
        "use_cpu": True,
        "bf16": False,
        "fp16": False,
        "per_device_train_batch_size": batch_size,
        "max_length": spec["max_length"],
        "beta": spec["beta"],
        "report_to": "none",
        "disable_tqdm": True,
        "gradient_checkpointing": False,
        "seed": spec["seed"],
    }
    if kind == "dpo":
        args = DPOConfig(**common, **options)
        return DPOTrainer(
            model=model, ref_model=ref_model, args=args, train_dataset=dataset, processing_class=tokenizer
        )
    cls_cfg, cls_trainer = {"cpo": (CPOConfig, CPOTrainer), "orpo": (ORPOConfig, ORPOTrainer)}[kind]
    return cls_trainer(
        model=model, args=cls_cfg(**common, **options), train_dataset=dataset, processing_class=tokenizer
    )


def _trl_batch_loss(trainer: Any, part: str | None) -> float:
    """TRL's loss on its first batch; part="odds_ratio": ORPO's loss minus its NLL term."""
    import torch

    batch = trainer._prepare_inputs(next(iter(trainer.get_train_dataloader())))
    with torch.no_grad():
        if part == "odds_ratio":
            loss, metrics = trainer.get_batch_loss_metrics(trainer.model, batch, train_eval="train")
            return float(loss - metrics["nll_loss"])
        return float(trainer.compute_loss(trainer.model, batch))


def trl_losses(spec: dict[str, Any]) -> dict[str, Any]:
    """Each variant's loss from TRL's own trainers on the same batch: policy = reference (step 0) and
    the trained policy against the base reference. A variant marked per_pair is computed one pair at
    a time (batch of 1) and averaged, for the reasons given in the harness."""
    import torch
    import trl
    from transformers import AutoModelForCausalLM, AutoTokenizer

    tokenizer = AutoTokenizer.from_pretrained(spec["model_dir"])
    dataset = _trl_dataset(spec["trl_train_file"])
    n = len(dataset)

    def load(path: str) -> Any:
        return AutoModelForCausalLM.from_pretrained(path, dtype=torch.float32)

    out: dict[str, Any] = {"step0": {}, "trained": {}}
    for setting, policy_dir in (("step0", spec["model_dir"]), ("trained", spec["trained_dir"])):
        for name, hyper in spec["variants"].items():
            trl_spec = hyper["trl"]
            reference = None if setting == "step0" or trl_spec["kind"] != "dpo" else load(spec["model_dir"])
            if trl_spec.get("per_pair"):
                losses = [
                    _trl_batch_loss(
                        _trl_trainer(
                            trl_spec["kind"],
                            load(policy_dir),
                            reference,
                            tokenizer,
                            dataset.select([i]),
                            spec,
                            trl_spec["options"],
                            1,
                        ),
                        hyper.get("part"),
                    )
                    for i in range(n)
                ]
                out[setting][name] = sum(losses) / n
            else:
                trainer = _trl_trainer(
                    trl_spec["kind"], load(policy_dir), reference, tokenizer, dataset, spec, trl_spec["options"], n
                )
                out[setting][name] = _trl_batch_loss(trainer, hyper.get("part"))
                if setting == "step0" and name == "sigmoid":
                    ds = trainer.train_dataset
                    out["tokens"] = [
                        [ds[i]["prompt_ids"], [ds[i]["chosen_ids"], ds[i]["rejected_ids"]]] for i in range(n)
                    ]
    out["version"] = trl.__version__
    return out


JOBS: dict[str, Callable[[dict[str, Any]], dict[str, Any]]] = {
    "rlhfkit-train": rlhfkit_train,
    "trl-train": trl_train,
    "rlhfkit-losses": rlhfkit_losses,
    "trl-losses": trl_losses,
}
"""Job name -> function(spec) -> result dict."""


def main(argv: list[str]) -> None:
    if len(argv) != 3 or argv[0] not in JOBS:
        raise SystemExit(f"usage: dpo_sides.py {{{'|'.join(JOBS)}}} SPEC.json RESULT.json")
    job, spec_path, out_path = argv
    import torch

    result = JOBS[job](read_json(Path(spec_path)))
    write_json(Path(out_path), {"job": job, "torch": torch.__version__, "threads": torch.get_num_threads(), **result})


if __name__ == "__main__":
    main(sys.argv[1:])
