"""One regression test per class of hostile input that once got a 500 (issue 24): each is now a 4xx."""

from __future__ import annotations

import logging

import pytest
from fastapi.testclient import TestClient

PASSWORD = "correct horse battery"
DEEP = "[" * 100_000 + "]" * 100_000
DEPTH_200 = "[" * 200 + "]" * 200
BIG = "9" * 5000


@pytest.fixture
def api(app, store, make_project, bearer):  # type: ignore[no-untyped-def]
    store.create_user("boss", "admin", PASSWORD)
    make_project(overlap=2)
    client = TestClient(app, raise_server_exceptions=False)
    headers = bearer(client, "boss")
    task = client.post("/api/v1/projects/proj/next", headers=headers).json()["task"]
    return client, headers, task["assignment_id"]


def _json(client: TestClient, headers: dict[str, str], method: str, path: str, body: str) -> int:
    return client.request(
        method, path, content=body, headers={**headers, "content-type": "application/json"}
    ).status_code


# (class of fault, method, path with {aid} for a live assignment, raw JSON body or None, status now)
API_CASES = [
    ("id beyond 64 bits", "GET", "/api/v1/tasks/99999999999999999999", None, 422),
    ("id beyond 64 bits", "POST", "/api/v1/users/99999999999999999999/active", '{"active": true}', 422),
    ("id beyond 32 bits (PostgreSQL INTEGER)", "GET", "/api/v1/tasks/2147483648", None, 422),
    ("unicode digit id", "GET", "/api/v1/tasks/²", None, 422),
    ("unicode digit in a body", "POST", "/api/v1/tasks/{aid}/submit", '{"answer": {"choice": "²"}}', 422),
    (
        "int beyond 64 bits in a body",
        "POST",
        "/api/v1/projects/proj/generate",
        f'{{"prompts": ["p"], "model": "m", "seed": {2**70}}}',
        422,
    ),
    ("int beyond 64 bits in a query", "GET", f"/api/v1/audit?limit={2**70}", None, 422),
    ("thousands of digits", "POST", "/api/v1/tasks/{aid}/submit", f'{{"answer": {{"choice": {BIG}}}}}', 400),
    ("deep JSON", "POST", "/api/v1/tasks/{aid}/submit", f'{{"answer": {{"x": {DEEP}}}}}', 400),
    ("deep JSON", "POST", "/api/v1/tasks/{aid}/submit", f'{{"answer": {{"x": {DEPTH_200}}}}}', 422),
    ("deep JSON", "POST", "/api/v1/projects/proj/items", f'{{"items": [{{"prompt": "p", "x": {DEPTH_200}}}]}}', 422),
    ("NUL in a name", "GET", "/api/v1/projects/a%00b", None, 422),
    ("nan in a number", "PATCH", "/api/v1/projects/proj", '{"gold_rate": NaN}', 422),
]


@pytest.mark.parametrize(("fault", "method", "path", "body", "status"), API_CASES, ids=[c[0] for c in API_CASES])
def test_hostile_api_input_is_a_4xx(api, fault: str, method: str, path: str, body: str | None, status: int) -> None:  # type: ignore[no-untyped-def]
    client, headers, aid = api
    path = path.replace("{aid}", str(aid))
    got = (
        _json(client, headers, method, path, body)
        if body is not None
        else client.request(method, path, headers=headers).status_code
    )
    assert got == status, fault


@pytest.mark.parametrize(
    ("line", "message"),
    [(f'{{"prompt": {DEEP}}}', "levels deep"), (f'{{"prompt": "p", "responses": ["a", "b"], "id": {BIG}}}', "digits")],
)
def test_hostile_jsonl_import_names_the_line(api, line: str, message: str) -> None:  # type: ignore[no-untyped-def]
    client, headers, _ = api
    upload = '{"prompt": "p", "responses": ["a", "b"]}\n' + line + "\n"
    reply = client.post("/api/v1/projects/proj/import", files={"file": ("x.jsonl", upload.encode())}, headers=headers)
    assert reply.status_code == 422
    assert "line 2" in reply.json()["detail"] and message in reply.json()["detail"]


@pytest.fixture
def browser(app, store, make_project, web_login):  # type: ignore[no-untyped-def]
    store.create_user("boss", "admin", PASSWORD)
    make_project(overlap=2)
    client = TestClient(app, raise_server_exceptions=False)
    return client, web_login(client, "boss")


@pytest.mark.parametrize(
    ("path", "fields"),
    [
        ("/admin/projects/proj/settings", {"lock_ttl_min": "nan"}),
        ("/admin/projects/proj/settings", {"gold_rate": "inf"}),
        ("/admin/projects", {"name": "p2", "task_type": "pairwise", "overlap": "1" + "0" * 30}),
        ("/admin/projects/proj/generate", {"prompts": "hi", "model": "m", "seed": "²"}),
        ("/admin/projects/proj/generate", {"prompts": "hi", "model": "m", "temperature": "nan"}),
    ],
)
def test_hostile_form_numbers_are_a_4xx(browser, path: str, fields: dict[str, str]) -> None:  # type: ignore[no-untyped-def]
    client, csrf = browser
    reply = client.post(path, data={**fields, "csrf_token": csrf}, follow_redirects=False)
    assert reply.status_code == 422, reply.text[:300]


def test_form_fields_are_validated_before_parsing(browser, store, caplog: pytest.LogCaptureFixture) -> None:  # type: ignore[no-untyped-def]
    """A superscript duration and a superscript response id: digits to isdigit(), not to int()."""
    client, csrf = browser
    page = client.post("/projects/proj/task", data={"csrf_token": csrf})
    aid = int(page.text.split("/projects/proj/tasks/")[1].split('"')[0])
    with caplog.at_level(logging.ERROR):
        reply = client.post(f"/projects/proj/tasks/{aid}", data={"choice": "²", "duration_ms": "²", "csrf_token": csrf})
    assert reply.status_code == 422 and "not a response of this task" in reply.text
    assert not [r for r in caplog.records if r.levelno >= logging.ERROR]


@pytest.mark.postgres
def test_nul_characters_are_a_4xx_on_postgres(pg_url: str) -> None:
    """PostgreSQL refuses NUL in text (SQLite stores it): the refusal is the client's 422, not a 500."""
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.feedback.web.app import create_app

    store = FeedbackStore(pg_url)
    try:
        store.create_user("boss", "admin", PASSWORD)
        client = TestClient(create_app(store=store), raise_server_exceptions=False)
        assert client.post("/api/v1/auth/login", json={"name": "bo\x00ss", "password": "x" * 10}).status_code == 422
        token = client.post("/api/v1/auth/login", json={"name": "boss", "password": PASSWORD}).json()["token"]
        headers = {"Authorization": f"Bearer {token}"}
        assert (
            client.post("/api/v1/projects", json={"name": "p", "title": "a\x00b"}, headers=headers).status_code == 422
        )
        assert client.get("/api/v1/tasks/2147483648", headers=headers).status_code == 422
    finally:
        store.close()
