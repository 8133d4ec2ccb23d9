"""Stage markers (what is done survives ``kill -9``) and the live progress display of a loop.

A stage of round r is done when ``round-RR/stages/STAGE.done`` exists. The marker is a small JSON
file (what the stage produced, when it finished) written atomically (`rlhfkit.files.write_json_atomic`):
after a crash it is either there, complete, or absent. A restarted loop skips every stage with a marker and re-runs the first one without, whose
own work is resumable (trainers continue from their checkpoints, the panel from the app's state).

`StageProgress` prints a header per stage with the elapsed time and an ETA for the whole run, from
the expected duration of each planned stage rescaled by how fast the finished ones actually went.
"""

from __future__ import annotations

import json
import sys
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.files import write_json_atomic


def round_dir(loop_dir: Path, round_index: int) -> Path:
    """``loop_dir/round-RR``."""
    return Path(loop_dir) / f"round-{round_index:02d}"


def marker_path(rdir: Path, stage: str) -> Path:
    return rdir / "stages" / f"{stage}.done"


def is_done(rdir: Path, stage: str) -> bool:
    return marker_path(rdir, stage).is_file()


def read_marker(rdir: Path, stage: str) -> dict[str, Any]:
    """What the stage recorded when it finished."""
    return json.loads(marker_path(rdir, stage).read_text(encoding="utf-8"))


def mark_done(rdir: Path, stage: str, info: dict[str, Any]) -> None:
    """Record that `stage` finished, with its results (atomic)."""
    write_json_atomic(marker_path(rdir, stage), {"stage": stage, "finished_at": time.time(), **info})


MIN_EVIDENCE_S = 20.0
"""Expected seconds of finished stages needed before the ETA trusts their measured speed."""


def _clock(seconds: float) -> str:
    seconds = max(0, round(seconds))
    return f"{seconds // 60:d}:{seconds % 60:02d}"


@dataclass(frozen=True)
class PlannedStage:
    """One stage of the run as the progress display knows it."""

    key: str
    """Unique key, e.g. 'round-01/reward'."""
    title: str
    """Header text."""
    expected_s: float
    """Expected duration in seconds (for the ETA)."""


@dataclass
class StageProgress:
    """Stage headers with elapsed time and ETA; stages run through `run`."""

    plan: list[PlannedStage]
    """Every stage of the run, in order."""
    enabled: bool = True
    """Print headers (progress bars are the stages' own)."""
    start: float = field(default_factory=time.perf_counter)
    durations: dict[str, float] = field(default_factory=dict)
    """Measured wall-clock seconds of the stages that ran in this process."""
    cpu: dict[str, float] = field(default_factory=dict)
    """CPU seconds (all threads of this process) of the same stages: on a shared machine, what the
    stage cost independently of other people's load."""

    def _eta(self, from_index: int) -> float:
        """Expected seconds left, rescaled by (actual / expected) of the stages measured so far, once
        those are long enough (`MIN_EVIDENCE_S` expected) for the ratio to mean something."""
        expected_done = sum(p.expected_s for p in self.plan if p.key in self.durations)
        actual_done = sum(self.durations.values())
        speed = actual_done / expected_done if expected_done >= MIN_EVIDENCE_S else 1.0
        return speed * sum(p.expected_s for p in self.plan[from_index:])

    def say(self, text: str) -> None:
        if self.enabled:
            print(text, file=sys.stderr, flush=True)

    def run(self, rdir: Path, stage: str, key: str, fn: Callable[[], dict[str, Any]]) -> dict[str, Any]:
        """Run `fn` unless the stage's marker exists; then write the marker with what `fn` returned."""
        index = next((i for i, p in enumerate(self.plan) if p.key == key), len(self.plan))
        title = self.plan[index].title if index < len(self.plan) else key
        number = f"[{index + 1}/{len(self.plan)}]"
        if is_done(rdir, stage):
            self.say(f"{number} {title}: done earlier, skipped")
            return read_marker(rdir, stage)
        elapsed = time.perf_counter() - self.start
        self.say(f"\n== {number} {title}  | elapsed {_clock(elapsed)} | ETA ~{_clock(self._eta(index))} ==")
        t0, c0 = time.perf_counter(), time.process_time()
        info = fn()
        seconds = time.perf_counter() - t0
        self.durations[key] = seconds
        self.cpu[key] = time.process_time() - c0
        mark_done(rdir, stage, {**info, "seconds": round(seconds, 2), "cpu_seconds": round(self.cpu[key], 2)})
        self.say(f"   {title}: finished in {_clock(seconds)}")
        return read_marker(rdir, stage)

    def total(self) -> float:
        return time.perf_counter() - self.start
