"""One run = one directory, and the `Run` object that every training loop is written around.

    run_dir/
      config.yaml        the resolved config (what actually ran)
      metrics.jsonl      one JSON object per logged step: {"step": N, "train/loss": ...}
      samples.jsonl      example generations, for loops that sample
      checkpoints/       resumable state (see checkpoint.py)
      tensorboard/       when report_to includes tensorboard
      config.json, model.safetensors, tokenizer*   the final model: the run dir is a model dir

A trainer builds its data and model, then hands the rest to `Run`: the optimizer and schedule, the
resume from the newest checkpoint, the engine (Accelerate), metrics, the console, and the periodic
checkpoints; its own file keeps only its config and a loop of numbered steps::

    run = Run(cfg, "sft", HEADLINE)
    ...                                                   # 1. data, 2. model
    model, optimizer, scheduler = run.setup(model, params, modules={"model": model}, state={"data": stream})
    for step in run.steps():
        ...                                               # 3. forward, backward, run.optimizer_step(model)
        run.end_step(step, metrics, evaluate=held_out)    # 4. log, evaluate(step) when due, checkpoint
    run.close()

The HTML report is not a trainer's business: the command line and the loop write it afterwards.

Under ``torchrun`` / ``accelerate launch`` every process runs the same loop. `Run` shards the data
(`stream`), turns a process's sums into its share of the step's global mean (`divisor`), reduces
metrics (`all_sum`, `gather`), and lets only the main process write: the config, metrics, samples
and checkpoints (trainers guard the final model with `is_main`).
"""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Iterator, Mapping
from pathlib import Path
from typing import Any, Protocol

import torch
from torch import nn

from rlhfkit.config import ConfigError, save_config, to_dict
from rlhfkit.data.sampler import BatchStream
from rlhfkit.files import append_jsonl, truncate_jsonl_after
from rlhfkit.models.adapters import count_parameters
from rlhfkit.train.checkpoint import Parameterized, latest_checkpoint, load_checkpoint, save_checkpoint
from rlhfkit.train.config import TrainConfig
from rlhfkit.train.console import Console, Headline
from rlhfkit.train.engine import Engine
from rlhfkit.train.metrics import (
    MetricsLogger,
    Throughput,
    check_finite,
    peak_memory_mb,
)
from rlhfkit.train.optim import load_scheduler_state, make_optimizer, scheduler_state

log = logging.getLogger("rlhfkit")

RESUMABLE_FIELDS = frozenset(
    {"max_steps", "resume", "progress", "report_to", "save_every", "log_every", "eval_every", "console_every"}
    | {"batch_size", "grad_accum"}
)
"""Config fields a resumed run may change (run longer, log differently; split the same global batch
otherwise over another number of processes: `Run` checks the global batch); any other change is refused."""

FSDP_ON_CPU = frozenset({"sft", "reward", "dpo"})
"""The trainers that run under an FSDP launch on CPU processes (torch's FSDP2, `rlhfkit.train.fsdp`):
their model is one module (a causal LM; a reward model, its head in the root unit) whose parameters
are all the checkpoint holds, and which runs only as forwards of its root (`rlhfkit.models.lm.through_root`).
(DPO samples its held-out KL inside one.) The RL trainers refuse it: their rollouts' sampling and
scoring are not routed through the root, nor checked against one process, and PPO trains a value
model beside the policy, which `Run._shard` cannot hold."""


class Stateful(Protocol):
    """Loop state a checkpoint carries as JSON (the data position, a KL controller, running moments)."""

    def state_dict(self) -> dict[str, Any]: ...

    def load_state_dict(self, state: dict[str, Any]) -> None: ...


class FileState(Protocol):
    """Loop state too big for JSON, kept in a file of the run directory beside the checkpoints (the
    reward model's cache of frozen-trunk features); `load` says whether the file fitted and was used."""

    def save(self, path: Path) -> None: ...

    def load(self, path: Path) -> bool: ...


