"""The server side of the load test: ``rlhfkit serve`` in a subprocess, its CPU time, and killing one
of its workers (``serve --workers N``)."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
import time


def process_cpu_seconds(pid: int) -> float | None:
    """User + system CPU time of a process and its live children (Linux /proc: the workers of
    ``serve --workers N``), for CPU cost per request."""
    import psutil

    try:
        tree = [psutil.Process(pid), *psutil.Process(pid).children(recursive=True)]
        return sum(t.user + t.system for t in (p.cpu_times() for p in tree))
    except psutil.Error:
        return None


def kill_one_worker(server_pid: int) -> int:
    """SIGKILL one worker process of a ``serve --workers N`` server; returns its pid."""
    import psutil

    # uvicorn's workers are multiprocessing "spawn" children (beside them: the resource tracker).
    workers = [p for p in psutil.Process(server_pid).children() if "spawn_main" in " ".join(p.cmdline())]
    if not workers:
        raise RuntimeError(f"server {server_pid} has no worker processes")
    victim = workers[-1].pid
    os.kill(victim, signal.SIGKILL)
    return victim


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return sock.getsockname()[1]


def start_server(db_url: str, port: int, log_path: str | None = None, workers: int = 1) -> subprocess.Popen[bytes]:
    """``python -m rlhfkit.cli serve`` (what ``rlhfkit serve`` runs) in a subprocess; waits until it answers."""
    out = open(log_path, "ab") if log_path else subprocess.DEVNULL  # noqa: SIM115 -- owned by the child
    cmd = [sys.executable, "-m", "rlhfkit.cli", "serve", "--db", db_url, "--host", "127.0.0.1", "--port", str(port)]
    process = subprocess.Popen(
        [*cmd, f"workers={workers}"],
        stdout=out,
        stderr=subprocess.STDOUT,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    deadline = time.monotonic() + 60
    while time.monotonic() < deadline:
        if process.poll() is not None:
            raise RuntimeError(f"server exited with {process.returncode} (log: {log_path})")
        try:
            with socket.create_connection(("127.0.0.1", port), timeout=0.2):
                return process
        except OSError:
            time.sleep(0.1)
    process.kill()
    raise RuntimeError("server did not start within 60 s")
