"""Supervised fine-tuning on demonstrations: the first phase of RLHF (Ouyang et al. 2022, sec. 3.5).

The loss is next-token cross-entropy on response tokens only. With gradient accumulation it is
normalized by the number of response tokens in the whole optimizer step, not per micro-batch, so a
step's gradient is the same however the batch is split.
"""

from __future__ import annotations

import functools
from dataclasses import dataclass
from pathlib import Path
from typing import Literal, NamedTuple, cast

import torch

from rlhfkit.config import require
from rlhfkit.data.chat import ChatTemplate, describe_templating, encode_pair
from rlhfkit.data.collate import collate_lm
from rlhfkit.data.records import Demonstration, Record
from rlhfkit.models.adapters import (
    LoRAConfig,
    choose_trainable,
    decoder_layers,
    trainable_parameters,
)
from rlhfkit.models.lm import token_nll_sum
from rlhfkit.models.loading import load_model
from rlhfkit.models.saving import save_model_dir
from rlhfkit.train.config import TrainConfig, TrainSettings
from rlhfkit.train.engine import Engine
from rlhfkit.train.precision import MasterWeights
from rlhfkit.train.run import Run, log
from rlhfkit.train.sources import load_train_eval

HEADLINE = (("train/loss", "loss"), ("eval/loss", "eval loss"), ("perf/tokens_per_s", "tokens/s"))
"""What the console shows of an SFT run."""


