"""Login and logout pages (the API twin is ``POST /api/v1/auth/login``)."""

from __future__ import annotations

from fastapi import APIRouter, Depends, Form, Request
from fastapi.responses import RedirectResponse, Response

from rlhfkit.feedback.entities import SessionView
from rlhfkit.feedback.errors import Forbidden, Unauthorized
from rlhfkit.feedback.security import new_token, tokens_match
from rlhfkit.feedback.web.deps import (
    LOGIN_CSRF_COOKIE,
    SESSION_COOKIE,
    get_store,
    optional_session,
    require_user,
)

router = APIRouter(include_in_schema=False)


def client_address(request: Request) -> str | None:
    """The caller's address, the first half of the login backoff's key (behind a reverse proxy,
    run uvicorn with --forwarded-allow-ips so this is the real client)."""
    return request.client.host if request.client else None


def _safe_next(target: str | None) -> str:
    # Only same-site paths: "//evil.example" or "https://..." would be an open redirect.
    if target and target.startswith("/") and not target.startswith("//") and "\\" not in target:
        return target
    return "/"


@router.get("/login")
def login_page(request: Request, next: str = "/") -> Response:
    token = new_token()
    response = request.app.state.templates.TemplateResponse(
        request,
        "login.html",
        {"session": None, "login_csrf": token, "next": _safe_next(next), "error": None},
    )
    response.set_cookie(
        LOGIN_CSRF_COOKIE,
        token,
        httponly=True,
        samesite="strict",
        secure=request.app.state.config.secure_cookies,
        max_age=3600,
    )
    return response


@router.post("/login")
def login_submit(
    request: Request,
    name: str = Form(max_length=64),
    password: str = Form(max_length=1024),
    csrf_token: str = Form(default="", max_length=128),
    next: str = Form(default="/", max_length=2000),
) -> Response:
    if not tokens_match(request.cookies.get(LOGIN_CSRF_COOKIE, "\0"), csrf_token):
        raise Forbidden("missing or wrong CSRF token: reload the login page and try again")
    try:
        token, _ = get_store(request).login(name, password, kind="web", client=client_address(request))
    except Unauthorized:
        fresh = new_token()
        response = request.app.state.templates.TemplateResponse(
            request,
            "login.html",
            {"session": None, "login_csrf": fresh, "next": _safe_next(next), "error": "Wrong user name or password."},
            status_code=401,
        )
        response.set_cookie(
            LOGIN_CSRF_COOKIE,
            fresh,
            httponly=True,
            samesite="strict",
            secure=request.app.state.config.secure_cookies,
            max_age=3600,
        )
        return response
    response = RedirectResponse(_safe_next(next), status_code=303)
    response.set_cookie(
        SESSION_COOKIE,
        token,
        httponly=True,
        samesite="lax",
        secure=request.app.state.config.secure_cookies,
        max_age=int(get_store(request).config.session_ttl_s),
    )
    response.delete_cookie(LOGIN_CSRF_COOKIE)
    return response


@router.post("/logout")
def logout(request: Request, session: SessionView = Depends(require_user)) -> Response:
    cookie = request.cookies.get(SESSION_COOKIE)
    if cookie:
        get_store(request).logout(cookie)
    response = RedirectResponse("/login", status_code=303)
    response.delete_cookie(SESSION_COOKIE)
    return response


@router.get("/")
def home(request: Request) -> Response:
    session = optional_session(request)
    if session is None:
        return RedirectResponse("/login", status_code=303)
    return RedirectResponse("/admin" if session.user.is_admin else "/queue", status_code=303)
