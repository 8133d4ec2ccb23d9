"""Server-rendered pages: every task type through its HTML form, admin pages, escaping."""

from __future__ import annotations

import io
import json
import re
import zipfile

import pytest
from fastapi.testclient import TestClient
from sqlalchemy import select

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.tables import Judgment

PASSWORD = "correct horse battery"
XSS = '<script>alert("x")</script><img src=x onerror=alert(1)>'


@pytest.fixture
def client(app) -> TestClient:  # type: ignore[no-untyped-def]
    return TestClient(app, raise_server_exceptions=False)


def _task_page(client: TestClient, project: str) -> tuple[str, str]:
    page = client.get(f"/projects/{project}/task")
    if "data-assignment" not in page.text:  # a GET never takes a task: press "Take a task"
        csrf = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)  # type: ignore[union-attr]
        page = client.post(f"/projects/{project}/task", data={"csrf_token": csrf})
    assert page.status_code == 200, page.text
    aid = re.search(r'data-assignment="(\d+)"', page.text).group(1)
    return page.text, aid


def _ids(page: str) -> list[int]:
    """Response ids in display order."""
    return [int(x) for x in re.findall(r'<article class="response" data-response="(\d+)"', page)]


def _id_of(page: str, text: str) -> int:
    """Id of the response whose text is `text`."""
    pattern = r'data-response="(\d+)">\s*<h2>[^<]*</h2>\s*<div class="text">' + re.escape(text) + "</div>"
    return int(re.search(pattern, page).group(1))


def _stored(store) -> list[dict]:  # type: ignore[no-untyped-def]
    with store.db.read() as s:
        return [j.payload for j in s.scalars(select(Judgment).order_by(Judgment.id))]


def _one_item_project(store, name: str, task_type: str, responses: tuple[str, ...], **spec) -> None:  # type: ignore[no-untyped-def]
    store.create_project(ProjectSpec(name=name, task_type=task_type, overlap=1, **spec))
    store.add_items(name, [NewItem(prompt=f"prompt of {name}", responses=responses)])


@pytest.fixture
def annotator(store, client, web_login) -> str:  # type: ignore[no-untyped-def]
    store.create_user("ann", "annotator", PASSWORD)
    return web_login(client, "ann")


def test_pairwise_form(store, client, annotator) -> None:
    _one_item_project(store, "pw", "pairwise", ("left", "right"))
    page, aid = _task_page(client, "pw")
    a, b = _ids(page)
    reply = client.post(
        f"/projects/pw/tasks/{aid}",
        follow_redirects=False,
        data={
            "csrf_token": annotator,
            "choice": str(b),
            "duration_ms": "2500",
            f"flag-{a}": ["violence", "hate"],
            "comment": "close call",
        },
    )
    assert reply.status_code == 303 and reply.headers["location"] == "/projects/pw/task"
    assert _stored(store) == [{"choice": b, "flags": {str(a): ["hate", "violence"]}, "comment": "close call"}]
    assert "Nothing left for you" in client.get("/projects/pw/task").text


def test_ranking_form(store, client, annotator) -> None:
    _one_item_project(store, "rk", "ranking", ("one", "two", "three"))
    page, aid = _task_page(client, "rk")
    shown = _ids(page) or [int(x) for x in re.findall(r'data-response="(\d+)"', page)][:3]
    order = list(reversed(shown))
    client.post(f"/projects/rk/tasks/{aid}", data={"csrf_token": annotator, "ranking": ",".join(map(str, order))})
    assert _stored(store) == [{"ranking": order}]


def test_ranking_form_rejects_partial_order(store, client, annotator) -> None:
    _one_item_project(store, "rk", "ranking", ("one", "two", "three"))
    page, aid = _task_page(client, "rk")
    first = re.search(r'data-response="(\d+)"', page).group(1)
    reply = client.post(f"/projects/rk/tasks/{aid}", data={"csrf_token": annotator, "ranking": first})
    assert reply.status_code == 422 and "every response" in reply.text
    assert 'id="task-error"' in reply.text and _stored(store) == []


