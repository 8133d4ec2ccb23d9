"""REST API and pages through FastAPI's TestClient: flows, roles, CSRF, bad input -> clear 4xx."""

from __future__ import annotations

import json
import re

import pytest
from fastapi.testclient import TestClient

from rlhfkit.feedback.entities import NewItem, ProjectSpec

PASSWORD = "correct horse battery"


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    # raise_server_exceptions=False: a 500 must show up as a status code, not pass as an exception.
    return TestClient(app, raise_server_exceptions=False)


@pytest.fixture
def setup(store, make_project):  # type: ignore[no-untyped-def]
    store.create_user("boss", "admin", PASSWORD)
    store.create_user("ann", "annotator", PASSWORD)
    store.create_user("bea", "annotator", PASSWORD)
    make_project(overlap=2)
    return store


def _good(task: dict) -> int:
    return next(r["id"] for r in task["responses"] if r["text"].startswith("good"))


def test_annotator_flow_over_the_api(client, setup, bearer) -> None:
    h = bearer(client, "ann")
    assert client.get("/api/v1/me", headers=h).json()["role"] == "annotator"
    seen = []
    while True:
        reply = client.post("/api/v1/projects/proj/next", headers=h).json()
        if reply["task"] is None:
            assert reply["remaining"] == 0
            break
        task = reply["task"]
        assert [r["label"] for r in task["responses"]] == ["A", "B"]
        answer = {"answer": {"choice": _good(task)}, "duration_ms": 1200}
        first = client.post(f"/api/v1/tasks/{task['assignment_id']}/submit", json=answer, headers=h)
        again = client.post(f"/api/v1/tasks/{task['assignment_id']}/submit", json=answer, headers=h)
        assert first.status_code == again.status_code == 200
        assert (first.json()["duplicate"], again.json()["duplicate"]) == (False, True)
        changed = client.post(
            f"/api/v1/tasks/{task['assignment_id']}/submit", json={"answer": {"choice": "tie"}}, headers=h
        )
        assert changed.status_code == 409
        seen.append(task["item_id"])
    assert len(seen) == len(set(seen)) == 6
    progress = client.get("/api/v1/projects/proj/progress", headers=h).json()
    assert progress["user_done"] == 6 and progress["judgments"] == 6


def test_skip_over_the_api(client, setup, bearer) -> None:
    h = bearer(client, "ann")
    task = client.post("/api/v1/projects/proj/next", headers=h).json()["task"]
    assert client.post(f"/api/v1/tasks/{task['assignment_id']}/skip", json={"reason": ""}, headers=h).status_code == 422
    assert (
        client.post(f"/api/v1/tasks/{task['assignment_id']}/skip", json={"reason": "off topic"}, headers=h).status_code
        == 200
    )
    status = client.get(f"/api/v1/tasks/{task['assignment_id']}", headers=h).json()["status"]
    assert status == "skipped"


def test_missing_csrf_token_is_403(client, setup, web_login) -> None:
    csrf = web_login(client, "ann")
    task = client.post("/api/v1/projects/proj/next", headers={"X-CSRF-Token": csrf}).json()["task"]
    url = f"/api/v1/tasks/{task['assignment_id']}/submit"
    body = {"answer": {"choice": _good(task)}}
    assert client.post("/api/v1/projects/proj/next").status_code == 403  # cookie, no token
    assert client.post(url, json=body).status_code == 403
    assert client.post(url, json=body, headers={"X-CSRF-Token": "forged"}).status_code == 403
    assert client.post(url, json=body, headers={"X-CSRF-Token": csrf}).status_code == 200
    # The HTML forms need it too: taking a task ...
    assert client.post("/projects/proj/task").status_code == 403
    page = client.post("/projects/proj/task", data={"csrf_token": csrf})
    # ... and answering it.
    aid = re.search(r'data-assignment="(\d+)"', page.text).group(1)
    assert client.post(f"/projects/proj/tasks/{aid}", data={"choice": "tie"}).status_code == 403
    assert client.post("/logout").status_code == 403


def test_login_form_has_its_own_csrf(client, setup) -> None:
    reply = client.post("/login", data={"name": "ann", "password": PASSWORD, "csrf_token": "x"})
    assert reply.status_code == 403


def test_wrong_role_is_403(client, setup, bearer, web_login) -> None:
    h = bearer(client, "ann")
    assert client.get("/api/v1/users", headers=h).status_code == 403
    assert client.post("/api/v1/projects", json={"name": "x"}, headers=h).status_code == 403
    assert client.get("/api/v1/projects/proj/qc", headers=h).status_code == 403
    assert client.get("/api/v1/projects/proj/export", headers=h).status_code == 403
    assert (
        client.post("/api/v1/users", headers=h, json={"name": "m", "role": "admin", "password": "x" * 12}).status_code
        == 403
    )
    web_login(client, "ann")
    assert client.get("/admin").status_code == 403
    assert client.get("/admin/projects/proj/dashboard").status_code == 403


