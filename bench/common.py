"""Helpers every bench script shares: the machine lock, measured child runs, matmul peaks, tables.

Bench scripts compare rlhfkit with a peer (TRL) by running each side in its own subprocess, often
under another virtual environment. This module imports only the standard library at load time
(torch and psutil are imported inside the functions that need them), so every venv can import it:
a script in bench/ does ``from common import ...`` (``python bench/x.py`` puts bench/ on sys.path).

    with bench_lock():                              # one heavy benchmark at a time on this machine
        peak = matmul_peak_gflops("fp32")
        run = run_measured([python, "side.py", ...], log_path=Path("side.log"))
    print(comparison_table(METRICS, ours, theirs))
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import math
import os
import random
import subprocess
import sys
import threading
import time
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any

LOCK_PATH = Path("/tmp/rlhfkit-bench.lock")
"""The machine-wide lock; compatible with the shell's ``flock /tmp/rlhfkit-bench.lock CMD`` (both flock(2))."""

BENCH_DIR = Path(__file__).resolve().parent
RESULTS_DIR = BENCH_DIR / "results"
VENVS_DIR = BENCH_DIR / ".venvs"


# ---- the lock ---------------------------------------------------------------------------------


@contextlib.contextmanager
def bench_lock(path: Path = LOCK_PATH) -> Iterator[None]:
    """Hold the bench lock for the block (blocking; says so when another benchmark holds it).

    Hold it around everything that is timed, the matmul peak included: two benchmarks sharing the
    2 cores would each measure about half their speed.
    """
    with open(path, "a") as handle:
        try:
            fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
        except BlockingIOError:
            print(f"waiting for {path} (another benchmark is running)", file=sys.stderr, flush=True)
            fcntl.flock(handle, fcntl.LOCK_EX)
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


# ---- measured child processes -----------------------------------------------------------------


@dataclass(frozen=True)
class ChildRun:
    """How one child process ran."""

    returncode: int
    """Exit status (negative: killed by that signal)."""
    wall_s: float
    """Wall-clock seconds from start to exit."""
    peak_rss_mb: float
    """Highest sum of RSS over the child and its descendants, polled (MiB = 2**20 bytes)."""
    max_rss_mb: float
    """Kernel's ru_maxrss of the child (largest single process of its tree), from wait4 (MiB)."""
    cpu_s: float
    """User + system CPU seconds of the child and its waited-for descendants."""
    other_cpu_cores: float
    """Average cores busy with OTHER processes during the run: near 0 means the numbers are clean."""
    loadavg_before: tuple[float, float, float]
    """os.getloadavg() just before the start (1, 5, 15 min)."""

    def as_dict(self) -> dict[str, Any]:
        return asdict(self)


def _busy_cpu_s() -> float:
    import psutil

    t = psutil.cpu_times()
    return t.user + t.system + getattr(t, "nice", 0.0) + getattr(t, "irq", 0.0) + getattr(t, "softirq", 0.0)


def _poll_tree_rss(pid: int, stop: threading.Event, peak: list[int], every_s: float) -> None:
    import psutil

    try:
        root = psutil.Process(pid)
    except psutil.NoSuchProcess:
        return
    while not stop.is_set():
        total = 0
        try:
            for proc in [root, *root.children(recursive=True)]:
                with contextlib.suppress(psutil.NoSuchProcess, psutil.AccessDenied):
                    total += proc.memory_info().rss
        except psutil.NoSuchProcess:
            return
        peak[0] = max(peak[0], total)
        stop.wait(every_s)


