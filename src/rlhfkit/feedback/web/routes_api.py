"""REST API under /api/v1: every action of the pages, for scripts and AI judges.

Typical annotator loop::

    POST /api/v1/auth/login                {"name": ..., "password": ...}  -> {"token": ...}
    POST /api/v1/projects/NAME/next        -> {"task": {...}, "remaining": ...}
    POST /api/v1/tasks/ASSIGNMENT/submit   {"answer": {"choice": RESPONSE_ID}}
    POST /api/v1/tasks/ASSIGNMENT/skip     {"reason": "..."}

with ``Authorization: Bearer <token>`` on every call after login.
"""

from __future__ import annotations

import json
from collections.abc import Iterator
from dataclasses import asdict
from typing import Annotated, Any

from fastapi import APIRouter, Depends, Query, Request, UploadFile
from fastapi.responses import StreamingResponse
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback.entities import ProjectSpec, SessionView
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.generation import GenerationParams, get_job, list_jobs, start_generation
from rlhfkit.feedback.importing import check_prompt, item_from_json
from rlhfkit.feedback.web.deps import get_store, require_admin, require_user
from rlhfkit.feedback.web.routes_auth import client_address
from rlhfkit.feedback.web.schemas import (
    NAME_REGEX,
    ActiveBody,
    GenerateBody,
    ItemsBody,
    LoginBody,
    LoginReply,
    NextReply,
    ProjectBody,
    ProjectName,
    ProjectPatch,
    RowId,
    SkipBody,
    SubmitBody,
    SubmitReply,
    UserBody,
    progress_json,
    task_json,
)

router = APIRouter(prefix="/api/v1")


# ------------------------------------------------------------------ annotation
# The hot paths (two requests per judgment) are async with one thread hop for the database work:
# sync endpoints with a response model would pay extra hops for the dependency and serialization.


@router.post("/projects/{name}/next", response_model=NextReply, tags=["annotation"])
async def next_task(
    request: Request, name: ProjectName, session: SessionView = Depends(require_user)
) -> dict[str, Any]:
    """Your current task in the project, or a newly locked one (POST: it takes a lock)."""
    store = get_store(request)

    def work() -> dict[str, Any]:
        task = store.next_task(name, session.user.id)
        if task is not None:
            return {"task": task_json(task), "remaining": None}
        return {"task": None, "remaining": store.progress(name, session.user.id).user_remaining}

    return await run_in_threadpool(work)


@router.get("/tasks/{assignment_id}", tags=["annotation"])
def get_task(request: Request, assignment_id: RowId, session: SessionView = Depends(require_user)) -> dict[str, Any]:
    store = get_store(request)
    return {
        **task_json(store.task(assignment_id, session.user.id)),
        "status": store.assignment_status(assignment_id, session.user.id),
    }


@router.post("/tasks/{assignment_id}/submit", response_model=SubmitReply, tags=["annotation"])
async def submit(
    request: Request, assignment_id: RowId, body: SubmitBody, session: SessionView = Depends(require_user)
) -> dict[str, Any]:
    """Store your answer. Resubmitting the identical answer is safe (``duplicate: true``)."""
    result = await run_in_threadpool(
        get_store(request).submit,
        assignment_id,
        session.user.id,
        body.answer,
        duration_ms=body.duration_ms,
        source="api",
    )
    return asdict(result)


@router.post("/tasks/{assignment_id}/skip", tags=["annotation"])
async def skip(
    request: Request, assignment_id: RowId, body: SkipBody, session: SessionView = Depends(require_user)
) -> dict[str, bool]:
    await run_in_threadpool(get_store(request).skip, assignment_id, session.user.id, body.reason)
    return {"ok": True}


@router.get("/projects/{name}/progress", tags=["annotation"])
def progress(request: Request, name: ProjectName, session: SessionView = Depends(require_user)) -> dict[str, Any]:
    return progress_json(get_store(request).progress(name, session.user.id))


# ------------------------------------------------------------------ auth and users


@router.post("/auth/login", response_model=LoginReply, tags=["auth"])
def api_login(request: Request, body: LoginBody) -> dict[str, Any]:
    """Exchange a name and password for a bearer token (no cookie, no CSRF token needed)."""
    token, session = get_store(request).login(body.name, body.password, kind="api", client=client_address(request))
    return {"token": token, "user": asdict(session.user)}


@router.post("/auth/logout", tags=["auth"])
def api_logout(request: Request, session: SessionView = Depends(require_user)) -> dict[str, bool]:
    header = request.headers.get("authorization", "")
    if header.lower().startswith("bearer "):
        get_store(request).logout(header[7:].strip())
    return {"ok": True}


@router.get("/me", tags=["auth"])
def me(session: SessionView = Depends(require_user)) -> dict[str, Any]:
    return asdict(session.user)


@router.get("/users", tags=["users"])
def users(request: Request, session: SessionView = Depends(require_admin)) -> list[dict[str, Any]]:
    return [asdict(u) for u in get_store(request).list_users()]


@router.post("/users", status_code=201, tags=["users"])
def create_user(request: Request, body: UserBody, session: SessionView = Depends(require_admin)) -> dict[str, Any]:
    return asdict(get_store(request).create_user(body.name, body.role, body.password, session.user.id))


@router.post("/users/{user_id}/active", tags=["users"])
def set_active(
    request: Request, user_id: RowId, body: ActiveBody, session: SessionView = Depends(require_admin)
) -> dict[str, Any]:
    return asdict(get_store(request).set_user_active(user_id, body.active, session.user.id))


# ------------------------------------------------------------------ projects and items


@router.get("/projects", tags=["projects"])
def projects(request: Request, session: SessionView = Depends(require_user)) -> list[dict[str, Any]]:
    return [asdict(p) for p in get_store(request).list_projects(session.user.id)]


