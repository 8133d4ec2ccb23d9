"""Annotator pages: the queue, one task page per task type, submit and skip (plain HTML forms)."""

from __future__ import annotations

from typing import Any

from fastapi import APIRouter, Depends, Request
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool
from starlette.datastructures import FormData

from rlhfkit.feedback.entities import SessionView, TaskView
from rlhfkit.feedback.errors import Invalid, NotFound, TooLarge
from rlhfkit.feedback.tasks import TASK_TYPES, task_type
from rlhfkit.feedback.tasks.base import HARM_LABELS
from rlhfkit.feedback.tasks.likert import LIKERT_SCALE
from rlhfkit.feedback.web.deps import get_store, require_user
from rlhfkit.feedback.web.forms import duration_from_form, payload_from_form
from rlhfkit.feedback.web.schemas import ProjectName, RowId

router = APIRouter(include_in_schema=False)

SKIP_REASONS = (
    "I am not qualified to judge this",
    "The prompt is unclear or broken",
    "The responses are unreadable or truncated",
    "Other (see text)",
)
"""Reasons offered in the skip dialog (free text is accepted too)."""


def _render_task(
    request: Request,
    session: SessionView,
    task: TaskView,
    project: Any,
    error: str | None = None,
    status_code: int = 200,
) -> Response:
    kind = task_type(task.task_type)
    return request.app.state.templates.TemplateResponse(
        request,
        "task.html",
        {
            "session": session,
            "task": task,
            "project": project,
            "error": error,
            "kind": kind,
            "harm_labels": HARM_LABELS,
            "likert": list(range(LIKERT_SCALE[0], LIKERT_SCALE[1] + 1)),
            "scales": ("overall", *task.aspects),
            "skip_reasons": SKIP_REASONS,
            "progress": task.progress,
        },
        status_code=status_code,
    )


@router.get("/queue")
def queue(request: Request, session: SessionView = Depends(require_user)) -> Response:
    store = get_store(request)
    rows = [(p, store.progress(p.name, session.user.id)) for p in store.list_projects(session.user.id)]
    return request.app.state.templates.TemplateResponse(
        request,
        "queue.html",
        {"session": session, "rows": rows, "task_types": TASK_TYPES},
    )


@router.get("/projects/{name}/task")
def task_page(request: Request, name: ProjectName, session: SessionView = Depends(require_user)) -> Response:
    """The task you hold, or a button that takes one: a GET never takes a lock (prefetchers, link
    previews and crawlers follow GETs)."""
    store = get_store(request)
    project = store.project(name, session.user.id)
    task = store.current_task(name, session.user.id)
    if task is None:
        return request.app.state.templates.TemplateResponse(
            request,
            "done.html",
            {"session": session, "project": project, "progress": store.progress(name, session.user.id)},
        )
    return _render_task(request, session, task, project)


@router.post("/projects/{name}/task")
def take_task(request: Request, name: ProjectName, session: SessionView = Depends(require_user)) -> Response:
    """Take (lock) your next task, then show it."""
    get_store(request).next_task(name, session.user.id)
    return RedirectResponse(f"/projects/{name}/task", status_code=303)


def _own_task(request: Request, name: str, assignment_id: int, session: SessionView) -> TaskView:
    task = get_store(request).task(assignment_id, session.user.id)
    if task.project != name:
        raise NotFound(f"no task {assignment_id} in project {name!r}")
    return task


@router.post("/projects/{name}/tasks/{assignment_id}")
async def submit_task(
    request: Request, name: ProjectName, assignment_id: RowId, session: SessionView = Depends(require_user)
) -> Response:
    form = await request.form()
    return await run_in_threadpool(_submit_form, request, name, assignment_id, session, form)


def _submit_form(request: Request, name: str, assignment_id: int, session: SessionView, form: FormData) -> Response:
    store = get_store(request)
    task = _own_task(request, name, assignment_id, session)
    try:
        store.submit(
            assignment_id,
            session.user.id,
            payload_from_form(form, task),
            duration_ms=duration_from_form(form),
            source="web",
        )
    except (Invalid, TooLarge) as exc:
        # Show the same task again with the problem, rather than losing the annotator's place.
        progress = store.progress(name, session.user.id)
        task = TaskView(**{**task.__dict__, "progress": progress})
        return _render_task(request, session, task, store.project(name), exc.message, exc.status)
    store.next_task(name, session.user.id)  # this POST also takes the next task
    return RedirectResponse(f"/projects/{name}/task", status_code=303)


@router.post("/projects/{name}/tasks/{assignment_id}/skip")
async def skip_task(
    request: Request, name: ProjectName, assignment_id: RowId, session: SessionView = Depends(require_user)
) -> Response:
    form = await request.form()
    choice = form.get("reason", "")
    detail = form.get("reason_text", "")
    parts = [p.strip() for p in (choice, detail) if isinstance(p, str) and p.strip()]

    def skip() -> None:
        _own_task(request, name, assignment_id, session)
        get_store(request).skip(assignment_id, session.user.id, ": ".join(parts))
        get_store(request).next_task(name, session.user.id)  # this POST also takes the next task

    await run_in_threadpool(skip)
    return RedirectResponse(f"/projects/{name}/task", status_code=303)
