"""Generating candidate responses inside the app (a background job with visible progress).

The admin gives prompts, a model and sampling settings; a worker thread calls the foundation's
``rlhfkit.rollout.generate.generate_texts`` (imported only when a job runs, so the web app starts
without torch), one batch of prompts at a time. Each finished batch becomes items at once, so a
crash loses at most the batch in flight, and the job row records progress for the admin page.
Jobs still marked running when the server starts were cut off by a restart and are marked
``interrupted``.
"""

from __future__ import annotations

import threading
from dataclasses import asdict, dataclass
from typing import Any, cast

from sqlalchemy import CursorResult, select, update

from rlhfkit.feedback.audit import record_event
from rlhfkit.feedback.entities import NewItem
from rlhfkit.feedback.errors import Invalid, NotFound
from rlhfkit.feedback.projects import get_project
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tables import Job
from rlhfkit.feedback.tasks import task_type

JOB_STATES = ("queued", "running", "done", "failed", "interrupted")
"""Lifecycle of a job."""


@dataclass(frozen=True)
class GenerationParams:
    """What to generate: K candidates per prompt from one model."""

    model: str
    """Model name as `rlhfkit.rollout.generate.generate_texts` accepts it (bundled, local dir...)."""
    n: int = 2
    """Candidates per prompt (K); pairwise needs exactly 2."""
    max_new_tokens: int = 256
    """Generation length cap."""
    temperature: float = 1.0
    """Sampling temperature (> 0: candidates must differ)."""
    top_p: float = 1.0
    """Nucleus sampling mass."""
    seed: int = 0
    """Base seed; batch b uses seed + b so batches differ but reruns repeat."""
    task_type: str | None = None
    """Task type of the new items (None: the project's)."""
    batch_size: int = 8
    """Prompts per call to the generator."""

    def __post_init__(self) -> None:
        if not self.model or len(self.model) > 500:
            raise Invalid("model must be a non-empty name")
        if not 1 <= self.n <= 16:
            raise Invalid(f"n must be between 1 and 16, got {self.n}")
        if not 1 <= self.max_new_tokens <= 8192:
            raise Invalid(f"max_new_tokens must be between 1 and 8192, got {self.max_new_tokens}")
        if not 0.0 < self.temperature <= 5.0:
            raise Invalid(f"temperature must be in (0, 5], got {self.temperature}")
        if not 0.0 < self.top_p <= 1.0:
            raise Invalid(f"top_p must be in (0, 1], got {self.top_p}")
        if not 1 <= self.batch_size <= 256:
            raise Invalid(f"batch_size must be between 1 and 256, got {self.batch_size}")
        if self.task_type is not None:
            task_type(self.task_type)


def job_view(job: Job) -> dict[str, Any]:
    return {
        "id": job.id,
        "project_id": job.project_id,
        "kind": job.kind,
        "status": job.status,
        "total": job.total,
        "done": job.done,
        "params": job.params,
        "error": job.error,
        "created_at": job.created_at,
        "finished_at": job.finished_at,
    }


def get_job(store: FeedbackStore, job_id: int) -> dict[str, Any]:
    with store.db.read() as s:
        job = s.get(Job, job_id)
        if job is None:
            raise NotFound(f"no job with id {job_id}")
        return job_view(job)


def list_jobs(store: FeedbackStore, project: str) -> list[dict[str, Any]]:
    with store.db.read() as s:
        project_id = get_project(s, project).id
        return [
            job_view(j)
            for j in s.scalars(select(Job).where(Job.project_id == project_id).order_by(Job.id.desc()).limit(20))
        ]


def mark_interrupted(store: FeedbackStore) -> int:
    """At startup: jobs left queued/running by a previous process will never finish."""
    with store.db.write() as s:
        result = s.execute(
            update(Job)
            .where(Job.status.in_(("queued", "running")))
            .values(status="interrupted", finished_at=store.clock())
        )
        return cast(CursorResult[Any], result).rowcount or 0


def _set(store: FeedbackStore, job_id: int, **values: Any) -> None:
    with store.db.write() as s:
        s.execute(update(Job).where(Job.id == job_id).values(**values))


def _check_output(outputs: Any, batch: list[Any], n: int) -> list[list[str]]:
    if (
        not isinstance(outputs, list)
        or len(outputs) != len(batch)
        or any(not isinstance(o, list) or len(o) != n or not all(isinstance(t, str) for t in o) for o in outputs)
    ):
        raise RuntimeError(f"generate_texts must return {len(batch)} lists of {n} strings")
    return outputs


def run_generation(
    store: FeedbackStore, job_id: int, project: str, prompts: list[Any], params: GenerationParams, by_user: int | None
) -> None:
    """The job body (runs in a worker thread; every failure ends up in the job row)."""
    try:
        from rlhfkit.rollout.generate import generate_texts

        _set(store, job_id, status="running")
        done = 0
        for b, start in enumerate(range(0, len(prompts), params.batch_size)):
            batch = prompts[start : start + params.batch_size]
            outputs = _check_output(
                generate_texts(
                    params.model,
                    batch,
                    params.n,
                    max_new_tokens=params.max_new_tokens,
                    temperature=params.temperature,
                    top_p=params.top_p,
                    seed=params.seed + b,
                ),
                batch,
                params.n,
            )
            items = [
                NewItem(prompt=p, responses=tuple(o), task_type=params.task_type, models=(params.model,) * params.n)
                for p, o in zip(batch, outputs, strict=True)
            ]
            store.add_items(project, items, by_user, source="generate")
            done += len(batch)
            _set(store, job_id, done=done)
        _set(store, job_id, status="done", finished_at=store.clock())
    except Exception as exc:
        _set(store, job_id, status="failed", error=f"{type(exc).__name__}: {exc}"[:4000], finished_at=store.clock())


def start_generation(
    store: FeedbackStore,
    project: str,
    prompts: list[Any],
    params: GenerationParams,
    by_user: int | None,
    background: bool = True,
) -> int:
    """Create a job and run it in a daemon thread (or inline when `background` is False)."""
    if not prompts:
        raise Invalid("no prompts to generate from")
    with store.db.write() as s:
        row = get_project(s, project)
        task_type(params.task_type or row.task_type).check_response_count(params.n)
        job = Job(
            project_id=row.id,
            kind="generate",
            status="queued",
            total=len(prompts),
            done=0,
            params=asdict(params),
            created_at=store.clock(),
        )
        s.add(job)
        s.flush()
        job_id = job.id
        record_event(
            s,
            store.clock(),
            by_user,
            "generate",
            project_id=row.id,
            detail={"job": job_id, "prompts": len(prompts), **asdict(params)},
        )
    if background:
        threading.Thread(
            target=run_generation,
            name=f"rlhfkit-generate-{job_id}",
            daemon=True,
            args=(store, job_id, project, prompts, params, by_user),
        ).start()
    else:
        run_generation(store, job_id, project, prompts, params, by_user)
    return job_id