@router.post("/projects", status_code=201, tags=["projects"])
def create_project(
    request: Request, body: ProjectBody, session: SessionView = Depends(require_admin)
) -> dict[str, Any]:
    spec = ProjectSpec(**{**body.model_dump(), "aspects": tuple(body.aspects)})
    return asdict(get_store(request).create_project(spec, session.user.id))


@router.get("/projects/{name}", tags=["projects"])
def project(request: Request, name: ProjectName, session: SessionView = Depends(require_user)) -> dict[str, Any]:
    return asdict(get_store(request).project(name, session.user.id))


@router.patch("/projects/{name}", tags=["projects"])
def patch_project(
    request: Request, name: ProjectName, body: ProjectPatch, session: SessionView = Depends(require_admin)
) -> dict[str, Any]:
    changes = {k: v for k, v in body.model_dump().items() if v is not None}
    return asdict(get_store(request).update_project(name, session.user.id, **changes))


@router.get("/projects/{name}/members", tags=["projects"])
def members(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> list[dict[str, Any]]:
    """Annotators who see the project when it is members-only (PATCH ``members_only``)."""
    return [asdict(u) for u in get_store(request).members(name)]


@router.put("/projects/{name}/members/{user_id}", tags=["projects"])
def add_member(
    request: Request, name: ProjectName, user_id: RowId, session: SessionView = Depends(require_admin)
) -> dict[str, bool]:
    get_store(request).set_member(name, user_id, True, session.user.id)
    return {"ok": True}


@router.delete("/projects/{name}/members/{user_id}", tags=["projects"])
def remove_member(
    request: Request, name: ProjectName, user_id: RowId, session: SessionView = Depends(require_admin)
) -> dict[str, bool]:
    get_store(request).set_member(name, user_id, False, session.user.id)
    return {"ok": True}


@router.post("/projects/{name}/items", status_code=201, tags=["projects"])
def add_items(
    request: Request, name: ProjectName, body: ItemsBody, session: SessionView = Depends(require_admin)
) -> dict[str, Any]:
    store = get_store(request)
    errors, items = [], []
    for number, obj in enumerate(body.items, start=1):
        try:
            items.append(item_from_json(obj, store.config.limits))
        except Invalid as exc:
            errors.append(f"item {number}: {exc.message}")
    if errors:
        raise Invalid("; ".join(errors[:20]))
    return {"ids": store.add_items(name, items, session.user.id)}


@router.post("/projects/{name}/import", status_code=201, tags=["projects"])
async def import_items(
    request: Request, name: ProjectName, file: UploadFile, session: SessionView = Depends(require_admin)
) -> dict[str, int]:
    """Upload a JSONL file (multipart field ``file``); see the import format in the docs."""
    try:
        text = (await file.read()).decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the upload is not UTF-8 text") from None
    count = await run_in_threadpool(get_store(request).import_jsonl, name, text, session.user.id)
    return {"imported": count}


@router.get("/items/{item_id}", tags=["projects"])
def item(request: Request, item_id: RowId, session: SessionView = Depends(require_admin)) -> dict[str, Any]:
    return get_store(request).item(item_id)


@router.post("/projects/{name}/generate", status_code=202, tags=["projects"])
def generate(
    request: Request, name: ProjectName, body: GenerateBody, session: SessionView = Depends(require_admin)
) -> dict[str, Any]:
    """Start generating K candidates per prompt in the background; poll /jobs/{id}."""
    store = get_store(request)
    prompts = [check_prompt(p, store.config.limits) for p in body.prompts]
    params = GenerationParams(**body.model_dump(exclude={"prompts"}))
    job_id = start_generation(store, name, prompts, params, session.user.id)
    return get_job(store, job_id)


@router.get("/projects/{name}/jobs", tags=["projects"])
def jobs(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> list[dict[str, Any]]:
    return list_jobs(get_store(request), name)


@router.get("/jobs/{job_id}", tags=["projects"])
def job(request: Request, job_id: RowId, session: SessionView = Depends(require_admin)) -> dict[str, Any]:
    return get_job(get_store(request), job_id)


# ------------------------------------------------------------------ quality and export


@router.get("/projects/{name}/qc", tags=["quality"])
def qc(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> dict[str, Any]:
    return asdict(get_store(request).qc_report(name))


@router.get("/projects/{name}/judgments", tags=["quality"])
def judgments(
    request: Request, name: ProjectName, session: SessionView = Depends(require_admin)
) -> list[dict[str, Any]]:
    return get_store(request).judgments(name)


@router.get("/audit", tags=["quality"])
def audit(
    request: Request,
    project: Annotated[str | None, Query(pattern=NAME_REGEX)] = None,
    limit: Annotated[int, Query(ge=1, le=10_000)] = 200,
    session: SessionView = Depends(require_admin),
) -> list[dict[str, Any]]:
    return get_store(request).audit(project, limit)


@router.get("/projects/{name}/export", tags=["export"])
def export(
    request: Request,
    name: ProjectName,
    format: str = "pairs",
    aggregate: str = "majority",
    session: SessionView = Depends(require_admin),
) -> StreamingResponse:
    """JSONL of rlhfkit/TRL records: format pairs|rankings|ratings|demos, aggregate
    majority|bradley-terry|raw (raw rows carry "annotator")."""
    store = get_store(request)
    rows = store.export_rows(name, format, aggregate)  # type: ignore[arg-type]
    store.record_export(name, format, aggregate, len(rows), session.user.id)

    def lines() -> Iterator[str]:
        for row in rows:
            yield json.dumps(row.to_json(), ensure_ascii=False) + "\n"

    return StreamingResponse(lines(), media_type="application/jsonl; charset=utf-8")
