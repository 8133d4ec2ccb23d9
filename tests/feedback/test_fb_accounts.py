"""Accounts and sessions (issue 24): idle timeout, password rules, Secure cookies, HSTS, docs, members."""

from __future__ import annotations

import re

import pytest
from fastapi.testclient import TestClient

from rlhfkit.feedback.accounts import TOUCH_EVERY_S
from rlhfkit.feedback.commands import ServeConfig
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.store import FeedbackStore, StoreConfig
from rlhfkit.feedback.web.app import create_app

PASSWORD = "correct horse battery"


def test_idle_session_ends_but_an_active_one_lives(db_url, clock) -> None:
    store = FeedbackStore(db_url, clock=clock, config=StoreConfig(session_idle_s=600))
    store.create_user("ann", "annotator", PASSWORD)
    active, _ = store.login("ann", PASSWORD)
    idle, _ = store.login("ann", PASSWORD)
    for _ in range(5):  # 5 x 250 s: longer than the idle limit in all, never idle for 600 s
        clock.advance(250)
        assert store.session(active) is not None
    assert store.session(idle) is None  # unused for 1250 s
    clock.advance(601)
    assert store.session(active) is None
    store.close()


def test_session_reads_write_at_most_once_a_minute(store, clock) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    token, _ = store.login("ann", PASSWORD)
    writes = []
    original = store.db.write
    store.db.write = lambda: (writes.append(1), original())[1]  # type: ignore[method-assign]
    for _ in range(10):
        clock.advance(TOUCH_EVERY_S / 4)
        assert store.session(token) is not None
    assert len(writes) == 2  # at 75 s and 150 s of 10 requests over 150 s


@pytest.mark.parametrize("ttl", [0, -1])
def test_idle_limit_must_be_positive(ttl: float) -> None:
    with pytest.raises(ValueError, match="session_idle_s"):
        StoreConfig(session_idle_s=ttl)


@pytest.mark.parametrize(
    ("password", "message"),
    [
        (" " * 12, "all whitespace"),
        ("\t\n  \t\n  ", "all whitespace"),
        ("Password123", "most common"),
        ("  qwerty123 ", "most common"),
        ("annotator-7", "account name"),
    ],
)
def test_password_rules(store, password: str, message: str) -> None:
    with pytest.raises(Invalid, match=message):
        store.create_user("annotator-7", "annotator", password)


def test_password_rules_over_the_api_are_a_422(app, store, bearer) -> None:
    store.create_user("boss", "admin", PASSWORD)
    client = TestClient(app)
    reply = client.post(
        "/api/v1/users",
        headers=bearer(client, "boss"),
        json={"name": "x", "role": "annotator", "password": "password1"},
    )
    assert reply.status_code == 422 and "common" in reply.json()["detail"]


def _served(store: FeedbackStore, *flags: str) -> TestClient:
    config = ServeConfig(db="sqlite://", **dict.fromkeys(flags, True)).app_config()  # type: ignore[arg-type]
    return TestClient(create_app(store=store, config=config), base_url="https://testserver")


def test_https_marks_cookies_secure_and_sends_hsts(store) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    plain, https = _served(store), _served(store, "https")
    assert "strict-transport-security" not in plain.get("/login").headers
    page = https.get("/login")
    assert page.headers["strict-transport-security"] == "max-age=31536000"
    assert "secure" in page.headers["set-cookie"].lower()
    csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
    reply = https.post("/login", data={"name": "ann", "password": PASSWORD, "csrf_token": csrf}, follow_redirects=False)
    session_cookie = next(c for c in reply.headers.get_list("set-cookie") if c.startswith("rlhfkit_session="))
    assert "secure" in session_cookie.lower() and "httponly" in session_cookie.lower()


def test_api_docs_are_off_by_default_and_load_no_script(store) -> None:
    assert _served(store).get("/docs").status_code == 404
    assert _served(store).get("/redoc").status_code == 404
    docs = _served(store, "docs").get("/docs")
    assert docs.status_code == 200 and "POST /api/v1/auth/login" in docs.text
    scripts = re.findall(r"<script[^>]*>", docs.text)
    assert all('src="/static/' in tag for tag in scripts), scripts  # only the app's own files
    assert "cdn" not in docs.text.lower() and "content-security-policy" in docs.headers


