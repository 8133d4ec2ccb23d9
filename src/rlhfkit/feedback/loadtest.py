"""Load test of the feedback server: simulated annotators over HTTP, then an audit of the database.

Each simulated annotator logs in through the REST API and loops ``next -> submit`` on a
keep-alive loopback connection (a small HTTP/1.1 client, so that the measuring side stays light
next to the server on a 2-core machine), sometimes resubmitting the same answer to exercise
idempotency. Every acknowledged (HTTP 200) submission is remembered. `verify` then reads the
database directly and checks: every acknowledged judgment is stored with its answer (0 lost), no
(item, annotator) pair twice (0 duplicated), no item over its N (overlap never exceeded), and the
total is exactly items x N.

Used by ``bench/feedback_load.py`` (50 annotators, 10,000 judgments) and ``tests/load``.
"""

from __future__ import annotations

import asyncio
import contextlib
import json
import random
import secrets
import time
from collections import Counter
from dataclasses import dataclass, field
from typing import Any

from sqlalchemy import func, select

from rlhfkit.feedback.entities import NewItem, ProjectSpec

# The server side lives in loadserver.py; its helpers are imported from here by the load tests.
from rlhfkit.feedback.loadserver import (  # noqa: F401
    free_port,
    kill_one_worker,
    process_cpu_seconds,
    start_server,
)
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tables import Item, Judgment


@dataclass(frozen=True)
class LoadConfig:
    """Size and behaviour of a load run."""

    annotators: int = 50
    """Concurrent simulated annotators (one connection each)."""
    judgments: int = 10_000
    """Judgments to collect in total (items = judgments / overlap)."""
    overlap: int = 4
    """Judgments per item (N)."""
    resubmit_rate: float = 0.05
    """Share of answers sent twice (the second must come back as a duplicate)."""
    think_ms: float = 0.0
    """Mean pause between tasks (exponential); 0 = as fast as possible."""
    seed: int = 0
    """Seed of the simulated answers."""

    def __post_init__(self) -> None:
        if self.annotators < 1 or self.overlap < 1:
            raise ValueError("annotators and overlap must be >= 1")
        if self.annotators < self.overlap:
            raise ValueError("need at least `overlap` annotators to complete every item")
        if self.judgments < self.overlap or self.judgments % self.overlap:
            raise ValueError("judgments must be a positive multiple of overlap")
        if not 0.0 <= self.resubmit_rate <= 1.0 or self.think_ms < 0:
            raise ValueError("resubmit_rate must be in [0, 1] and think_ms >= 0")


POLL_INTERVAL_S = 0.5
"""Pause before asking again when every open item is held by others (a person would wait too)."""


# ------------------------------------------------------------------ tiny keep-alive HTTP client


class HttpConnection:
    """One keep-alive HTTP/1.1 connection speaking JSON (enough for the REST API, nothing more)."""

    def __init__(self, host: str, port: int) -> None:
        self.host, self.port = host, port
        self._reader: asyncio.StreamReader | None = None
        self._writer: asyncio.StreamWriter | None = None

    async def request(self, method: str, path: str, body: Any = None, token: str | None = None) -> tuple[int, Any]:
        """One request; a keep-alive connection the server closed while idle is reopened once
        (safe to resend: every annotation endpoint is idempotent)."""
        reused = self._writer is not None and self._reader is not None and not self._reader.at_eof()
        if not reused:
            await self.close()
        try:
            return await self._exchange(method, path, body, token)
        except (ConnectionError, asyncio.IncompleteReadError):
            if not reused:
                raise
            await self.close()
            return await self._exchange(method, path, body, token)

    async def _exchange(self, method: str, path: str, body: Any, token: str | None) -> tuple[int, Any]:
        if self._writer is None:
            self._reader, self._writer = await asyncio.open_connection(self.host, self.port)
        payload = b"" if body is None else json.dumps(body).encode()
        head = [
            f"{method} {path} HTTP/1.1",
            f"Host: {self.host}:{self.port}",
            f"Content-Length: {len(payload)}",
            "Content-Type: application/json",
        ]
        if token:
            head.append(f"Authorization: Bearer {token}")
        self._writer.write(("\r\n".join(head) + "\r\n\r\n").encode() + payload)
        await self._writer.drain()
        assert self._reader is not None
        status_line = await self._reader.readline()
        if not status_line:
            raise ConnectionError("server closed the connection")
        status = int(status_line.split()[1])
        length, close = 0, False
        while (line := await self._reader.readline()) not in (b"\r\n", b""):
            name, _, value = line.decode("latin-1").partition(":")
            if name.lower() == "content-length":
                length = int(value)
            elif name.lower() == "connection" and value.strip().lower() == "close":
                close = True
        data = await self._reader.readexactly(length) if length else b""
        if close:
            await self.close()
        return status, (json.loads(data) if data else None)

    async def close(self) -> None:
        if self._writer is not None:
            self._writer.close()
            with contextlib.suppress(ConnectionError, OSError):
                await self._writer.wait_closed()
        self._reader = self._writer = None


