"""Admin pages: projects, JSONL import, generation, users, dashboard, export download."""

from __future__ import annotations

import io
import json
import tempfile
import zipfile
from pathlib import Path
from typing import Any

from fastapi import APIRouter, Depends, Form, Request, UploadFile
from fastapi.responses import RedirectResponse, Response
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback.entities import ProjectSpec, SessionView
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.export import AGGREGATIONS, EXPORT_KINDS, write_hf_dataset
from rlhfkit.feedback.generation import GenerationParams, list_jobs, start_generation
from rlhfkit.feedback.importing import parse_prompts
from rlhfkit.feedback.tasks import TASK_TYPES
from rlhfkit.feedback.tasks.likert import DEFAULT_ASPECTS
from rlhfkit.feedback.web.deps import get_store, require_admin
from rlhfkit.feedback.web.forms import form_float, form_int
from rlhfkit.feedback.web.schemas import GoldRate, LockTtlMinutes, Overlap, ProjectName, RowId

router = APIRouter(prefix="/admin", include_in_schema=False)


def _page(request: Request, template: str, session: SessionView, **context: Any) -> Response:
    return request.app.state.templates.TemplateResponse(request, template, {"session": session, **context})


async def _read_upload(upload: UploadFile | None) -> str:
    if upload is None:
        return ""
    data = await upload.read()
    try:
        return data.decode("utf-8")
    except UnicodeDecodeError:
        raise Invalid("the upload is not UTF-8 text") from None


@router.get("")
def projects_page(request: Request, session: SessionView = Depends(require_admin)) -> Response:
    store = get_store(request)
    rows = [(p, store.progress(p.name)) for p in store.list_projects()]
    return _page(request, "admin_projects.html", session, rows=rows, task_types=TASK_TYPES, aspects=DEFAULT_ASPECTS)


@router.post("/projects")
def create_project(
    request: Request,
    name: str = Form(max_length=64),
    task_type: str = Form(max_length=16),
    title: str = Form(default="", max_length=200),
    guidelines: str = Form(default="", max_length=200_000),
    overlap: Overlap = 3,
    lock_ttl_min: LockTtlMinutes = 30.0,
    gold_rate: GoldRate = 0.0,
    aspects: list[str] = Form(default=[]),
    session: SessionView = Depends(require_admin),
) -> Response:
    spec = ProjectSpec(
        name=name,
        task_type=task_type,
        title=title,
        guidelines=guidelines,
        overlap=overlap,
        aspects=tuple(aspects),
        lock_ttl_s=int(lock_ttl_min * 60),
        gold_rate=gold_rate,
    )
    get_store(request).create_project(spec, by_user=session.user.id)
    return RedirectResponse(f"/admin/projects/{name}", status_code=303)


@router.get("/projects/{name}")
def project_page(
    request: Request, name: ProjectName, notice: str = "", session: SessionView = Depends(require_admin)
) -> Response:
    store = get_store(request)
    project = store.project(name)
    return _page(
        request,
        "admin_project.html",
        session,
        project=project,
        progress=store.progress(name),
        jobs=list_jobs(store, name),
        events=store.audit(name, limit=30),
        notice=notice[:300],
        annotators=[u for u in store.list_users() if u.role == "annotator"],
        member_ids={u.id for u in store.members(name)},
        aspects=DEFAULT_ASPECTS,
        task_types=TASK_TYPES,
        kinds=EXPORT_KINDS,
        aggregations=AGGREGATIONS,
    )


@router.post("/projects/{name}/settings")
def update_settings(
    request: Request,
    name: ProjectName,
    title: str = Form(default="", max_length=200),
    guidelines: str = Form(default="", max_length=200_000),
    lock_ttl_min: LockTtlMinutes = 30.0,
    gold_rate: GoldRate = 0.0,
    aspects: list[str] = Form(default=[]),
    session: SessionView = Depends(require_admin),
) -> Response:
    get_store(request).update_project(
        name,
        session.user.id,
        title=title,
        guidelines=guidelines,
        lock_ttl_s=int(lock_ttl_min * 60),
        gold_rate=gold_rate,
        aspects=tuple(aspects),
    )
    return RedirectResponse(f"/admin/projects/{name}?notice=Settings+saved", status_code=303)


@router.post("/projects/{name}/members")
async def update_members(
    request: Request, name: ProjectName, session: SessionView = Depends(require_admin)
) -> Response:
    """The members card: the members-only switch and the ticked annotators, as one form."""
    form = await request.form()
    wanted = {v for v in form.getlist("member") if isinstance(v, str)}

    def save() -> None:
        store = get_store(request)
        store.update_project(name, session.user.id, members_only=form.get("members_only") == "true")
        current = {m.id for m in store.members(name)}
        for user in store.list_users():
            if user.role == "annotator" and (str(user.id) in wanted) != (user.id in current):
                store.set_member(name, user.id, str(user.id) in wanted, session.user.id)

    await run_in_threadpool(save)
    return RedirectResponse(f"/admin/projects/{name}?notice=Members+saved", status_code=303)


