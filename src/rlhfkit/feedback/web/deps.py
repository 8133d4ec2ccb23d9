"""Request dependencies: who is calling, with which role, and the CSRF check.

Two ways to authenticate, mirroring the two session kinds:

* browsers: the ``rlhfkit_session`` cookie (HttpOnly, SameSite=Lax). Every unsafe request
  (POST/PUT/PATCH/DELETE) must echo the session's CSRF token, in the ``X-CSRF-Token`` header
  (htmx, fetch) or a ``csrf_token`` form field (plain forms); otherwise 403.
* scripts and AI judges: ``Authorization: Bearer <token>`` from ``POST /api/v1/auth/login``. A
  browser never attaches that header by itself, so bearer requests need no CSRF token.
"""

from __future__ import annotations

from fastapi import Request
from starlette.concurrency import run_in_threadpool

from rlhfkit.feedback.entities import SessionView
from rlhfkit.feedback.errors import FeedbackError, Forbidden, Unauthorized
from rlhfkit.feedback.security import tokens_match
from rlhfkit.feedback.store import FeedbackStore

SESSION_COOKIE = "rlhfkit_session"
"""Cookie holding a web session token."""

LOGIN_CSRF_COOKIE = "rlhfkit_login_csrf"
"""Double-submit cookie protecting the login form itself (there is no session yet)."""

CSRF_HEADER = "x-csrf-token"
"""Header carrying the CSRF token (htmx sends it on every request, see base.html)."""

CSRF_FIELD = "csrf_token"
"""Form field carrying the CSRF token."""

UNSAFE_METHODS = frozenset({"POST", "PUT", "PATCH", "DELETE"})
"""Methods that change state and therefore need the CSRF token."""


class LoginRequired(FeedbackError):
    """A page needs a login: answered with a redirect to /login (API: 401)."""

    status = 401


def get_store(request: Request) -> FeedbackStore:
    return request.app.state.store


def _bearer(request: Request) -> str | None:
    header = request.headers.get("authorization", "")
    scheme, _, token = header.partition(" ")
    return token.strip() if scheme.lower() == "bearer" and token.strip() else None


def optional_session(request: Request) -> SessionView | None:
    """The caller's session, if any (cached on the request)."""
    if hasattr(request.state, "session_view"):
        return request.state.session_view
    store = get_store(request)
    view: SessionView | None = None
    bearer = _bearer(request)
    if bearer is not None:
        view = store.session(bearer)
        if view is None or view.kind != "api":
            raise Unauthorized("invalid or expired API token")
    else:
        cookie = request.cookies.get(SESSION_COOKIE)
        if cookie:
            view = store.session(cookie)
            if view is not None and view.kind != "web":
                view = None
    request.state.session_view = view
    return view


async def check_csrf(request: Request, session: SessionView) -> None:
    """Raise Forbidden unless an unsafe cookie-authenticated request carries the CSRF token."""
    if request.method not in UNSAFE_METHODS or session.kind != "web":
        return
    given = request.headers.get(CSRF_HEADER)
    if given is None and request.headers.get("content-type", "").startswith(
        ("application/x-www-form-urlencoded", "multipart/form-data")
    ):
        form = await request.form()  # Starlette caches it: the route can still read the form
        value = form.get(CSRF_FIELD)
        given = value if isinstance(value, str) else None
    if not tokens_match(session.csrf_token, given):
        raise Forbidden("missing or wrong CSRF token: reload the page and try again")


def _is_api(request: Request) -> bool:
    return request.url.path.startswith("/api/")


async def require_user(request: Request) -> SessionView:
    """Any logged-in, active account (CSRF-checked on unsafe methods)."""
    # A database read: never on the event loop, where waiting for the GIL behind worker threads
    # would stall every connection.
    session = await run_in_threadpool(optional_session, request)
    if session is None:
        if _is_api(request):
            raise Unauthorized("log in first: POST /api/v1/auth/login, then send Authorization: Bearer <token>")
        raise LoginRequired("please log in")
    await check_csrf(request, session)
    return session


async def require_admin(request: Request) -> SessionView:
    """An admin account (annotators get 403)."""
    session = await require_user(request)
    if not session.user.is_admin:
        raise Forbidden("this needs an admin account")
    return session