# ------------------------------------------------------------------ setup, run, verify


@dataclass(frozen=True)
class Ack:
    """An acknowledged submission."""

    assignment_id: int
    """Task answered."""
    item_id: int
    """Item answered."""
    user: str
    """Annotator name."""
    judgment_id: int
    """Id the server returned."""
    answer: dict[str, Any]
    """The answer sent."""


@dataclass
class LoadResult:
    """What the clients saw."""

    acks: list[Ack] = field(default_factory=list)
    """Every acknowledged submission (first sends only)."""
    latencies_ms: dict[str, list[float]] = field(default_factory=lambda: {"next": [], "submit": [], "poll": []})
    """Round-trip time of each request: next (a task handed out), submit, poll (next, nothing free)."""
    statuses: Counter[str] = field(default_factory=Counter)
    """"endpoint status" -> count, plus "connection lost"."""
    duplicates_confirmed: int = 0
    """Resubmissions the server answered with duplicate=true."""
    seconds: float = 0.0
    """Wall time of the run(s)."""


def prepare(db_url: str, cfg: LoadConfig, project: str = "load") -> list[tuple[str, str]]:
    """Create the project, its items and the annotators; returns their (name, password)."""
    store = FeedbackStore(db_url)
    try:
        store.create_project(
            ProjectSpec(name=project, task_type="pairwise", overlap=cfg.overlap, guidelines="Pick the better answer.")
        )
        n_items = cfg.judgments // cfg.overlap
        for start in range(0, n_items, 2000):
            store.add_items(
                project,
                [
                    NewItem(
                        prompt=f"Question {i}?", responses=(f"good answer {i}", f"bad answer {i}"), external_id=f"q{i}"
                    )
                    for i in range(start, min(n_items, start + 2000))
                ],
            )
        users = [(f"annotator{i:03d}", secrets.token_urlsafe(12)) for i in range(cfg.annotators)]
        for name, password in users:
            store.create_user(name, "annotator", password)
        return users
    finally:
        store.close()


def _answer(task: dict[str, Any], rng: random.Random) -> dict[str, Any]:
    good = next(r["id"] for r in task["responses"] if r["text"].startswith("good"))
    bad = next(r["id"] for r in task["responses"] if r["id"] != good)
    roll = rng.random()
    if roll < 0.8:
        return {"choice": good}
    if roll < 0.9:
        return {"choice": bad}
    return {"choice": "tie" if roll < 0.95 else "both_bad"}


