"""Load test of ``rlhfkit serve``: 50 concurrent annotators, 10,000 judgments, then a DB audit.

    python bench/feedback_load.py                                  # fresh SQLite file in a temp dir
    python bench/feedback_load.py --db postgresql://u@127.0.0.1:PORT/db
    python bench/feedback_load.py --annotators 10 --judgments 2000 --kill-after 500
    python bench/feedback_load.py --db postgresql://... --workers 4 --annotators 200 --judgments 20000 --kill-worker-after 5000

The server runs in a subprocess on a free loopback port; the annotators share this process (one
asyncio loop, one keep-alive connection each). Each simulated annotator pauses between tasks
(``--think-ms``, exponential, mean 1 s by default -- still far faster than a person) and arrives
at a random moment within its first pause; ``--think-ms 0`` is a closed-loop stress test where
every annotator always has a request in flight, so latency measures the queue (~50 x service
time), not the service. Prints p50/p99 latency of ``next`` and ``submit``
and exits non-zero unless 0 judgments were lost, 0 duplicated and no item exceeded its overlap.
With ``--kill-after K`` the server is killed with SIGKILL once K judgments were acknowledged,
restarted on the same database, and the run finishes; every acknowledged judgment must survive.
With ``--workers N`` (PostgreSQL) the server is ``rlhfkit serve --workers N``; ``--kill-worker-after K``
SIGKILLs one of its worker processes once K judgments were acknowledged, and the run goes on against
the others (uvicorn replaces the dead one); annotators whose connection died reconnect.
"""

from __future__ import annotations

import argparse
import asyncio
import os
import signal
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from rlhfkit.feedback.loadtest import (
    LoadConfig,
    LoadResult,
    free_port,
    kill_one_worker,
    latency_summary,
    prepare,
    process_cpu_seconds,
    run_load,
    start_server,
    verify,
)
from rlhfkit.files import write_json_atomic


async def _kill_when(result: LoadResult, count: int, pid: int) -> None:
    while len(result.acks) < count:
        await asyncio.sleep(0.005)
    os.kill(pid, signal.SIGKILL)


async def _phase_with_kill(
    port: int, users: list[tuple[str, str]], cfg: LoadConfig, result: LoadResult, kill_after: int, pid: int
) -> None:
    killer = asyncio.create_task(_kill_when(result, kill_after, pid))
    await run_load("127.0.0.1", port, users, cfg, stop_on_error=True, result=result)
    killer.cancel()