def test_not_logged_in(client, setup) -> None:
    assert client.post("/api/v1/projects/proj/next").status_code == 401
    assert client.get("/api/v1/me", headers={"Authorization": "Bearer nonsense"}).status_code == 401
    reply = client.get("/queue", follow_redirects=False)
    assert reply.status_code == 303 and reply.headers["location"].startswith("/login")


def test_unknown_ids_are_404(client, setup, bearer, web_login) -> None:
    h = bearer(client, "boss")
    assert client.post("/api/v1/projects/nope/next", headers=h).status_code == 404
    assert client.post("/api/v1/tasks/424242/submit", json={"answer": {"choice": 1}}, headers=h).status_code == 404
    assert client.post("/api/v1/tasks/424242/skip", json={"reason": "x"}, headers=h).status_code == 404
    assert client.get("/api/v1/items/424242", headers=h).status_code == 404
    assert client.get("/api/v1/jobs/424242", headers=h).status_code == 404
    assert client.post("/api/v1/users/424242/active", json={"active": False}, headers=h).status_code == 404
    assert client.get("/api/v1/tasks/not-a-number", headers=h).status_code == 422
    web_login(client, "boss")
    assert client.get("/admin/projects/nope").status_code == 404
    assert client.get("/projects/nope/task").status_code == 404
    assert client.get("/no/such/page").status_code == 404


def test_oversized_input_is_413_or_422(client, store, setup, bearer) -> None:
    store.create_project(ProjectSpec(name="crit", task_type="critique", overlap=1))
    store.add_items("crit", [NewItem(prompt="p", responses=("r",))])
    h = bearer(client, "ann")
    task = client.post("/api/v1/projects/crit/next", headers=h).json()["task"]
    rid = str(task["responses"][0]["id"])
    huge = {"answer": {"critiques": {rid: "x" * 20_001}}}
    assert client.post(f"/api/v1/tasks/{task['assignment_id']}/submit", json=huge, headers=h).status_code == 413
    body = json.dumps({"answer": {"critiques": {rid: "x" * 3_000_000}}})
    reply = client.post(
        f"/api/v1/tasks/{task['assignment_id']}/submit", content=body, headers={**h, "Content-Type": "application/json"}
    )
    assert reply.status_code == 413
    assert (
        client.post(f"/api/v1/tasks/{task['assignment_id']}/skip", json={"reason": "y" * 1001}, headers=h).status_code
        == 422
    )
    admin = bearer(client, "boss")
    big_prompt = {"items": [{"prompt": "p" * 100_001, "responses": ["a", "b"]}]}
    assert client.post("/api/v1/projects/proj/items", json=big_prompt, headers=admin).status_code in (413, 422)
    assert (
        client.post(
            "/api/v1/users", headers=admin, json={"name": "n" * 65, "role": "annotator", "password": "x" * 12}
        ).status_code
        == 422
    )


def test_garbage_never_gives_500(client, setup, bearer) -> None:
    h = bearer(client, "ann")
    task = client.post("/api/v1/projects/proj/next", headers=h).json()["task"]
    url = f"/api/v1/tasks/{task['assignment_id']}/submit"
    for body in (
        "{not json",
        "[]",
        '{"answer": 3}',
        '{"answer": {"choice": [1]}}',
        '{"answer": {"choice": null}}',
        '{"answer": {}, "extra": 1}',
        '{"answer": {"choice": "1e9"}}',
    ):
        reply = client.post(url, content=body, headers={**h, "Content-Type": "application/json"})
        assert 400 <= reply.status_code < 500, (body, reply.status_code, reply.text)
    reply = client.post("/api/v1/auth/login", content=b"\xff\xfe", headers={"Content-Type": "application/json"})
    assert reply.status_code == 422


def test_import_jsonl_upload(client, setup, bearer) -> None:
    h = bearer(client, "boss")
    good = "\n".join(
        json.dumps(x)
        for x in (
            {"prompt": "a?", "responses": ["1", "2"]},
            {"prompt": [{"role": "user", "content": "hi"}], "chosen": "hello", "rejected": "go", "id": "x1"},
            {"prompt": "b?", "responses": ["1", "2"], "gold": {"choice": 1}},
        )
    )
    reply = client.post("/api/v1/projects/proj/import", headers=h, files={"file": ("a.jsonl", good)})
    assert reply.status_code == 201 and reply.json() == {"imported": 3}
    bad = '{"prompt": "ok", "responses": ["1", "2"]}\n{"prompt": 5}\nnot json\n'
    reply = client.post("/api/v1/projects/proj/import", headers=h, files={"file": ("b.jsonl", bad)})
    assert reply.status_code == 422
    assert "line 2" in reply.json()["detail"] and "line 3" in reply.json()["detail"]
    dup = client.post(
        "/api/v1/projects/proj/import",
        headers=h,
        files={"file": ("c.jsonl", '{"prompt": "z", "responses": ["1", "2"], "id": "x1"}')},
    )
    assert dup.status_code == 409
    wrong_count = client.post(
        "/api/v1/projects/proj/items", headers=h, json={"items": [{"prompt": "z", "responses": ["only one"]}]}
    )
    assert wrong_count.status_code == 422 and "2..2" in wrong_count.json()["detail"]