@router.post("/projects/{name}/import")
async def import_items(
    request: Request, name: ProjectName, file: UploadFile, session: SessionView = Depends(require_admin)
) -> Response:
    text = await _read_upload(file)
    count = await run_in_threadpool(get_store(request).import_jsonl, name, text, session.user.id)
    return RedirectResponse(f"/admin/projects/{name}?notice=Imported+{count}+items", status_code=303)


@router.post("/projects/{name}/generate")
async def generate(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> Response:
    form = await request.form()
    upload = form.get("file")
    text = await _read_upload(upload) if isinstance(upload, UploadFile) and upload.filename else ""
    typed = form.get("prompts", "")
    text = text or (typed if isinstance(typed, str) else "")
    store = get_store(request)
    prompts = parse_prompts(text, store.config.limits)

    model = form.get("model", "")
    params = GenerationParams(
        model=model if isinstance(model, str) else "",
        n=form_int(form, "n", 2, 1, 16),
        max_new_tokens=form_int(form, "max_new_tokens", 256, 1, 8192),
        temperature=form_float(form, "temperature", 1.0),
        top_p=form_float(form, "top_p", 1.0),
        seed=form_int(form, "seed", 0, 0, 2**32 - 1),
    )
    await run_in_threadpool(start_generation, store, name, prompts, params, session.user.id)
    return RedirectResponse(f"/admin/projects/{name}?notice=Generation+started", status_code=303)


@router.get("/projects/{name}/jobs")
def jobs_fragment(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> Response:
    store = get_store(request)
    return _page(request, "_jobs.html", session, project=store.project(name), jobs=list_jobs(store, name))


@router.get("/projects/{name}/dashboard")
def dashboard(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> Response:
    store = get_store(request)
    return _page(request, "dashboard.html", session, project=store.project(name), report=store.qc_report(name))


@router.get("/projects/{name}/dashboard/stats")
def dashboard_stats(request: Request, name: ProjectName, session: SessionView = Depends(require_admin)) -> Response:
    store = get_store(request)
    return _page(request, "_stats.html", session, project=store.project(name), report=store.qc_report(name))


def _zip_dir(folder: Path) -> bytes:
    buffer = io.BytesIO()
    with zipfile.ZipFile(buffer, "w", zipfile.ZIP_DEFLATED) as archive:
        for path in sorted(folder.rglob("*")):
            if path.is_file():
                archive.write(path, path.relative_to(folder.parent))
    return buffer.getvalue()


@router.get("/projects/{name}/export")
def export(
    request: Request,
    name: ProjectName,
    format: str = "pairs",
    aggregate: str = "majority",
    container: str = "jsonl",
    session: SessionView = Depends(require_admin),
) -> Response:
    store = get_store(request)
    rows = [r.to_json() for r in store.export_rows(name, format, aggregate)]  # type: ignore[arg-type]
    store.record_export(name, format, aggregate, len(rows), session.user.id)
    stem = f"{name}-{format}-{aggregate}"
    if container == "jsonl":
        body = "".join(json.dumps(r, ensure_ascii=False) + "\n" for r in rows)
        return Response(
            body,
            media_type="application/jsonl; charset=utf-8",
            headers={"content-disposition": f'attachment; filename="{stem}.jsonl"'},
        )
    if container != "hf":
        raise Invalid("container must be jsonl or hf")
    with tempfile.TemporaryDirectory(prefix="rlhfkit-export-") as workdir:
        write_hf_dataset(rows, Path(workdir) / stem)
        data = _zip_dir(Path(workdir) / stem)
    return Response(
        data, media_type="application/zip", headers={"content-disposition": f'attachment; filename="{stem}-hf.zip"'}
    )


@router.get("/users")
def users_page(request: Request, notice: str = "", session: SessionView = Depends(require_admin)) -> Response:
    return _page(request, "admin_users.html", session, users=get_store(request).list_users(), notice=notice[:300])


@router.post("/users")
def create_user(
    request: Request,
    name: str = Form(max_length=64),
    role: str = Form(max_length=16),
    password: str = Form(max_length=1024),
    session: SessionView = Depends(require_admin),
) -> Response:
    get_store(request).create_user(name, role, password, by_user=session.user.id)
    return RedirectResponse(f"/admin/users?notice=Created+{name}", status_code=303)


@router.post("/users/{user_id}/active")
def set_active(
    request: Request, user_id: RowId, active: bool = Form(), session: SessionView = Depends(require_admin)
) -> Response:
    user = get_store(request).set_user_active(user_id, active, by_user=session.user.id)
    return _page(request, "_user_row.html", session, user=user)
