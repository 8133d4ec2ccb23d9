"""The shared Run machinery on a one-layer model: cadences, resume of every kind of state, the console."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import torch

from rlhfkit.train.config import TrainConfig
from rlhfkit.train.console import Console
from rlhfkit.train.run import Run


class Counter:
    """Loop state carried as JSON."""

    def __init__(self) -> None:
        self.n = 0

    def state_dict(self) -> dict[str, Any]:
        return {"n": self.n}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        self.n = int(state["n"])


class Blob:
    """Loop state carried as a file of the run directory."""

    def __init__(self) -> None:
        self.value = ""

    def save(self, path: Path) -> None:
        path.write_text(self.value)

    def load(self, path: Path) -> bool:
        self.value = path.read_text()
        return True


def _run(out: Path, max_steps: int, **values: Any) -> tuple[list[dict[str, Any]], torch.nn.Linear, Counter, Blob]:
    """A linear regression trained by a loop written the way the trainers are."""
    cfg = TrainConfig(
        output=out,
        max_steps=max_steps,
        lr=0.1,
        warmup_steps=0,
        schedule="constant",
        progress=False,
        **{"save_every": 2, "log_every": 1, **values},
    )
    run = Run(cfg, "test", (("train/loss", "loss"),))
    torch.manual_seed(0)
    model, counter, blob = torch.nn.Linear(3, 1), Counter(), Blob()
    x, y = torch.randn(16, 3), torch.randn(16, 1)
    wrapped, _, _ = run.setup(
        model, list(model.parameters()), modules={"model": model}, state={"counter": counter}, files={"blob.txt": blob}
    )
    evals: list[int] = []
    for step in run.steps():
        loss = torch.nn.functional.mse_loss(wrapped(x), y)
        run.engine.backward(loss)
        grad_norm = run.optimizer_step(wrapped)
        counter.n += 1
        blob.value += f"{step},"
        run.end_step(
            step,
            {"train/loss": float(loss.detach()), "train/grad_norm": grad_norm},
            evaluate=lambda s: evals.append(s) or {"eval/step": float(s)},
        )
    run.close()
    rows = [json.loads(line) for line in (out / "metrics.jsonl").read_text().splitlines()]
    return rows, model, counter, blob


def test_cadences_and_what_every_logged_step_carries(tmp_path: Path) -> None:
    rows, _, counter, _ = _run(tmp_path / "run", 5, log_every=2, eval_every=4)
    assert [r["step"] for r in rows] == [2, 4, 5]  # every 2nd step and the last
    assert [r.get("eval/step") for r in rows] == [None, 4.0, 5.0]  # every 4th logged step and the last
    assert all({"train/lr", "perf/peak_mem_mb"} <= set(r) for r in rows)
    # Checkpoints every 2 steps and at the last, the newest 2 kept.
    assert sorted(p.name for p in (tmp_path / "run" / "checkpoints").glob("step-*")) == ["step-000004", "step-000005"]
    assert counter.n == 5


def test_a_resumed_run_repeats_the_uninterrupted_one(tmp_path: Path) -> None:
    straight, model_a, counter_a, blob_a = _run(tmp_path / "straight", 6)
    _run(tmp_path / "split", 4)  # stops after the checkpoint of step 4 ...
    resumed, model_b, counter_b, blob_b = _run(tmp_path / "split", 6)  # ... and continues from it
    assert [r["step"] for r in resumed] == [r["step"] for r in straight]
    for a, b in zip(straight, resumed, strict=True):
        assert a["train/loss"] == pytest.approx(b["train/loss"], rel=1e-6) and a["train/lr"] == b["train/lr"]
    assert torch.equal(model_a.weight, model_b.weight)
    assert counter_b.n == counter_a.n == 6 and blob_b.value == blob_a.value == "1,2,3,4,5,6,"


def test_nan_stops_the_run_naming_the_metric(tmp_path: Path) -> None:
    cfg = TrainConfig(output=tmp_path / "nan", max_steps=3, progress=False)
    run = Run(cfg, "test", ())
    model = torch.nn.Linear(2, 1)
    run.setup(model, list(model.parameters()), modules={"model": model})
    with pytest.raises(FloatingPointError, match="train/loss became NaN"):
        run.end_step(1, {"train/loss": float("nan")})


def test_the_console_prints_a_compact_table(capsys: pytest.CaptureFixture[str]) -> None:
    console = Console(
        "sft", (("train/loss", "loss"), ("eval/loss", "eval loss")), total=10, initial=0, every=0, live=False
    )
    for step in range(1, 11):
        console.update(step, {"train/loss": 1.0 / step, "train/grad_norm": 3.0})  # grad_norm is not headline
    console.note(10, {"eval/loss": 0.5})  # an evaluation after the last step gets a last row
    console.close()
    lines = capsys.readouterr().err.strip().splitlines()
    assert lines[0].split() == ["step", "loss", "eval", "loss"]
    assert [line.split()[0] for line in lines[1:]] == ["1", "2", "3", "4", "5", "6", "7", "8", "9", "10", "10"]
    assert lines[1].split()[1:] == ["1", "-"] and lines[-1].split()[1:] == ["0.1", "0.5"]
    assert "grad" not in "".join(lines)


@pytest.mark.parametrize("ok", [True, False])
def test_end_processes_leaves_the_group_and_is_a_no_op_without_one(tmp_path: Path, ok: bool) -> None:
    import torch.distributed as dist

    from rlhfkit.train.engine import end_processes

    store = dist.FileStore(str(tmp_path / "store"), 1)
    dist.init_process_group("gloo", store=store, rank=0, world_size=1)
    end_processes(ok)  # a success waits at the barrier (alone here), a failure does not; both leave
    assert not dist.is_initialized()
    end_processes(ok)  # no group: nothing to do, no error