def prepare_run_dir(cfg: TrainConfig, write: bool = True) -> Path:
    """Create the run directory and write the resolved config (when `write`: the main process).

    A run directory holding a different config refuses to be resumed into: resuming with other
    hyper-parameters would silently produce a run nobody asked for.
    """
    run_dir = Path(cfg.output)
    run_dir.mkdir(parents=True, exist_ok=True)
    path = run_dir / "config.yaml"
    if path.exists() and cfg.resume and (run_dir / "checkpoints").exists():
        import yaml

        old = yaml.safe_load(path.read_text()) or {}
        new = to_dict(cfg)
        diff = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_FIELDS and old.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"{run_dir} holds a run with a different config ({', '.join(diff)}); "
                f"use another output directory or resume=false"
            )
    if write:
        save_config(cfg, path)
    return run_dir


class Run:
    """The shared machinery of one training run (see the module docstring for the shape of a loop)."""

    def __init__(self, cfg: TrainConfig, name: str, headline: Headline) -> None:
        self.cfg = cfg
        self.name = name
        self.headline = headline
        self.engine = Engine(cfg.dtype, cfg.seed)
        if self.engine.fsdp and name not in FSDP_ON_CPU:
            raise ConfigError(
                f"{name} does not run under FSDP on CPU (torch's FSDP2 runs {', '.join(sorted(FSDP_ON_CPU))}); "
                "launch it data-parallel: torchrun --nproc_per_node N, or configs/accelerate/ddp.yaml"
            )
        self.dir = prepare_run_dir(cfg, write=self.engine.is_main)
        self.start_step = 0
        """The step the loop continues after (0 for a fresh run)."""
        self._speed: dict[str, Throughput] = {}
        self._modules: Mapping[str, Parameterized] = {}
        self._state: Mapping[str, Stateful] = {}
        self._files: Mapping[str, FileState] = {}

    @property
    def device(self) -> torch.device:
        return self.engine.device

    @property
    def resumed(self) -> bool:
        return self.start_step > 0

    @property
    def is_main(self) -> bool:
        """Whether this is the process that writes (always, on one process)."""
        return self.engine.is_main

    @property
    def global_batch(self) -> int:
        """Examples per optimizer step over all processes: batch_size x grad_accum x processes."""
        return self.cfg.batch_size * self.cfg.grad_accum * self.engine.world_size

    def stream(
        self, lengths: list[int], *, group_by_length: bool = False, step_size: int = 0, micro_batches: int = 0
    ) -> BatchStream:
        """This process's `BatchStream`: by default `global_batch` examples a step, of which it takes
        its contiguous share in `grad_accum` micro-batches of `batch_size`. A loop whose step is not
        made of training micro-batches (PPO's prompts) passes its own global `step_size` (and 1)."""
        return BatchStream(
            lengths,
            step_size or self.global_batch,
            self.cfg.seed,
            group_by_length,
            micro_batches=micro_batches or self.cfg.grad_accum,
            rank=self.engine.rank,
            world_size=self.engine.world_size,
        )

    def all_sum(self, sums: Mapping[str, float]) -> dict[str, float]:
        """Sums (of losses, counts, statistics) over every process, in one collective; every process
        calls it at the same point with the same keys."""
        keys = sorted(sums)
        return dict(zip(keys, self.engine.all_sum([float(sums[k]) for k in keys]), strict=True))

    def divisor(self, local_count: float) -> float:
        """What this process divides its loss *sum* by so that the step's gradient is the sum over every
        micro-batch of every process divided by the step's global count (tokens, examples, pairs).

        DDP, FSDP and DeepSpeed average gradients over the processes, so each divides by
        ``global_count / world_size``; the mean is then the same however the step is split. A
        collective: call it once per step on every process."""
        (total,) = self.engine.all_sum([local_count])
        return max(1.0, total) / self.engine.world_size

    def gather(self, tensor: torch.Tensor) -> torch.Tensor:
        """Every process's `tensor` (the same shape on each) concatenated in rank order (a collective)."""
        return self.engine.gather(tensor)

    def setup(
        self,
        model: nn.Module,
        params: list[nn.Parameter],
        *,
        modules: Mapping[str, Parameterized],
        state: Mapping[str, Stateful | None] | None = None,
        files: Mapping[str, FileState | None] | None = None,
        on: str = "",
    ) -> tuple[Any, Any, Any]:
        """AdamW over `params`, the resume, the engine; returns ``(model, optimizer, scheduler)``.

        `modules` are what checkpoints hold (their trainable parameters, by name); `state` the loop
        state saved beside them as JSON, `files` loop state saved as files of the run directory (None
        entries are skipped). All are restored from the newest checkpoint when there is one and
        `resume` is on, before the engine wraps `model` (under FSDP on CPU: after it shards `model`,
        whose optimizer holds the shards). `on` says what the run trains on, for the log line that
        counts the parameters.
        """
        trainable, total = count_parameters(model)
        log.info(
            "%s: training %s of %s parameters%s", self.name, f"{trainable:,}", f"{total:,}", f" on {on}" if on else ""
        )
        if self.engine.fsdp:
            params = self._shard(model, params, modules)
        optimizer, self.scheduler = make_optimizer(params, self.cfg)
        self._model = model
        self._optimizer = optimizer
        self._modules = modules
        self._state = {k: v for k, v in (state or {}).items() if v is not None}
        self._files = {k: v for k, v in (files or {}).items() if v is not None}
        self._restore()
        main = self.is_main
        self.logger = MetricsLogger(
            self.dir, self.cfg.report_to, config=self.cfg, resume_step=self.start_step, write=main
        )
        if main:
            truncate_jsonl_after(self.dir / "samples.jsonl", self.start_step)
        self.console = Console(
            self.name,
            self.headline,
            total=self.cfg.max_steps,
            initial=self.start_step,
            every=self.cfg.console_every,
            live=self.cfg.progress and main,
            show=main,
        )
        model, self.optimizer = self.engine.prepare(model, optimizer)
        self._loop_start = time.perf_counter()
        return model, self.optimizer, self.scheduler

    def _shard(
        self, model: nn.Module, params: list[nn.Parameter], modules: Mapping[str, Parameterized]
    ) -> list[nn.Parameter]:
        """Shard `model` (FSDP on CPU) and return `params` as the shards that replaced them."""
        names = {id(p): n for n, p in model.named_parameters()}
        if any(id(p) not in names for p in params) or any(m is not model for m in modules.values()):
            # fp32 master copies (weights=master) or a second module would sit outside the shards
            raise ConfigError("FSDP on CPU trains one model's own parameters; use weights=fp32 (no master copies)")
        wanted = [names[id(p)] for p in params]
        self.engine.shard(model)
        now = dict(model.named_parameters())
        return [now[n] for n in wanted]

    def _restore(self) -> None:
        ckpt = latest_checkpoint(self.dir / "checkpoints") if self.cfg.resume else None
        if ckpt is None:
            return
        restored = load_checkpoint(ckpt, modules=list(self._modules), optimizer=True)
        for name, module in self._modules.items():
            self.engine.load_trainable_state(module, restored.tensors[name])
        if restored.optimizer is not None:  # always read: asked for above
            self.engine.load_optimizer_state(self._model, self._optimizer, restored.optimizer)
        saved = int(restored.state.get("global_batch", self.global_batch))
        if saved != self.global_batch:
            raise ConfigError(
                f"{ckpt} was trained on {saved} examples a step, this run takes {self.global_batch} "
                f"(batch_size x grad_accum x {self.engine.world_size} processes); keep the global batch to resume"
            )
        load_scheduler_state(self.scheduler, restored.state["scheduler"])
        for key, obj in self._state.items():
            obj.load_state_dict(restored.state[key])
        for name, kept in self._files.items():
            if kept.load(self.dir / name):
                log.info("reusing %s from the run directory", name)
        self.start_step = restored.step
        log.info("resumed from %s at step %d", ckpt, restored.step)

    def optimizer_step(self, trained: nn.Module | Any) -> float:
        """Average the gradient of `trained` (a module, or `MasterWeights`) over the processes, clip it,
        step the optimizer and the schedule, clear the gradients; returns the gradient norm before clipping."""
        self.engine.reduce_gradients(trained)
        grad_norm = self.engine.clip(trained, self.cfg.max_grad_norm)
        self.optimizer.step()
        self.scheduler.step()
        self.optimizer.zero_grad(set_to_none=True)
        return grad_norm

    def steps(self) -> Iterator[int]:
        """The steps still to run: ``start_step + 1 .. max_steps``."""
        return iter(range(self.start_step + 1, self.cfg.max_steps + 1))

    def count(self, what: str, n: float) -> None:
        """Add `n` items (tokens, examples, samples) to the throughput logged as ``perf/{what}_per_s``
        (counted from the start of the loop, then from each logged step)."""
        if what not in self._speed:
            self._speed[what] = Throughput(start=self._loop_start)
        self._speed[what].add(n)

    def is_log_step(self, step: int) -> bool:
        return step % self.cfg.log_every == 0 or step == self.cfg.max_steps

    def is_eval_step(self, step: int) -> bool:
        return (self.cfg.eval_every > 0 and step % self.cfg.eval_every == 0) or step == self.cfg.max_steps

    def is_save_step(self, step: int) -> bool:
        return (self.cfg.save_every > 0 and step % self.cfg.save_every == 0) or step == self.cfg.max_steps

    def log_initial(self, evaluate: Callable[[int], dict[str, float]] | None) -> None:
        """Log `evaluate(0)` as step 0 of a fresh run (the baseline every curve starts from)."""
        if self.start_step == 0 and evaluate is not None:
            self.log(0, evaluate(0))

    def log(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Write metrics of `step` (outside `end_step`: e.g. an evaluation after training)."""
        self.console.note(step, self.logger.log(step, dict(metrics)))

    def end_step(
        self, step: int, metrics: dict[str, Any], *, evaluate: Callable[[int], dict[str, float]] | None = None
    ) -> None:
        """After an optimizer step: stop on NaN/inf; on log steps add the learning rate, throughput,
        peak memory and, when due, `evaluate(step)`, and write the metrics; checkpoint when due; show
        progress."""
        check_finite(step, metrics, self.dir)
        metrics = {**metrics, "train/lr": self.scheduler.get_last_lr()[0]}
        if self.is_log_step(step):
            rates = self.all_sum({f"perf/{k}_per_s": v.rate() for k, v in self._speed.items()})
            metrics = {
                **metrics,
                **rates,
                "perf/peak_mem_mb": peak_memory_mb(self.device),
            }
            if evaluate is not None and self.is_eval_step(step):
                metrics.update(evaluate(step))
            self.logger.log(step, metrics)
        if self.is_save_step(step):
            self.save_checkpoint(step)
        self.console.update(step, metrics)

    def save_checkpoint(self, step: int) -> None:
        """Checkpoint `step`: the main process writes (the others hold the same weights and state; under
        FSDP they first hand it their shards)."""
        if not (self.is_main or self.engine.fsdp):
            return
        tensors = {name: self.engine.trainable_state(module) for name, module in self._modules.items()}
        optimizer = self.engine.optimizer_state(self._model, self._optimizer)
        if not self.is_main:
            return
        for name, kept in self._files.items():
            kept.save(self.dir / name)
        state = {
            "scheduler": scheduler_state(self.scheduler),
            "global_batch": self.global_batch,
            **{k: v.state_dict() for k, v in self._state.items()},
        }
        save_checkpoint(
            self.dir / "checkpoints",
            step,
            tensors=tensors,
            optimizer=optimizer,
            state=state,
            keep=self.cfg.keep_checkpoints,
        )

    def append_samples(self, rows: list[dict[str, Any]]) -> None:
        """Append generations to ``samples.jsonl`` (a resumed run drops those past its checkpoint; only
        the main process writes)."""
        if self.is_main:
            append_jsonl(self.dir / "samples.jsonl", rows)

    def close(self) -> None:
        self.console.close()
        self.logger.close()