def run_measured(
    cmd: Sequence[str],
    *,
    log_path: Path,
    cwd: Path | None = None,
    env: Mapping[str, str] | None = None,
    poll_s: float = 0.05,
) -> ChildRun:
    """Run `cmd` to completion, its stdout+stderr going to `log_path`, and measure it.

    Peak memory is measured twice: psutil polls the whole process tree every `poll_s` seconds (sum of
    RSS, so worker processes count), and wait4's ru_maxrss gives the kernel's exact peak of the
    largest single process (it cannot miss a short spike). It does not take the lock: hold
    `bench_lock()` around the whole measurement.
    """
    loadavg = os.getloadavg()
    busy_before = _busy_cpu_s()
    start = time.perf_counter()
    with open(log_path, "wb") as log:
        proc = subprocess.Popen(
            list(cmd), cwd=cwd, env=None if env is None else dict(env), stdout=log, stderr=subprocess.STDOUT
        )
        stop, peak = threading.Event(), [0]
        poller = threading.Thread(target=_poll_tree_rss, args=(proc.pid, stop, peak, poll_s), daemon=True)
        poller.start()
        # wait4 (not Popen.wait) returns the rusage of this child alone; RUSAGE_CHILDREN would mix in
        # every child this process ever waited for.
        _, status, usage = os.wait4(proc.pid, 0)
        proc.returncode = os.waitstatus_to_exitcode(status)
        stop.set()
        poller.join()
    wall = time.perf_counter() - start
    cpu = usage.ru_utime + usage.ru_stime
    other = max(0.0, _busy_cpu_s() - busy_before - cpu)
    return ChildRun(
        returncode=proc.returncode,
        wall_s=wall,
        peak_rss_mb=peak[0] / 2**20,
        max_rss_mb=usage.ru_maxrss / 1024,  # Linux reports KiB
        cpu_s=cpu,
        other_cpu_cores=other / wall if wall > 0 else 0.0,
        loadavg_before=(round(loadavg[0], 2), round(loadavg[1], 2), round(loadavg[2], 2)),
    )


def log_tail(path: Path, lines: int = 40) -> str:
    """The last `lines` lines of a child's log, for error messages."""
    try:
        return "\n".join(path.read_text(errors="replace").splitlines()[-lines:])
    except OSError:
        return f"({path} is missing)"


def read_json(path: Path) -> dict[str, Any]:
    return json.loads(Path(path).read_text())


def write_json(path: Path, data: Mapping[str, Any]) -> None:
    Path(path).write_text(json.dumps(data, indent=1, sort_keys=True) + "\n")


# ---- machine peak -----------------------------------------------------------------------------


def matmul_peak_gflops(
    dtype: str, sizes: Sequence[int] = (1024, 2048, 3072), repeats: int = 5, budget_s: float = 10.0
) -> float:
    """Best measured GFLOP/s of a square (n x n) @ (n x n) matmul in `dtype` ('fp32' or 'bf16').

    The best of `repeats` timings per size, then the best size: a peak, so noise only lowers it.
    A matmul of n x n by n x n costs 2 n^3 FLOPs. Measuring stops after `budget_s` seconds: on a CPU
    without bf16 instructions a 3072 bf16 matmul takes a minute, and its peak is clear long before.
    """
    import torch

    dt = {"fp32": torch.float32, "bf16": torch.bfloat16}[dtype]
    best, start = 0.0, time.perf_counter()
    for n in sizes:
        a, b = torch.randn(n, n, dtype=dt), torch.randn(n, n, dtype=dt)
        a @ b  # warm-up: first call allocates and picks the kernel
        for _ in range(repeats):
            t = time.perf_counter()
            a @ b
            best = max(best, 2 * n**3 / (time.perf_counter() - t) / 1e9)
            if time.perf_counter() - start > budget_s:
                return best
    return best


def shared_order(lengths: list[int], steps: int, batch_size: int, seed: int, group_by_length: bool) -> list[int]:
    """Indices of the examples both sides of a comparison train on, batch after batch (`steps * batch_size`).

    Handing both sides the same batches makes their results a paired comparison of the trainers rather
    than of their samplers. The draw is unbiased: the first `steps * batch_size` examples of a seeded
    permutation. With `group_by_length` they are sorted by length and cut into batches, which are
    shuffled with the longest first (as HF's LengthGroupedSampler does within a mega-batch). HF's sampler
    itself is not copied: when a run reads less than one of its mega-batches, its batches are the longest
    examples of a random sample rather than a random sample.
    """
    rng = random.Random(seed)
    picked = rng.sample(range(len(lengths)), min(len(lengths), steps * batch_size))
    if not group_by_length:
        return picked
    picked.sort(key=lambda i: -lengths[i])
    batches = [picked[i : i + batch_size] for i in range(0, len(picked), batch_size)]
    rest = batches[1:]
    rng.shuffle(rest)
    return [i for batch in [batches[0], *rest] for i in batch]


