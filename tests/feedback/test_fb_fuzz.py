"""Schema-driven fuzzing: no input, valid or not, may get a 5xx from the app.

Schemathesis reads the app's own ``/openapi.json`` and generates requests for every operation, both
schema-conforming and schema-violating ones (its positive and negative modes), sent as the admin
(the role that reaches the most code). The HTML forms are not in the OpenAPI document, so
`test_forms_never_answer_5xx` drives them with Hypothesis strategies of hostile field values.
Examples are bounded so the whole file runs in CI in about a minute (SQLite in a tmp dir).
"""

from __future__ import annotations

import contextlib
import itertools
import re
import sys
import tempfile
import types
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import schemathesis
from fastapi.testclient import TestClient
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st
from hypothesis.errors import Unsatisfiable

from rlhfkit.feedback.entities import NewItem, ProjectSpec
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.web.app import create_app

PASSWORD = "correct horse battery"

API_EXAMPLES = 20
"""Examples per API operation (about 30 operations)."""

FORM_EXAMPLES = 60
"""Examples per HTML form."""

FUZZ_SETTINGS = settings(
    max_examples=API_EXAMPLES,
    deadline=None,
    derandomize=True,  # CI reruns the same inputs: a failure is reproducible, never flaky
    suppress_health_check=list(HealthCheck),
)


def _fake_generator(monkeypatch: pytest.MonkeyPatch) -> None:
    # POST /projects/{name}/generate starts a background job: give it a generator that needs no model.
    module = types.ModuleType("rlhfkit.rollout.generate")
    module.generate_texts = lambda _m, prompts, n, **_k: [[f"r{i}" for i in range(n)] for _ in prompts]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlhfkit.rollout.generate", module)


def _seeded_store(url: str) -> FeedbackStore:
    store = FeedbackStore(url)
    store.create_user("boss", "admin", PASSWORD)
    store.create_user("ann", "annotator", PASSWORD)
    store.create_project(ProjectSpec(name="proj", overlap=2))
    store.add_items("proj", [NewItem(prompt=f"q{i}", responses=(f"good {i}", f"bad {i}")) for i in range(4)])
    return store