async def _annotator(
    host: str,
    port: int,
    name: str,
    password: str,
    project: str,
    cfg: LoadConfig,
    result: LoadResult,
    stop_on_error: bool,
) -> None:
    rng = random.Random(f"{cfg.seed}-{name}")
    conn = HttpConnection(host, port)
    try:
        status, body = await conn.request("POST", "/api/v1/auth/login", {"name": name, "password": password})
        if status != 200:
            raise RuntimeError(f"login of {name} failed: {status} {body}")
        token = body["token"]
        if cfg.think_ms:
            # People do not all arrive in the same millisecond: spread the first requests.
            await asyncio.sleep(rng.uniform(0, cfg.think_ms / 1000))
        while True:
            t0 = time.perf_counter()
            status, body = await conn.request("POST", f"/api/v1/projects/{project}/next", token=token)
            elapsed = (time.perf_counter() - t0) * 1000
            result.statuses[f"next {status}"] += 1
            if status != 200:
                raise RuntimeError(f"next failed: {status} {body}")
            task = body["task"]
            # "poll": nothing free right now (the tail of the run), timed apart from real hand-outs.
            result.latencies_ms["next" if task is not None else "poll"].append(elapsed)
            if task is None:
                if not body["remaining"]:
                    return
                await asyncio.sleep(POLL_INTERVAL_S)  # items held by others may still come back
                continue
            if cfg.think_ms:
                await asyncio.sleep(rng.expovariate(1000.0 / cfg.think_ms))
            answer = _answer(task, rng)
            for attempt in range(2 if rng.random() < cfg.resubmit_rate else 1):
                t0 = time.perf_counter()
                status, reply = await conn.request(
                    "POST", f"/api/v1/tasks/{task['assignment_id']}/submit", {"answer": answer}, token=token
                )
                result.latencies_ms["submit"].append((time.perf_counter() - t0) * 1000)
                result.statuses[f"submit {status}"] += 1
                if status != 200:
                    raise RuntimeError(f"submit failed: {status} {reply}")
                if attempt == 0:
                    result.acks.append(Ack(task["assignment_id"], task["item_id"], name, reply["judgment_id"], answer))
                elif reply["duplicate"]:
                    result.duplicates_confirmed += 1
    except (ConnectionError, OSError, asyncio.IncompleteReadError):
        result.statuses["connection lost"] += 1
        if not stop_on_error:
            raise
    finally:
        await conn.close()


async def run_load(
    host: str,
    port: int,
    users: list[tuple[str, str]],
    cfg: LoadConfig,
    project: str = "load",
    stop_on_error: bool = False,
    result: LoadResult | None = None,
) -> LoadResult:
    """Run every annotator concurrently until nothing is left (or the server goes away)."""
    result = result or LoadResult()
    started = time.perf_counter()
    await asyncio.gather(
        *(_annotator(host, port, name, password, project, cfg, result, stop_on_error) for name, password in users)
    )
    result.seconds += time.perf_counter() - started
    return result


@dataclass(frozen=True)
class Verification:
    """The database audit after a run."""

    judgments: int
    """Judgments stored."""
    expected: int
    """items x N."""
    lost: int
    """Acknowledged judgments missing (or stored with another answer)."""
    duplicated: int
    """(item, annotator) pairs stored more than once."""
    over_overlap: int
    """Items with more than N judgments."""

    @property
    def ok(self) -> bool:
        return self.lost == 0 and self.duplicated == 0 and self.over_overlap == 0 and self.judgments == self.expected


def verify(db_url: str, acks: list[Ack], project: str = "load") -> Verification:
    store = FeedbackStore(db_url, migrate=False)
    try:
        with store.db.read() as s:
            project_id = store.project(project).id
            stored = {
                j.id: j
                for j in s.scalars(
                    select(Judgment).join(Item, Item.id == Judgment.item_id).where(Item.project_id == project_id)
                )
            }
            pairs = Counter((j.item_id, j.user_id) for j in stored.values())
            per_item = dict(
                s.execute(
                    select(Item.id, func.count(Judgment.id))
                    .join(Judgment, Judgment.item_id == Item.id)
                    .where(Item.project_id == project_id)
                    .group_by(Item.id)
                ).all()
            )
            required = dict(s.execute(select(Item.id, Item.required).where(Item.project_id == project_id)).all())
    finally:
        store.close()
    lost = sum(
        1
        for a in acks
        if a.judgment_id not in stored
        or stored[a.judgment_id].item_id != a.item_id
        or stored[a.judgment_id].payload != a.answer
    )
    return Verification(
        judgments=len(stored),
        expected=sum(required.values()),
        lost=lost,
        duplicated=sum(n - 1 for n in pairs.values() if n > 1),
        over_overlap=sum(1 for item, n in per_item.items() if n > required[item]),
    )


def percentile(values: list[float], q: float) -> float:
    """Nearest-rank percentile (q in [0, 100])."""
    if not values:
        return float("nan")
    ordered = sorted(values)
    rank = max(1, min(len(ordered), int(-(-q * len(ordered) // 100))))
    return ordered[rank - 1]


def latency_summary(result: LoadResult) -> dict[str, dict[str, float]]:
    all_ms = [ms for values in result.latencies_ms.values() for ms in values]
    return {
        name: {"count": len(v), "p50_ms": percentile(v, 50), "p99_ms": percentile(v, 99)}
        for name, v in (*result.latencies_ms.items(), ("all", all_ms))
    }


# ------------------------------------------------------------------ server process