def read_rlhfkit_in_file_order(module: Any) -> None:
    """Make the rlhfkit training loop of `module` read its examples as the file lists them.

    The harness wrote the file in `shared_order`'s batch order; the loop's `BatchStream` is swapped for
    one that keeps it (a measurement hook: the loop itself is unchanged).
    """

    class FileOrder(module.BatchStream):
        def _make_order(self) -> list[int]:
            return list(range(len(self.lengths)))

    module.BatchStream = FileOrder


def read_trl_in_file_order(trainer: Any) -> None:
    """Make an HF Trainer read its train dataset as it stands (the harness wrote it in batch order)."""
    from torch.utils.data import SequentialSampler

    trainer._get_train_sampler = lambda *_args, **_kwargs: SequentialSampler(trainer.train_dataset)


def mean_completion_nll(model: Any, rows: Sequence[Mapping[str, list[int]]], batch_size: int = 4) -> float:
    """Mean next-token NLL over labelled tokens of pre-tokenized `rows`, in fp32, for any HF causal LM.

    rows: ``{"input_ids": [...], "labels": [...]}`` with -100 where there is no loss (the prompt).
    Every side of a benchmark scores the same rows with this one function, so eval losses compare
    exactly. The output head is applied only at labelled positions (no (B, T, V) logits tensor),
    so evaluation does not raise the peak memory that the training is measured by.
    """
    import torch

    model.eval()
    decoder, head = model.get_decoder(), model.get_output_embeddings()
    total, count = 0.0, 0
    with torch.no_grad():
        for i in range(0, len(rows), batch_size):
            chunk = rows[i : i + batch_size]
            width = max(len(r["input_ids"]) for r in chunk)
            ids = torch.zeros(len(chunk), width, dtype=torch.long)
            labels = torch.full((len(chunk), width), -100, dtype=torch.long)
            mask = torch.zeros(len(chunk), width, dtype=torch.long)
            for j, r in enumerate(chunk):
                n = len(r["input_ids"])
                ids[j, :n], labels[j, :n], mask[j, :n] = torch.tensor(r["input_ids"]), torch.tensor(r["labels"]), 1
            h = decoder(input_ids=ids, attention_mask=mask, use_cache=False).last_hidden_state  # (B, T, H)
            targets = labels[:, 1:]  # logits at t predict token t+1
            keep = targets != -100
            logits = head(h[:, :-1][keep]).float()  # (N, V)
            total += float(torch.nn.functional.cross_entropy(logits, targets[keep], reduction="sum"))
            count += int(keep.sum())
    return total / max(1, count)


def cpu_name() -> str:
    with contextlib.suppress(OSError):
        for line in Path("/proc/cpuinfo").read_text().splitlines():
            if line.startswith("model name"):
                return line.split(":", 1)[1].strip()
    return "unknown CPU"


# ---- pure math --------------------------------------------------------------------------------


def steady_rate(step_end_times: Sequence[float], step_counts: Sequence[float], skip: int = 1) -> float:
    """Count per second over steps after the first `skip` (warm-up: allocation, lazy init).

    `step_end_times[i]` is when step i ended (perf_counter), `step_counts[i]` what it processed. The
    window runs from the end of step `skip - 1` to the end of the last step, so it holds exactly
    steps `skip..n-1`: rate = sum(counts[skip:]) / (t[n-1] - t[skip-1]).
    """
    if skip < 1:
        raise ValueError("skip must be >= 1: the window starts where step skip-1 ended")
    if len(step_end_times) != len(step_counts):
        raise ValueError("step_end_times and step_counts differ in length")
    if len(step_end_times) <= skip:
        raise ValueError(f"need more than {skip} steps to measure a steady rate, got {len(step_end_times)}")
    elapsed = step_end_times[-1] - step_end_times[skip - 1]
    if elapsed <= 0:
        raise ValueError("step end times must increase")
    return sum(step_counts[skip:]) / elapsed


