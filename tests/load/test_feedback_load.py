"""Concurrent annotators over HTTP against a real server process: nothing lost, duplicated or
over-assigned; and a server killed with SIGKILL mid-load keeps every acknowledged judgment.

The full-size run (50 annotators, 10,000 judgments) is ``bench/feedback_load.py``.
"""

from __future__ import annotations

import asyncio
import os
import signal
from pathlib import Path

import pytest

from rlhfkit.feedback.loadtest import (
    LoadConfig,
    LoadResult,
    free_port,
    latency_summary,
    prepare,
    run_load,
    start_server,
    verify,
)


def _run_to_completion(db_url: str, tmp_path: Path, cfg: LoadConfig) -> tuple[LoadResult, object]:
    users = prepare(db_url, cfg)
    port = free_port()
    server = start_server(db_url, port, str(tmp_path / "server.log"))
    try:
        result = asyncio.run(run_load("127.0.0.1", port, users, cfg))
    finally:
        server.terminate()
        server.wait(timeout=30)
    return result, verify(db_url, result.acks)


def _report(name: str, result: LoadResult) -> None:
    all_ms = latency_summary(result)["all"]
    print(
        f"\n{name}: {len(result.acks)} judgments in {result.seconds:.1f} s, "
        f"p50 {all_ms['p50_ms']:.1f} ms, p99 {all_ms['p99_ms']:.1f} ms"
    )


def test_sqlite_under_concurrent_annotators(tmp_path: Path) -> None:
    cfg = LoadConfig(annotators=10, judgments=1000, overlap=4, resubmit_rate=0.1)
    result, check = _run_to_completion(f"sqlite:///{tmp_path / 'load.db'}", tmp_path, cfg)
    _report("sqlite", result)
    assert (check.lost, check.duplicated, check.over_overlap) == (0, 0, 0)
    assert check.judgments == check.expected == len(result.acks) == 1000
    assert result.duplicates_confirmed > 0  # resubmissions came back as duplicates, not new rows
    assert set(result.statuses) == {"next 200", "submit 200"}


@pytest.mark.postgres
def test_postgres_under_concurrent_annotators(tmp_path: Path, pg_url: str) -> None:
    cfg = LoadConfig(annotators=10, judgments=1000, overlap=4, resubmit_rate=0.1)
    result, check = _run_to_completion(pg_url, tmp_path, cfg)
    _report("postgres", result)
    assert (check.lost, check.duplicated, check.over_overlap) == (0, 0, 0)
    assert check.judgments == check.expected == len(result.acks) == 1000


async def _load_then_kill(
    port: int, users: list[tuple[str, str]], cfg: LoadConfig, result: LoadResult, kill_after: int, pid: int
) -> None:
    async def killer() -> None:
        while len(result.acks) < kill_after:
            await asyncio.sleep(0.002)
        os.kill(pid, signal.SIGKILL)

    task = asyncio.create_task(killer())
    await run_load("127.0.0.1", port, users, cfg, stop_on_error=True, result=result)
    task.cancel()


@pytest.mark.parametrize("synchronous", ["full", "normal"])
def test_sigkill_mid_load_loses_no_acknowledged_judgment(tmp_path: Path, synchronous: str) -> None:
    db_url = f"sqlite:///{tmp_path / 'kill.db'}?synchronous={synchronous}"
    cfg = LoadConfig(annotators=8, judgments=400, overlap=4, resubmit_rate=0.0)
    users = prepare(db_url, cfg)
    port = free_port()
    log = str(tmp_path / "server.log")
    server = start_server(db_url, port, log)
    result = LoadResult()
    try:
        asyncio.run(_load_then_kill(port, users, cfg, result, kill_after=120, pid=server.pid))
        assert server.wait(timeout=30) == -signal.SIGKILL
        acked = len(result.acks)
        assert 120 <= acked < 400 and result.statuses["connection lost"] > 0
        after_kill = verify(db_url, result.acks)
        assert after_kill.lost == 0 and after_kill.duplicated == 0 and after_kill.over_overlap == 0
        # Restart on the same file and finish the job: still exact.
        server = start_server(db_url, port, log)
        asyncio.run(run_load("127.0.0.1", port, users, cfg, result=result))
    finally:
        server.terminate()
        server.wait(timeout=30)
    final = verify(db_url, result.acks)
    assert final.ok, final
    # A submit cut off between commit and reply is stored but was never acknowledged (at most
    # one in flight per annotator).
    assert final.judgments == 400 and 400 - cfg.annotators <= len(result.acks) <= 400