def test_admin_api_project_lifecycle(client, setup, bearer) -> None:
    h = bearer(client, "boss")
    made = client.post(
        "/api/v1/projects", headers=h, json={"name": "rank", "task_type": "ranking", "overlap": 2, "guidelines": "# G"}
    )
    assert made.status_code == 201
    assert client.post("/api/v1/projects", headers=h, json={"name": "rank"}).status_code == 409
    assert client.post("/api/v1/projects", headers=h, json={"name": "bad name!"}).status_code == 422
    assert client.post("/api/v1/projects", headers=h, json={"name": "t", "task_type": "vibes"}).status_code == 422
    patched = client.patch("/api/v1/projects/rank", headers=h, json={"guidelines": "new", "gold_rate": 0.1})
    assert patched.json()["guidelines"] == "new" and patched.json()["gold_rate"] == 0.1
    added = client.post(
        "/api/v1/projects/rank/items", headers=h, json={"items": [{"prompt": "q", "responses": ["a", "b", "c"]}]}
    )
    assert added.status_code == 201
    item = client.get(f"/api/v1/items/{added.json()['ids'][0]}", headers=h).json()
    assert [r["text"] for r in item["responses"]] == ["a", "b", "c"]
    users = client.get("/api/v1/users", headers=h).json()
    assert {u["name"] for u in users} == {"boss", "ann", "bea"}
    assert client.get("/api/v1/audit?project=rank", headers=h).json()[0]["action"] == "add_items"


def test_deactivated_user_loses_access(client, setup, bearer) -> None:
    admin, ann = bearer(client, "boss"), bearer(client, "ann")
    ann_id = next(u["id"] for u in client.get("/api/v1/users", headers=admin).json() if u["name"] == "ann")
    assert client.post(f"/api/v1/users/{ann_id}/active", json={"active": False}, headers=admin).status_code == 200
    assert client.get("/api/v1/me", headers=ann).status_code == 401
    assert client.post("/api/v1/auth/login", json={"name": "ann", "password": PASSWORD}).status_code == 401


def test_login_throttle(client, setup) -> None:
    for _ in range(6):  # five free failures, then a backoff for this client and name
        assert client.post("/api/v1/auth/login", json={"name": "bea", "password": "wrong-password"}).status_code == 401
    assert client.post("/api/v1/auth/login", json={"name": "bea", "password": PASSWORD}).status_code == 429


def test_export_endpoint(client, setup, bearer) -> None:
    for name in ("ann", "bea"):
        h = bearer(client, name)
        while (task := client.post("/api/v1/projects/proj/next", headers=h).json()["task"]) is not None:
            client.post(
                f"/api/v1/tasks/{task['assignment_id']}/submit", headers=h, json={"answer": {"choice": _good(task)}}
            )
    admin = bearer(client, "boss")
    lines = client.get("/api/v1/projects/proj/export?format=pairs", headers=admin).text.splitlines()
    assert next(json.loads(x) for x in lines) == {"prompt": "question 0", "chosen": "good 0", "rejected": "bad 0"}
    raw = client.get("/api/v1/projects/proj/export?format=pairs&aggregate=raw", headers=admin).text.splitlines()
    assert len(raw) == 12 and {json.loads(x)["annotator"] for x in raw} == {"ann", "bea"}
    assert client.get("/api/v1/projects/proj/export?format=nope", headers=admin).status_code == 422
    qc = client.get("/api/v1/projects/proj/qc", headers=admin).json()
    assert qc["alphas"][0]["alpha"] is None  # everyone agrees and only one value occurs: undefined
    assert all(a["agreement"] == 1.0 for a in qc["annotators"])
    judgments = client.get("/api/v1/projects/proj/judgments", headers=admin).json()
    assert len(judgments) == 12 and all(len(j["display_order"]) == 2 for j in judgments)


def test_openapi_lists_every_action(client) -> None:
    paths = client.get("/openapi.json").json()["paths"]
    for path in (
        "/api/v1/auth/login",
        "/api/v1/projects/{name}/next",
        "/api/v1/tasks/{assignment_id}/submit",
        "/api/v1/tasks/{assignment_id}/skip",
        "/api/v1/projects/{name}/import",
        "/api/v1/projects/{name}/generate",
        "/api/v1/projects/{name}/qc",
        "/api/v1/projects/{name}/export",
        "/api/v1/users",
    ):
        assert path in paths
