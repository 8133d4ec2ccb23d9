"""The FastAPI application: `create_app` wires the store, routes, limits and error pages.

Everything a person can do in the pages has a JSON twin under ``/api/v1`` (OpenAPI schema at
``/openapi.json``; with ``AppConfig.docs`` a reference page at ``/docs``, rendered on the server
without any script), so scripts and AI judges submit exactly as people do.
"""

from __future__ import annotations

import logging
from collections.abc import AsyncIterator
from contextlib import asynccontextmanager
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import anyio.to_thread
import jinja2
from fastapi import FastAPI, Request
from fastapi.exceptions import RequestValidationError
from fastapi.responses import JSONResponse, RedirectResponse, Response
from fastapi.staticfiles import StaticFiles
from fastapi.templating import Jinja2Templates
from sqlalchemy.exc import DataError
from starlette.exceptions import HTTPException as StarletteHTTPException
from starlette.types import ASGIApp, Message, Receive, Scope, Send

from rlhfkit import __version__
from rlhfkit.feedback.errors import FeedbackError
from rlhfkit.feedback.generation import mark_interrupted
from rlhfkit.feedback.markdown_render import render_markdown
from rlhfkit.feedback.store import FeedbackStore, StoreConfig
from rlhfkit.feedback.throttle import TooManyAttempts
from rlhfkit.feedback.web.deps import LoginRequired, optional_session

PACKAGE_DIR = Path(__file__).resolve().parent.parent
"""The feedback package (templates/ and static/ live there)."""

log = logging.getLogger("rlhfkit.feedback")


@dataclass(frozen=True)
class AppConfig:
    """Web-layer settings."""

    max_body_bytes: int = 2 * 1024 * 1024
    """Largest request body outside uploads (413 above it)."""
    max_upload_bytes: int = 64 * 1024 * 1024
    """Largest JSONL upload (import, prompts for generation)."""
    secure_cookies: bool = False
    """Mark cookies Secure (set when served over HTTPS)."""
    hsts: bool = False
    """Send Strict-Transport-Security (only behind HTTPS: browsers then refuse plain HTTP for a year)."""
    docs: bool = False
    """Serve the API reference page at /docs (off by default: it lists every endpoint to anyone)."""
    worker_threads: int = 16
    """Threads running database work. More only adds GIL contention: SQLite has one writer and
    the work is CPU-bound Python; 16 still overlaps PostgreSQL round trips and fsyncs."""
    store: StoreConfig = field(default_factory=StoreConfig)
    """Store limits."""

    def __post_init__(self) -> None:
        if self.max_body_bytes < 1024 or self.max_upload_bytes < self.max_body_bytes:
            raise ValueError("max_body_bytes must be >= 1 KiB and max_upload_bytes >= max_body_bytes")
        if not 1 <= self.worker_threads <= 256:
            raise ValueError(f"worker_threads must be in [1, 256], got {self.worker_threads}")


UPLOAD_SUFFIXES = ("/import", "/generate")
"""Paths ending with these accept `max_upload_bytes` instead of `max_body_bytes`."""

SECURITY_HEADERS = {
    # No inline script or style anywhere: even a missed escape could not run code.
    "content-security-policy": (
        "default-src 'self'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
        "object-src 'none'; base-uri 'none'; frame-ancestors 'none'; form-action 'self'"
    ),
    "x-content-type-options": "nosniff",
    "x-frame-options": "DENY",
    "referrer-policy": "same-origin",
}
"""Headers added to every response."""

HSTS_HEADER = ("strict-transport-security", "max-age=31536000")
"""One year, this host only (includeSubDomains could break other services on the domain)."""


class SecurityHeadersMiddleware:
    """Add `SECURITY_HEADERS` (and HSTS when asked; a plain ASGI middleware: no per-request task overhead)."""

    def __init__(self, app: ASGIApp, hsts: bool = False) -> None:
        self.app = app
        headers = {**SECURITY_HEADERS, **dict([HSTS_HEADER] if hsts else [])}
        self.headers = [(k.encode(), v.encode()) for k, v in headers.items()]

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return

        async def send_with_headers(message: Message) -> None:
            if message["type"] == "http.response.start":
                present = {name.lower() for name, _ in message.get("headers", [])}
                extra = [(k, v) for k, v in self.headers if k not in present]
                message = {**message, "headers": [*message.get("headers", []), *extra]}
            await send(message)

        await self.app(scope, receive, send_with_headers)


class BodyLimitMiddleware:
    """Answer 413 to bodies over the limit, by Content-Length or while streaming."""

    def __init__(self, app: ASGIApp, config: AppConfig) -> None:
        self.app = app
        self.config = config

    async def __call__(self, scope: Scope, receive: Receive, send: Send) -> None:
        if scope["type"] != "http":
            await self.app(scope, receive, send)
            return
        path: str = scope["path"]
        limit = self.config.max_upload_bytes if path.endswith(UPLOAD_SUFFIXES) else self.config.max_body_bytes
        declared = dict(scope["headers"]).get(b"content-length")
        if declared is not None and declared.isdigit() and int(declared) > limit:
            await _too_large(path, limit)(scope, receive, send)
            return
        seen = 0

        async def limited_receive() -> Message:
            nonlocal seen
            message = await receive()
            if message["type"] == "http.request":
                seen += len(message.get("body", b""))
                if seen > limit:
                    raise _BodyTooLarge()
            return message

        try:
            await self.app(scope, limited_receive, send)
        except _BodyTooLarge:
            await _too_large(path, limit)(scope, receive, send)


