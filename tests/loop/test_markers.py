"""Stage markers: atomic, skipped when present; the ETA rescales expected durations by measured speed."""

from __future__ import annotations

import contextlib
from pathlib import Path

from rlhfkit.loop.markers import (
    PlannedStage,
    StageProgress,
    is_done,
    mark_done,
    read_marker,
)


def test_marker_roundtrip_and_no_temporary_leftovers(tmp_path: Path) -> None:
    assert not is_done(tmp_path, "reward")
    mark_done(tmp_path, "reward", {"path": "/x"})
    assert is_done(tmp_path, "reward")
    info = read_marker(tmp_path, "reward")
    assert info["path"] == "/x" and info["stage"] == "reward" and info["finished_at"] > 0
    assert [p.name for p in (tmp_path / "stages").iterdir()] == ["reward.done"]


def test_done_stages_are_skipped_and_run_stages_marked(tmp_path: Path) -> None:
    calls: list[str] = []
    plan = [PlannedStage("a", "stage a", 1.0), PlannedStage("b", "stage b", 1.0)]
    progress = StageProgress(plan, enabled=False)
    mark_done(tmp_path, "a", {"value": 1})
    first = progress.run(tmp_path, "a", "a", lambda: calls.append("a") or {"value": 2})
    second = progress.run(tmp_path, "b", "b", lambda: calls.append("b") or {"value": 3})
    assert calls == ["b"]  # a was done before: its function never ran
    assert first["value"] == 1 and second["value"] == 3 and "seconds" in second
    assert is_done(tmp_path, "b")


def test_a_failing_stage_leaves_no_marker(tmp_path: Path) -> None:
    progress = StageProgress([PlannedStage("a", "a", 1.0)], enabled=False)

    def boom() -> dict:
        raise RuntimeError("killed")

    with contextlib.suppress(RuntimeError):
        progress.run(tmp_path, "a", "a", boom)
    assert not is_done(tmp_path, "a")


def test_eta_rescales_by_measured_speed() -> None:
    plan = [
        PlannedStage("tiny", "t", 1.0),
        PlannedStage("a", "a", 30.0),
        PlannedStage("b", "b", 20.0),
        PlannedStage("c", "c", 40.0),
    ]
    progress = StageProgress(plan, enabled=False)
    assert progress._eta(0) == 91.0  # nothing measured: the plan as is
    progress.durations["tiny"] = 0.01  # 1 s expected is too little evidence to rescale by 1/100
    assert progress._eta(1) == 90.0
    progress.durations["a"] = 62.0  # (0.01 + 62) / (1 + 30) = 2.0003: everything left ~2x slower
    assert abs(progress._eta(2) - (62.01 / 31.0) * 60.0) < 1e-9
