"""`rlhfkit serve --workers N` on PostgreSQL: several server processes hand out items without double
dispatch, and a worker killed with SIGKILL mid-load loses no acknowledged judgment.

The full-size run (200 annotators, 20,000 judgments, 4 workers) is ``bench/feedback_load.py
--workers 4 --kill-worker-after K``.
"""

from __future__ import annotations

import asyncio
from pathlib import Path

import psutil
import pytest

from rlhfkit.config import ConfigError
from rlhfkit.feedback.commands import ServeConfig
from rlhfkit.feedback.loadtest import (
    LoadConfig,
    LoadResult,
    free_port,
    kill_one_worker,
    latency_summary,
    prepare,
    run_load,
    start_server,
    verify,
)


def test_several_workers_need_postgresql() -> None:
    with pytest.raises(ConfigError, match="workers=2 needs a PostgreSQL database"):
        ServeConfig(db="sqlite:///x.db", workers=2)
    assert ServeConfig(db="postgresql://u@h/db", workers=4).workers == 4


async def _load_killing_a_worker(port: int, users: list, cfg: LoadConfig, result: LoadResult, pid: int) -> int:
    async def killer() -> int:
        while len(result.acks) < cfg.judgments // 4:
            await asyncio.sleep(0.005)
        return kill_one_worker(pid)

    task = asyncio.create_task(killer())
    await run_load("127.0.0.1", port, users, cfg, stop_on_error=True, result=result)
    return await task


@pytest.mark.postgres
def test_workers_share_the_load_and_one_killed_loses_nothing(tmp_path: Path, pg_url: str) -> None:
    cfg = LoadConfig(annotators=20, judgments=400, overlap=4, think_ms=10)
    users = prepare(pg_url, cfg)
    port = free_port()
    server = start_server(pg_url, port, str(tmp_path / "server.log"), workers=2)
    result = LoadResult()
    try:
        victim = asyncio.run(_load_killing_a_worker(port, users, cfg, result, server.pid))
        assert not psutil.pid_exists(victim) or psutil.Process(victim).status() == psutil.STATUS_ZOMBIE
        assert server.poll() is None, "the server went down with its worker"
        asyncio.run(run_load("127.0.0.1", port, users, cfg, result=result))  # whoever was cut off comes back
    finally:
        server.terminate()
        server.wait(timeout=30)
    check = verify(pg_url, result.acks)
    all_ms = latency_summary(result)["all"]
    print(f"\n2 workers, one killed: {len(result.acks)} judgments, p99 {all_ms['p99_ms']:.1f} ms")
    assert (check.lost, check.duplicated, check.over_overlap) == (0, 0, 0)
    assert check.judgments == check.expected == cfg.judgments