@dataclass(frozen=True)
class SFTSettings(TrainSettings):
    """Every knob of SFT but the run's model, data and output."""

    eval_fraction: float = 0.05
    """Share of `data` held out for the eval loss when `eval_data` is empty."""
    skip_invalid: bool = False
    """Skip malformed rows (and report how many and why) instead of failing on the first."""
    max_length: int = 512
    """Maximum tokens of prompt + response; prompts are cut from the left, then responses from the right."""
    chat_template: ChatTemplate = "auto"
    """Which prompts go through the tokenizer's chat template: 'auto' (TRL's rule: conversational prompts are
    templated, plain-text prompts used as text), 'always' (a plain prompt becomes one user turn) or 'never'."""
    group_by_length: bool = True
    """Batch rows of similar length together to cut padding (the order stays seeded)."""
    lora: LoRAConfig | None = None
    """Train LoRA adapters instead of the full model (e.g. lora.r=16); null trains all weights."""
    freeze_layers: int = 0
    """Freeze the embeddings and this many bottom transformer layers."""
    eval_batches: int = 8
    """At most this many batches of held-out data per evaluation."""
    weights: Literal["auto", "master", "fp32"] = "auto"
    """Weights when computing in bf16: 'master' (bf16 weights, fp32 master copies in the optimizer;
    no per-forward casts), 'fp32' (fp32 weights that autocast casts on every forward) or 'auto'
    ('master' on one process, 'fp32' under DDP / DeepSpeed / FSDP, which keep their own masters)."""
    compile: bool = False
    """torch.compile each decoder layer, with dynamic shapes so varying lengths do not recompile: faster
    steps after a one-off compilation of tens of seconds (worth it for long runs, not for short ones)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(0.0 <= self.eval_fraction < 1.0, "eval_fraction must be in [0, 1)")
        require(self.max_length >= 8, "max_length must be at least 8")
        require(self.freeze_layers >= 0, "freeze_layers must be >= 0")
        require(
            not (self.lora is not None and self.freeze_layers),
            "lora and freeze_layers both choose what trains; set one of them",
        )


@dataclass(frozen=True)
class SFTConfig(SFTSettings, TrainConfig):
    """`rlhfkit sft`: fine-tune a model on demonstrations (prompt -> response)."""

    model: str = "smollm2"
    """MODEL to start from: 'smollm2' (bundled), a local model directory, a finished run, or a hub id."""
    data: str = ""
    """Demonstrations: JSONL/CSV/JSON file, dataset directory, or DBURL#PROJECT. A pairs file gives its chosen side."""
    eval_data: str = ""
    """Held-out demonstrations; when empty, `eval_fraction` of `data` is held out."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.data), "data is required (a demonstrations file)")

    def title(self) -> str:
        """What the run is, in a few words (the report's title)."""
        return f"SFT of {self.model}"


def _encode(
    tokenizer, records: list[Demonstration], max_length: int, chat_template: ChatTemplate
) -> tuple[list[list[int]], list[list[int]], int]:
    ids, labels, truncated = [], [], 0
    for rec in records:
        enc = encode_pair(tokenizer, rec.prompt, rec.response, max_length=max_length, chat_template=chat_template)
        ids.append(enc.input_ids)
        labels.append(enc.labels)
        truncated += enc.prompt_truncated
    return ids, labels, truncated


class Demos(NamedTuple):
    """Tokenized demonstrations: the training rows, and the held-out ones in batches."""

    ids: list[list[int]]
    """Prompt + response token ids of each training demonstration."""
    labels: list[list[int]]
    """The same with -100 on the prompt (no loss there)."""
    eval_batches: list[dict[str, torch.Tensor]]
    """At most `eval_batches` collated batches of held-out demonstrations."""


def encode_demos(tokenizer, train: list[Record], held: list[Record], cfg: SFTConfig) -> Demos:
    """Tokenize every demonstration once (prompts cut from the left to fit `max_length`). The records
    were loaded as kind "demos", so every one is a `Demonstration`."""
    log.info(describe_templating([r.prompt for r in cast(list[Demonstration], train)], cfg.chat_template))
    ids, labels, cut = _encode(tokenizer, cast(list[Demonstration], train), cfg.max_length, cfg.chat_template)
    eval_ids, eval_labels, _ = _encode(tokenizer, cast(list[Demonstration], held), cfg.max_length, cfg.chat_template)
    if cut:
        log.info("%d prompts were longer than the limit and were cut from the left", cut)
    pad, size = tokenizer.pad_token_id, cfg.batch_size
    batches = [
        collate_lm(eval_ids[i : i + size], eval_labels[i : i + size], pad) for i in range(0, len(eval_ids), size)
    ]
    return Demos(ids, labels, batches[: cfg.eval_batches])


@torch.no_grad()
def evaluate(engine: Engine, model, batches: list[dict[str, torch.Tensor]]) -> float:
    """Mean per-token NLL of the held-out responses."""
    model.eval()
    total, count = torch.zeros(()), torch.zeros(())
    for batch in batches:
        with engine.autocast():
            nll, n = token_nll_sum(model, engine.to_device(batch))
        total += nll.float().cpu()
        count += n.cpu()
    return float(total / count.clamp(min=1))


def held_out_loss(engine: Engine, model, batches: list[dict[str, torch.Tensor]], step: int) -> dict[str, float]:
    """The evaluation of any step: the mean token NLL of the held-out responses."""
    return {"eval/loss": evaluate(engine, model, batches)}


def _master_weights(cfg: SFTConfig, engine: Engine, model) -> MasterWeights | None:
    """bf16 weights with fp32 masters when computing in bf16 on one process (see train/precision.py)."""
    if engine.compute_dtype != torch.bfloat16 or cfg.weights == "fp32":
        return None
    if cfg.weights == "auto" and engine.world_size > 1:
        return None
    return MasterWeights(model, torch.bfloat16)


def accumulate(run: Run, model, batches: list[dict[str, torch.Tensor]]) -> float:
    """Forward and backward over this process's micro-batches of a step, the loss normalized by the
    response tokens of the whole step (every micro-batch of every process); returns the step's loss."""
    divisor = run.divisor(sum(int((b["labels"][:, 1:] != -100).sum()) for b in batches))
    nll_sum = 0.0
    for i, batch in enumerate(batches):
        with run.engine.sync(model, last=i == len(batches) - 1), run.engine.autocast():
            nll, _ = token_nll_sum(model, run.engine.to_device(batch))
            run.engine.backward(nll / divisor)
        nll_sum += float(nll.detach())
    return run.all_sum({"nll": nll_sum / divisor})["nll"] / run.engine.world_size


def sft(cfg: SFTConfig) -> Path:
    """Run SFT; returns the run directory, which is also the fine-tuned model's directory."""
    run = Run(cfg, "sft", HEADLINE)

    # 1. Data: load, hold out, tokenize once.
    train_recs, eval_recs = load_train_eval(cfg, "demos")
    loaded = load_model(cfg.model, dtype="fp32", device=run.device)
    tokenizer, pad = loaded.tokenizer, loaded.tokenizer.pad_token_id
    demos = encode_demos(tokenizer, train_recs, eval_recs, cfg)
    stream = run.stream([len(x) for x in demos.ids], group_by_length=cfg.group_by_length)

    # 2. Model: what trains (all, LoRA, or the top layers); bf16 weights keep fp32 masters.
    require(
        not (run.engine.fsdp and (cfg.lora is not None or cfg.compile)),
        "FSDP on CPU fine-tunes the full model uncompiled: drop lora and compile, or launch data-parallel",
    )
    model = choose_trainable(loaded.model, cfg.lora, cfg.freeze_layers)
    masters = _master_weights(cfg, run.engine, model)
    trained = masters or model  # what holds the fp32 values that the optimizer updates and checkpoints save

    # 3. Optimizer, resume from the newest checkpoint, engine.
    params = masters.parameters() if masters else trainable_parameters(model)
    model, _, _ = run.setup(
        model, params, modules={"model": trained}, state={"data": stream}, on=f"{len(demos.ids)} demonstrations"
    )
    if masters and run.resumed:
        masters.masters_to_model()
    if cfg.compile:
        for layer in decoder_layers(model):
            layer.compile(dynamic=True)
    held_out = functools.partial(held_out_loss, run.engine, model, demos.eval_batches) if demos.eval_batches else None
    run.log_initial(held_out)

    for step in run.steps():
        # 4. One optimizer step over this process's grad_accum micro-batches.
        model.train()
        batches = [
            collate_lm([demos.ids[i] for i in idx], [demos.labels[i] for i in idx], pad) for idx in stream.next_step()
        ]
        loss = accumulate(run, model, batches)
        if masters:
            masters.grads_to_masters()
        grad_norm = run.optimizer_step(trained)
        if masters:
            masters.masters_to_model()
        run.count("tokens", sum(int(b["attention_mask"].sum()) for b in batches))
        run.count("examples", sum(len(b["input_ids"]) for b in batches))

        # 5. Log, evaluate, checkpoint.
        run.end_step(step, {"train/loss": loss, "train/grad_norm": grad_norm}, evaluate=held_out)
    run.close()

    # 6. The run directory becomes a model directory (fp32, from the masters).
    if masters:
        masters.restore_fp32()
    plain = run.engine.full_model(model)  # under FSDP every process hands its shards to the main one
    if plain is not None:
        save_model_dir(plain, tokenizer, run.dir)
    return run.dir