def test_likert_form_with_aspects(store, client, annotator) -> None:
    _one_item_project(store, "lk", "likert", ("r1", "r2"), aspects=("helpfulness", "honesty"))
    page, aid = _task_page(client, "lk")
    ids = _ids(page)
    data = {"csrf_token": annotator}
    for n, rid in enumerate(ids):
        for scale, value in (("overall", 6 - n), ("helpfulness", 5), ("honesty", 7)):
            data[f"rating-{rid}-{scale}"] = str(value)
    assert client.post(f"/projects/lk/tasks/{aid}", data=data, follow_redirects=False).status_code == 303
    (payload,) = _stored(store)
    assert payload["ratings"][str(ids[0])] == {"overall": 6, "helpfulness": 5, "honesty": 7}
    assert payload["ratings"][str(ids[1])]["overall"] == 5


def test_likert_missing_rating_is_422_and_keeps_the_task(store, client, annotator) -> None:
    _one_item_project(store, "lk", "likert", ("r1",))
    _page, aid = _task_page(client, "lk")
    reply = client.post(f"/projects/lk/tasks/{aid}", data={"csrf_token": annotator})
    assert reply.status_code == 422 and f'data-assignment="{aid}"' in reply.text


def test_critique_rewrite_demo_harm_forms(store, client, annotator) -> None:
    _one_item_project(store, "cr", "critique", ("draft",))
    page, aid = _task_page(client, "cr")
    (rid,) = _ids(page)
    client.post(f"/projects/cr/tasks/{aid}", data={"csrf_token": annotator, f"critique-{rid}": "too short"})

    _one_item_project(store, "rw", "rewrite", ("orig a", "orig b"))
    page, aid = _task_page(client, "rw")
    assert re.search(r'<textarea name="text" id="rewrite-text"[^>]*>orig [ab]</textarea>', page)
    target = _ids(page)[1]
    client.post(
        f"/projects/rw/tasks/{aid}",
        data={"csrf_token": annotator, "response_id": str(target), "text": "better\r\nversion"},
    )

    _one_item_project(store, "dm", "demo", ())
    page, aid = _task_page(client, "dm")
    client.post(f"/projects/dm/tasks/{aid}", data={"csrf_token": annotator, "text": "ideal answer"})

    _one_item_project(store, "hm", "harm", ("fine", "nasty"))
    page, aid = _task_page(client, "hm")
    nasty = _id_of(page, "nasty")
    client.post(f"/projects/hm/tasks/{aid}", data={"csrf_token": annotator, f"flag-{nasty}": "harassment"})

    assert _stored(store) == [
        {"critiques": {str(rid): "too short"}},
        {"response_id": target, "text": "better\nversion"},
        {"text": "ideal answer"},
        {"flags": {str(nasty): ["harassment"]}},
    ]


def test_skip_dialog_form(store, client, annotator) -> None:
    _one_item_project(store, "sk", "pairwise", ("a", "b"))
    _page, aid = _task_page(client, "sk")
    reply = client.post(
        f"/projects/sk/tasks/{aid}/skip",
        follow_redirects=False,
        data={"csrf_token": annotator, "reason": "The prompt is unclear or broken", "reason_text": "typo"},
    )
    assert reply.status_code == 303
    assert store.qc_report("sk").skip_reasons == {"The prompt is unclear or broken: typo": 1}


def test_everything_user_supplied_is_escaped(store, client, annotator) -> None:
    store.create_project(
        ProjectSpec(name="xss", title=XSS, overlap=1, guidelines=f"# Rules\n\n{XSS}\n\n[click](javascript:alert(1))")
    )
    store.add_items("xss", [NewItem(prompt=XSS, responses=(XSS, f"</div>{XSS}"))])
    page, _ = _task_page(client, "xss")
    assert "<script>" not in page and "onerror=alert" not in page.replace("onerror=alert(1)&gt;", "")
    assert "&lt;script&gt;alert(&#34;x&#34;)&lt;/script&gt;" in page
    assert "javascript:" not in page
    assert "<h1>Rules</h1>" in page  # Markdown still renders
    assert page.count('<div class="text">') == 3  # the "</div>" in a response did not break out
    queue = client.get("/queue").text
    assert "<script>" not in queue


def test_security_headers(client, annotator) -> None:
    reply = client.get("/queue")
    csp = reply.headers["content-security-policy"]
    assert "script-src 'self'" in csp and "unsafe-inline" not in csp
    assert reply.headers["x-frame-options"] == "DENY"
    cookie_page = client.get("/login")
    assert "httponly" in cookie_page.headers["set-cookie"].lower()