def test_a_get_never_takes_a_task(app, store, make_project, web_login) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    make_project()
    client = TestClient(app)
    csrf = web_login(client, "ann")
    for _ in range(3):
        page = client.get("/projects/proj/task")
        assert "Take a task" in page.text and "data-assignment" not in page.text
    assert store.progress("proj").judgments == 0 and not [e for e in store.audit() if e["action"] == "assign"]
    taken = client.post("/projects/proj/task", data={"csrf_token": csrf})
    assert "data-assignment" in taken.text
    assert "data-assignment" in client.get("/projects/proj/task").text  # the held task shows on a GET


@pytest.fixture
def team(store, make_project):  # type: ignore[no-untyped-def]
    store.create_user("boss", "admin", PASSWORD)
    ids = {name: store.create_user(name, "annotator", PASSWORD).id for name in ("ann", "bea")}
    make_project("secret", members_only=True)
    make_project("open")
    return ids


def test_members_only_project_is_invisible_to_others(app, store, team, bearer) -> None:
    client = TestClient(app)
    admin, ann, bea = (bearer(client, n) for n in ("boss", "ann", "bea"))
    assert client.put(f"/api/v1/projects/secret/members/{team['ann']}", headers=admin).status_code == 200
    assert [m["name"] for m in client.get("/api/v1/projects/secret/members", headers=admin).json()] == ["ann"]
    names = lambda h: [p["name"] for p in client.get("/api/v1/projects", headers=h).json()]  # noqa: E731
    assert names(ann) == ["open", "secret"] and names(bea) == ["open"] and names(admin) == ["open", "secret"]
    unknown = client.get("/api/v1/projects/no-such-project", headers=bea)
    for method, path in [
        ("GET", "/api/v1/projects/secret"),
        ("GET", "/api/v1/projects/secret/progress"),
        ("POST", "/api/v1/projects/secret/next"),
    ]:
        reply = client.request(method, path, headers=bea)
        assert reply.status_code == unknown.status_code == 404, path
        assert reply.json()["detail"] == "no project named 'secret'"  # worded as for a missing project
    held = client.post("/api/v1/projects/secret/next", headers=ann).json()["task"]
    assert client.delete(f"/api/v1/projects/secret/members/{team['ann']}", headers=admin).status_code == 200
    assert client.post("/api/v1/projects/secret/next", headers=ann).status_code == 404
    assert client.get(f"/api/v1/tasks/{held['assignment_id']}", headers=ann).status_code == 404
    assert client.put(f"/api/v1/projects/secret/members/{team['ann']}", headers=ann).status_code == 403
    # Opening the project to everyone again is one PATCH.
    assert client.patch("/api/v1/projects/secret", json={"members_only": False}, headers=admin).status_code == 200
    assert names(bea) == ["open", "secret"]


def test_members_page_and_queue(app, store, team, web_login) -> None:
    admin = TestClient(app)
    csrf = web_login(admin, "boss")
    page = admin.get("/admin/projects/secret")
    assert "Only the annotators ticked below" in page.text and 'name="member"' in page.text
    form = {"csrf_token": csrf, "members_only": "true", "member": [str(team["bea"])]}
    assert admin.post("/admin/projects/secret/members", data=form, follow_redirects=False).status_code == 303
    assert [m.name for m in store.members("secret")] == ["bea"] and store.project("secret").members_only
    ann, bea = TestClient(app), TestClient(app)
    web_login(ann, "ann")
    web_login(bea, "bea")
    assert "secret" not in ann.get("/queue").text and "/projects/secret/task" in bea.get("/queue").text
    assert ann.get("/projects/secret/task").status_code == 404


def test_admins_cannot_be_members(store, team) -> None:
    boss = store.user("boss").id
    with pytest.raises(Invalid, match="admins see every project"):
        store.set_member("secret", boss, True, boss)