def _parse(argv: list[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--db", help="database URL (default: a new SQLite file in a temp dir); must be empty")
    parser.add_argument("--annotators", type=int, default=50)
    parser.add_argument("--judgments", type=int, default=10_000)
    parser.add_argument("--overlap", type=int, default=4, help="judgments per item (N)")
    parser.add_argument(
        "--think-ms",
        type=float,
        default=1000.0,
        help="mean pause per task, exponential (default 1000: annotators 5-30x faster "
        "than people); 0 = closed-loop stress, where latency is queueing",
    )
    parser.add_argument("--kill-after", type=int, default=0, help="SIGKILL the server after K acks")
    parser.add_argument("--workers", type=int, default=1, help="server processes (needs PostgreSQL above 1)")
    parser.add_argument("--kill-worker-after", type=int, default=0, help="SIGKILL one worker after K acks")
    parser.add_argument("--json", help="also write the figures to this JSON file")
    return parser.parse_args(argv)


def _setup(db_url: str, cfg: LoadConfig) -> list[tuple[str, str]]:
    """Create the project and the annotators' accounts, and say what the run is about to measure."""
    t0 = time.perf_counter()
    users = prepare(db_url, cfg)
    load = os.getloadavg()[0] if hasattr(os, "getloadavg") else float("nan")
    print(f"machine: {os.cpu_count()} CPUs, load average {load:.1f} before the run")
    pacing = f"think {cfg.think_ms:.0f} ms (exponential)" if cfg.think_ms else "closed loop, no think time"
    print(f"pacing: {pacing}")
    print(
        f"setup: {cfg.judgments // cfg.overlap} items x N={cfg.overlap}, {cfg.annotators} annotators "
        f"({time.perf_counter() - t0:.1f} s); database {db_url.split('@')[-1]}"
    )
    return users


def _kill_and_restart(
    db_url: str,
    port: int,
    log: str,
    server: subprocess.Popen[bytes],
    users: list[tuple[str, str]],
    cfg: LoadConfig,
    result: LoadResult,
    kill_after: int,
) -> subprocess.Popen[bytes]:
    """Run until `kill_after` acks, SIGKILL the server, check what survived, start a new server."""
    asyncio.run(_phase_with_kill(port, users, cfg, result, kill_after, server.pid))
    server.wait()
    print(f"killed the server (SIGKILL) after {len(result.acks)} acknowledged judgments; restarting")
    pre = verify(db_url, result.acks)
    print(f"after the kill: {pre.judgments} stored, {pre.lost} acknowledged lost")
    return start_server(db_url, port, log)


async def _kill_worker_when(result: LoadResult, count: int, server_pid: int) -> None:
    while len(result.acks) < count:
        await asyncio.sleep(0.005)
    victim = kill_one_worker(server_pid)
    print(f"killed worker {victim} (SIGKILL) after {len(result.acks)} acknowledged judgments", flush=True)


async def _phase_killing_a_worker(
    port: int, users: list[tuple[str, str]], cfg: LoadConfig, result: LoadResult, kill_after: int, pid: int
) -> None:
    """The load with one worker killed on the way; annotators cut off by it stop, and come back in
    the next phase (their held items are theirs again when they ask for the next task)."""
    killer = asyncio.create_task(_kill_worker_when(result, kill_after, pid))
    await run_load("127.0.0.1", port, users, cfg, stop_on_error=True, result=result)
    await killer


def _measured_run(
    port: int, server: subprocess.Popen[bytes], users: list[tuple[str, str]], cfg: LoadConfig, result: LoadResult
) -> None:
    """The load itself, with the server's CPU time per request."""
    cpu_before = process_cpu_seconds(server.pid)
    requests_before = sum(len(v) for v in result.latencies_ms.values())
    asyncio.run(run_load("127.0.0.1", port, users, cfg, result=result))
    cpu_after = process_cpu_seconds(server.pid)
    requests = sum(len(v) for v in result.latencies_ms.values()) - requests_before
    if cpu_before is not None and cpu_after is not None and requests and cpu_after > cpu_before:
        server_cpu_ms = 1000 * (cpu_after - cpu_before) / requests
        print(
            f"server CPU: {server_cpu_ms:.2f} ms per request "
            f"(capacity ~{1000 / server_cpu_ms:.0f} requests/s on one core)"
        )


def _report(args: argparse.Namespace, db_url: str, result: LoadResult, kills: int) -> bool:
    """Print latency and the database audit (and write them as JSON with --json); True when nothing was lost."""
    check = verify(db_url, result.acks)
    summary = latency_summary(result)
    print(
        f"run: {len(result.acks)} acknowledged judgments in {result.seconds:.1f} s "
        f"({len(result.acks) / result.seconds:.0f}/s), {result.duplicates_confirmed} idempotent "
        f"resubmissions confirmed, statuses {dict(result.statuses)}"
    )
    for name, row in summary.items():
        print(f"latency {name:6s}: n={row['count']:6d}  p50={row['p50_ms']:7.2f} ms  p99={row['p99_ms']:7.2f} ms")
    print(
        f"audit: stored={check.judgments} expected={check.expected} lost={check.lost} "
        f"duplicated={check.duplicated} over_overlap={check.over_overlap} kills={kills} "
        f"-> {'OK' if check.ok else 'FAILED'}"
    )
    if args.json:
        write_json_atomic(
            args.json,
            {
                "db": db_url.split("://")[0],
                "config": vars(args),
                "latency": summary,
                "acknowledged": len(result.acks),
                "seconds": result.seconds,
                "audit": {**check.__dict__, "ok": check.ok},
            },
        )
    return check.ok


def main(argv: list[str] | None = None) -> int:
    args = _parse(argv)
    workdir = Path(tempfile.mkdtemp(prefix="rlhfkit-load-"))
    db_url = args.db or f"sqlite:///{workdir / 'load.db'}"
    cfg = LoadConfig(annotators=args.annotators, judgments=args.judgments, overlap=args.overlap, think_ms=args.think_ms)
    users = _setup(db_url, cfg)
    port = free_port()
    log = str(workdir / "server.log")
    server = start_server(db_url, port, log, workers=args.workers)
    print(f"server: {args.workers} worker process(es)")
    result = LoadResult()
    try:
        if args.kill_after:
            server = _kill_and_restart(db_url, port, log, server, users, cfg, result, args.kill_after)
        if args.kill_worker_after:
            asyncio.run(_phase_killing_a_worker(port, users, cfg, result, args.kill_worker_after, server.pid))
        _measured_run(port, server, users, cfg, result)
    finally:
        server.terminate()
        server.wait(timeout=30)
    kills = int(bool(args.kill_after)) + int(bool(args.kill_worker_after))
    return 0 if _report(args, db_url, result, kills=kills) else 1


if __name__ == "__main__":
    sys.exit(main())