def test_login_redirect_stays_on_site(store, client) -> None:
    store.create_user("ann", "annotator", PASSWORD)
    page = client.get("/login?next=//evil.example/x")
    assert 'name="next" value="/"' in page.text
    token = re.search(r'name="csrf_token" value="([^"]+)"', page.text).group(1)
    reply = client.post(
        "/login",
        follow_redirects=False,
        data={"name": "ann", "password": PASSWORD, "csrf_token": token, "next": "https://evil.example"},
    )
    assert reply.headers["location"] == "/"
    wrong = client.get("/login")
    token = re.search(r'name="csrf_token" value="([^"]+)"', wrong.text).group(1)
    bad = client.post("/login", data={"name": "ann", "password": "nope-nope", "csrf_token": token})
    assert bad.status_code == 401 and "Wrong user name or password" in bad.text


def test_admin_pages_end_to_end(store, client, web_login) -> None:
    store.create_user("boss", "admin", PASSWORD)
    csrf = web_login(client, "boss")
    made = client.post(
        "/admin/projects",
        follow_redirects=False,
        data={
            "csrf_token": csrf,
            "name": "helpful",
            "task_type": "pairwise",
            "title": "Helpfulness",
            "overlap": "2",
            "lock_ttl_min": "10",
            "gold_rate": "0",
            "guidelines": "Pick the *better* one.",
        },
    )
    assert made.status_code == 303 and made.headers["location"] == "/admin/projects/helpful"
    jsonl = "\n".join(json.dumps({"prompt": f"q{i}", "responses": [f"good {i}", f"bad {i}"]}) for i in range(3))
    imported = client.post(
        "/admin/projects/helpful/import",
        data={"csrf_token": csrf},
        files={"file": ("items.jsonl", jsonl)},
        follow_redirects=False,
    )
    assert imported.status_code == 303 and "Imported+3+items" in imported.headers["location"]
    for name in ("a1", "a2"):
        reply = client.post(
            "/admin/users",
            data={"csrf_token": csrf, "name": name, "role": "annotator", "password": PASSWORD},
            follow_redirects=False,
        )
        assert reply.status_code == 303
    short = client.post(
        "/admin/users", data={"csrf_token": csrf, "name": "a3", "role": "annotator", "password": "short"}
    )
    assert short.status_code == 422
    users_page = client.get("/admin/users").text
    assert "a1" in users_page and "a2" in users_page
    for name in ("a1", "a2"):
        for _ in range(3):
            task = store.next_task("helpful", store.user(name).id)
            good = next(r.id for r in task.responses if r.text.startswith("good"))
            store.submit(task.assignment_id, store.user(name).id, {"choice": good})
    project_page = client.get("/admin/projects/helpful").text
    assert "Imported 3 items" not in project_page and "6 / 6 judgments" in project_page
    dashboard = client.get("/admin/projects/helpful/dashboard").text
    assert "a1" in dashboard and "100%" in dashboard and "Krippendorff" in dashboard
    saved = client.post(
        "/admin/projects/helpful/settings",
        follow_redirects=False,
        data={
            "csrf_token": csrf,
            "title": "Helpful v2",
            "guidelines": "new rules",
            "lock_ttl_min": "5",
            "gold_rate": "0.1",
        },
    )
    assert saved.status_code == 303 and store.project("helpful").lock_ttl_s == 300
    download = client.get("/admin/projects/helpful/export?format=pairs&aggregate=majority&container=jsonl")
    rows = [json.loads(x) for x in download.text.splitlines()]
    assert rows[0] == {"prompt": "q0", "chosen": "good 0", "rejected": "bad 0"}
    assert "attachment" in download.headers["content-disposition"]
    hf = client.get("/admin/projects/helpful/export?format=pairs&container=hf")
    assert hf.status_code == 200
    names = zipfile.ZipFile(io.BytesIO(hf.content)).namelist()
    assert any(n.endswith("dataset_info.json") for n in names)
    a1 = store.user("a1").id
    toggled = client.post(f"/admin/users/{a1}/active", data={"active": "false"}, headers={"X-CSRF-Token": csrf})
    assert toggled.status_code == 200 and "deactivated" in toggled.text