@pytest.fixture
def fuzz_app(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Iterator[Any]:
    _fake_generator(monkeypatch)
    store = _seeded_store(f"sqlite:///{tmp_path / 'fuzz.db'}")
    yield create_app(store=store)
    store.close()


def _operations() -> list[tuple[str, str]]:
    """(method, path) of every operation in the OpenAPI document (read once, at collection)."""
    with tempfile.TemporaryDirectory() as folder:
        store = FeedbackStore(f"sqlite:///{Path(folder) / 'schema.db'}")
        document = create_app(store=store).openapi()
        store.close()
    return [(method.upper(), path) for path, item in document["paths"].items() for method in item]


OPERATIONS = _operations()


@pytest.fixture
def admin_headers(fuzz_app: Any) -> dict[str, str]:
    with TestClient(fuzz_app) as client:
        reply = client.post("/api/v1/auth/login", json={"name": "boss", "password": PASSWORD})
    return {"Authorization": f"Bearer {reply.json()['token']}"}


@pytest.mark.parametrize("mode", [schemathesis.GenerationMode.POSITIVE, schemathesis.GenerationMode.NEGATIVE])
@pytest.mark.parametrize(("method", "path"), OPERATIONS, ids=[f"{m} {p}" for m, p in OPERATIONS])
def test_api_never_answers_5xx(
    fuzz_app: Any, admin_headers: dict[str, str], method: str, path: str, mode: schemathesis.GenerationMode
) -> None:
    operation = schemathesis.openapi.from_asgi("/openapi.json", fuzz_app)[path][method]

    @FUZZ_SETTINGS
    @given(case=operation.as_strategy(mode))
    def fuzz(case: Any) -> None:
        response = case.call(headers=admin_headers)
        assert response.status_code < 500, (
            f"{case.method} {case.formatted_path}: {response.status_code} {response.text}"
        )

    try:
        fuzz()
    except Unsatisfiable:
        pytest.skip(f"{method} {path} has no input that violates its schema")


PG_EXAMPLES = 6
"""Examples per operation and mode on PostgreSQL (which refuses some values SQLite stores, e.g. NUL)."""


@pytest.mark.postgres
def test_api_never_answers_5xx_on_postgres(pg_url: str, monkeypatch: pytest.MonkeyPatch) -> None:
    _fake_generator(monkeypatch)
    store = _seeded_store(pg_url)
    app = create_app(store=store)
    with TestClient(app) as client:
        reply = client.post("/api/v1/auth/login", json={"name": "boss", "password": PASSWORD})
    headers = {"Authorization": f"Bearer {reply.json()['token']}"}
    schema = schemathesis.openapi.from_asgi("/openapi.json", app)
    try:
        for (method, path), mode in itertools.product(OPERATIONS, schemathesis.GenerationMode):

            @settings(FUZZ_SETTINGS, max_examples=PG_EXAMPLES)
            @given(case=schema[path][method].as_strategy(mode))
            def fuzz(case: Any) -> None:
                response = case.call(headers=headers)
                assert response.status_code < 500, f"{case.method} {case.formatted_path}: {response.text}"

            with contextlib.suppress(Unsatisfiable):
                fuzz()
    finally:
        store.close()


# ------------------------------------------------------------------ HTML forms

HOSTILE_TEXT = st.one_of(
    st.text(max_size=40),
    st.sampled_from(["nan", "inf", "-inf", "1e309", "²", "١٢", "9" * 30, "-1", "0x10", " 3 ", "", "3.5", "1_0"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
    st.floats(allow_nan=True, allow_infinity=True).map(repr),
)
"""Field values a careless user or an attacker may type: Unicode digits, huge, NaN, empty..."""

HOSTILE_ID = st.one_of(
    st.sampled_from(["²", "١", "99999999999999999999999", "-1", "0", "1", "%20"]),
    st.integers(min_value=-(2**70), max_value=2**70).map(str),
)
"""Path ids: digits to `str.isdigit()` but not to `int()`, beyond 64 bits, negative."""


def _csrf(text: str) -> str:
    match = re.search(r'name="csrf_token" value="([^"]+)"', text)
    assert match is not None
    return match.group(1)


@pytest.fixture
def admin_browser(fuzz_app: Any) -> Iterator[tuple[TestClient, str]]:
    with TestClient(fuzz_app, raise_server_exceptions=False) as client:
        login = client.get("/login")
        client.post("/login", data={"name": "boss", "password": PASSWORD, "csrf_token": _csrf(login.text)})
        yield client, _csrf(client.get("/admin").text)


FORMS: list[tuple[str, tuple[str, ...]]] = [
    ("/admin/projects", ("name", "task_type", "title", "overlap", "lock_ttl_min", "gold_rate", "aspects")),
    ("/admin/projects/proj/settings", ("title", "guidelines", "lock_ttl_min", "gold_rate", "aspects")),
    ("/admin/projects/proj/generate", ("prompts", "model", "n", "max_new_tokens", "temperature", "top_p", "seed")),
    ("/admin/users", ("name", "role", "password")),
    ("/admin/users/{id}/active", ("active",)),
    ("/projects/proj/tasks/{id}", ("choice", "duration_ms", "comment", "overall", "flag-1")),
    ("/projects/proj/tasks/{id}/skip", ("reason", "reason_text")),
    ("/login", ("name", "password", "next")),
    ("/projects/proj/task", ("unexpected",)),
    ("/admin/projects/proj/members", ("members_only", "member")),
    ("/logout", ("unexpected",)),
]
"""Every HTML form that changes state, with its fields."""


@pytest.mark.parametrize(("path", "fields"), FORMS, ids=[p for p, _ in FORMS])
def test_forms_never_answer_5xx(admin_browser: tuple[TestClient, str], path: str, fields: tuple[str, ...]) -> None:
    client, csrf = admin_browser

    @settings(max_examples=FORM_EXAMPLES, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(
        values=st.fixed_dictionaries({}, optional=dict.fromkeys(fields, HOSTILE_TEXT)),
        ident=HOSTILE_ID,
    )
    def fuzz(values: dict[str, str], ident: str) -> None:
        reply = client.post(path.replace("{id}", ident), data={**values, "csrf_token": csrf}, follow_redirects=False)
        assert reply.status_code < 500, f"POST {path} {values}: {reply.status_code} {reply.text[:300]}"

    fuzz()


PAGES: list[tuple[str, tuple[str, ...]]] = [
    ("/login", ("next",)),
    ("/admin/projects/proj", ("notice",)),
    ("/admin/projects/proj/export", ("format", "aggregate", "container")),
    ("/admin/users", ("notice",)),
    ("/projects/proj/task", ("unexpected",)),
    ("/queue", ("unexpected",)),
]
"""Pages that read query parameters (GETs are not in the OpenAPI document either)."""


@pytest.mark.parametrize(("path", "fields"), PAGES, ids=[p for p, _ in PAGES])
def test_pages_never_answer_5xx(admin_browser: tuple[TestClient, str], path: str, fields: tuple[str, ...]) -> None:
    client, _ = admin_browser

    @settings(max_examples=FORM_EXAMPLES // 2, deadline=None, derandomize=True, suppress_health_check=list(HealthCheck))
    @given(values=st.fixed_dictionaries({}, optional=dict.fromkeys(fields, HOSTILE_TEXT)))
    def fuzz(values: dict[str, str]) -> None:
        reply = client.get(path, params=values, follow_redirects=False)
        assert reply.status_code < 500, f"GET {path} {values}: {reply.status_code} {reply.text[:300]}"

    fuzz()