class _BodyTooLarge(Exception):
    pass


def _too_large(path: str, limit: int) -> Response:
    message = f"request body too large (limit {limit} bytes)"
    if path.startswith("/api/"):
        return JSONResponse({"detail": message}, status_code=413)
    return Response(message, status_code=413, media_type="text/plain")


def _templates() -> Jinja2Templates:
    env = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(PACKAGE_DIR / "templates")),
        autoescape=True,  # every {{ }} is HTML-escaped; the only Markup is render_markdown's
        undefined=jinja2.StrictUndefined,
    )
    env.filters["markdown"] = render_markdown
    env.globals["version"] = __version__
    return Jinja2Templates(env=env)


def _wants_json(request: Request) -> bool:
    return request.url.path.startswith("/api/") or request.url.path == "/openapi.json"


def _error_response(request: Request, status: int, message: str) -> Response:
    if _wants_json(request):
        return JSONResponse({"detail": message}, status_code=status)
    templates: Jinja2Templates = request.app.state.templates
    try:
        session = optional_session(request)
    except FeedbackError:
        session = None
    return templates.TemplateResponse(
        request,
        "error.html",
        {"status": status, "message": message, "session": session},
        status_code=status,
    )


def _install_error_handlers(app: FastAPI) -> None:
    @app.exception_handler(LoginRequired)
    async def _login(request: Request, exc: LoginRequired) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": exc.message}, status_code=401)
        return RedirectResponse(f"/login?next={request.url.path}", status_code=303)

    @app.exception_handler(FeedbackError)
    async def _feedback(request: Request, exc: FeedbackError) -> Response:
        response = _error_response(request, exc.status, exc.message)
        if isinstance(exc, TooManyAttempts):
            response.headers["retry-after"] = str(exc.retry_after_s)
        return response

    @app.exception_handler(RequestValidationError)
    async def _validation(request: Request, exc: RequestValidationError) -> Response:
        if _wants_json(request):
            return JSONResponse({"detail": _jsonable_errors(exc)}, status_code=422)
        details = "; ".join(f"{'.'.join(str(p) for p in e.get('loc', ()))}: {e.get('msg', '')}" for e in exc.errors())
        return _error_response(request, 422, f"invalid input ({details})")

    @app.exception_handler(StarletteHTTPException)
    async def _http(request: Request, exc: StarletteHTTPException) -> Response:
        return _error_response(request, exc.status_code, str(exc.detail))

    @app.exception_handler(DataError)
    async def _data(request: Request, exc: DataError) -> Response:
        # The database refused a value the request carried (PostgreSQL: a NUL character in text, a
        # number out of its column's range): the client's input, so a 4xx, not a 500.
        log.info("database refused a value on %s %s: %s", request.method, request.url.path, exc.orig)
        return _error_response(request, 422, "a value in the request cannot be stored (NUL characters are not allowed)")

    @app.exception_handler(Exception)
    async def _unexpected(request: Request, exc: Exception) -> Response:
        log.exception("unexpected error on %s %s", request.method, request.url.path)
        return _error_response(request, 500, "internal error; the details are in the server log")


def _jsonable_errors(exc: RequestValidationError) -> list[dict[str, Any]]:
    # Pydantic errors may carry the offending input (possibly huge or non-JSON): keep it short.
    return [
        {"loc": list(e.get("loc", ())), "msg": str(e.get("msg", "")), "type": e.get("type", "")} for e in exc.errors()
    ]


def create_app(
    db_url: str | None = None, *, store: FeedbackStore | None = None, config: AppConfig | None = None
) -> FastAPI:
    """The web app over a database URL (migrated at startup) or an existing store."""
    from rlhfkit.feedback.web import routes_admin, routes_api, routes_auth, routes_docs, routes_pages

    config = config or AppConfig()
    if store is None:
        if db_url is None:
            raise ValueError("give a database URL or a store")
        store = FeedbackStore(db_url, config=config.store)
    mark_interrupted(store)

    @asynccontextmanager
    async def lifespan(_app: FastAPI) -> AsyncIterator[None]:
        anyio.to_thread.current_default_thread_limiter().total_tokens = config.worker_threads
        yield

    app = FastAPI(
        lifespan=lifespan,
        # FastAPI's own /docs and /redoc load Swagger UI and ReDoc from a CDN: third-party scripts.
        docs_url=None,
        redoc_url=None,
        title="rlhfkit feedback",
        version=__version__,
        description="Collect human feedback (pairwise, ranking, Likert, critique, rewrite, "
        "demonstration, harm flags) for reward models and DPO.",
    )
    app.state.store = store
    app.state.config = config
    app.state.templates = _templates()
    app.state.templates.env.globals["docs_enabled"] = config.docs
    app.mount("/static", StaticFiles(directory=str(PACKAGE_DIR / "static")), name="static")
    # The API first: routes are matched in order, and annotation calls are the bulk of traffic.
    for module in (routes_api, routes_auth, routes_pages, routes_admin):
        app.include_router(module.router)
    if config.docs:
        app.include_router(routes_docs.router)
    _install_error_handlers(app)

    app.add_middleware(SecurityHeadersMiddleware, hsts=config.hsts)
    app.add_middleware(BodyLimitMiddleware, config=config)
    return app