def mfu(params: int, tokens_per_s: float, peak_gflops: float) -> float:
    """Model FLOPs utilization: 6 * params * tokens/s over the peak (Kaplan et al. 2020, C ~ 6ND;
    2ND forward + 4ND backward). Attention score FLOPs are left out, as in that convention."""
    if peak_gflops <= 0:
        raise ValueError("peak_gflops must be positive")
    return 6.0 * params * tokens_per_s / (peak_gflops * 1e9)


def ratio(ours: float | None, theirs: float | None) -> float | None:
    """ours / theirs; None when either is missing or theirs is 0 (no meaningful ratio)."""
    if ours is None or theirs is None or theirs == 0 or not (math.isfinite(ours) and math.isfinite(theirs)):
        return None
    return ours / theirs


@dataclass(frozen=True)
class Metric:
    """One row of a comparison table."""

    key: str
    """Key of the value in each side's result dict."""
    label: str
    """Row label, with the unit."""
    fmt: str = "{:,.1f}"
    """Format of the values."""
    higher_is_better: bool = True
    """Direction of the target: ratio >= target when True, ratio <= target when False."""
    target: float | None = None
    """Required ratio ours/theirs; None: the row is informative only."""

    def __post_init__(self) -> None:
        if self.target is not None and self.target <= 0:
            raise ValueError(f"{self.key}: target ratio must be positive, got {self.target}")


def meets_target(metric: Metric, value: float | None) -> bool | None:
    """Whether a ratio meets the metric's target; None when there is no target or no ratio."""
    if metric.target is None or value is None:
        return None
    return value >= metric.target if metric.higher_is_better else value <= metric.target


def format_value(value: float | None, fmt: str) -> str:
    return "n/a" if value is None else fmt.format(value)


def format_target(metric: Metric) -> str:
    if metric.target is None:
        return ""
    return f"{'>=' if metric.higher_is_better else '<='} {metric.target:.2f}x"


def markdown_table(header: Sequence[str], rows: Sequence[Sequence[str]]) -> str:
    """A GitHub Markdown table; '|' inside cells is escaped. Ends with a newline."""
    for row in rows:
        if len(row) != len(header):
            raise ValueError(f"row {list(row)} has {len(row)} cells, the header {len(header)}")

    def line(cells: Sequence[str]) -> str:
        return "| " + " | ".join(str(c).replace("|", "\\|") for c in cells) + " |"

    return "\n".join([line(header), "|" + "|".join("---" for _ in header) + "|", *map(line, rows)]) + "\n"


def comparison_table(
    metrics: Sequence[Metric],
    ours: Mapping[str, float | None],
    theirs: Mapping[str, float | None],
    names: tuple[str, str] = ("rlhfkit", "TRL"),
) -> str:
    """Markdown table: metric | ours | theirs | ours/theirs | target | met (yes/NO/blank)."""
    header = ["metric", names[0], names[1], f"{names[0]} / {names[1]}", "target", "met"]
    rows = []
    for m in metrics:
        a, b = ours.get(m.key), theirs.get(m.key)
        r = ratio(a, b)
        met = meets_target(m, r)
        rows.append(
            [
                m.label,
                format_value(a, m.fmt),
                format_value(b, m.fmt),
                format_value(r, "{:.2f}x"),
                format_target(m),
                "" if met is None else ("yes" if met else "NO"),
            ]
        )
    return markdown_table(header, rows)


def busy_warning(runs: Mapping[str, ChildRun], cores: int, threshold: float = 0.25) -> str | None:
    """A sentence naming the sides during which other processes used more than `threshold` of a
    core on average (their numbers are then pessimistic), or None when all runs were clean."""
    busy = {name: run for name, run in runs.items() if run.other_cpu_cores > threshold}
    if not busy:
        return None
    parts = [
        f"{name}: {run.other_cpu_cores:.2f} of {cores} cores (load avg before {run.loadavg_before[0]:.2f})"
        for name, run in busy.items()
    ]
    return "Other work was running on the machine during: " + "; ".join(parts) + "."
