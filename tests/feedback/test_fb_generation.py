"""Generating candidates in the app: the job calls rollout.generate.generate_texts (faked here)."""

from __future__ import annotations

import sys
import time
import types

import pytest
from fastapi.testclient import TestClient

from rlhfkit.feedback.entities import ProjectSpec
from rlhfkit.feedback.errors import Invalid
from rlhfkit.feedback.generation import GenerationParams, get_job, list_jobs, mark_interrupted, start_generation

PASSWORD = "correct horse battery"


@pytest.fixture
def fake_generator(monkeypatch: pytest.MonkeyPatch) -> list[dict]:
    """Install rlhfkit.rollout.generate.generate_texts (the real one may not be importable here)."""
    calls: list[dict] = []

    def generate_texts(model_name, prompts, n, *, max_new_tokens, temperature, top_p, seed):  # type: ignore[no-untyped-def]
        calls.append(
            {
                "model": model_name,
                "prompts": list(prompts),
                "n": n,
                "seed": seed,
                "max_new_tokens": max_new_tokens,
                "temperature": temperature,
                "top_p": top_p,
            }
        )
        return [[f"{p} -> candidate {k} (seed {seed})" for k in range(n)] for p in prompts]

    module = types.ModuleType("rlhfkit.rollout.generate")
    module.generate_texts = generate_texts  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlhfkit.rollout.generate", module)
    return calls


def test_generation_job_adds_items_batch_by_batch(store, fake_generator) -> None:
    store.create_project(ProjectSpec(name="gen", task_type="ranking", overlap=1))
    prompts = [f"prompt {i}" for i in range(5)]
    params = GenerationParams(model="tiny", n=3, max_new_tokens=16, temperature=0.7, seed=10, batch_size=2)
    job_id = start_generation(store, "gen", prompts, params, by_user=None, background=False)
    job = get_job(store, job_id)
    assert (job["status"], job["done"], job["total"]) == ("done", 5, 5)
    assert [c["prompts"] for c in fake_generator] == [prompts[0:2], prompts[2:4], prompts[4:]]
    assert [c["seed"] for c in fake_generator] == [10, 11, 12] and fake_generator[0]["n"] == 3
    assert store.progress("gen").items == 5
    item = store.item(1)  # the first item of a fresh database
    assert [r["text"] for r in item["responses"]] == [f"prompt 0 -> candidate {k} (seed 10)" for k in range(3)]
    assert {r["model"] for r in item["responses"]} == {"tiny"}


def test_generator_failures_end_up_on_the_job(store, monkeypatch: pytest.MonkeyPatch) -> None:
    store.create_project(ProjectSpec(name="gen", overlap=1))
    module = types.ModuleType("rlhfkit.rollout.generate")
    module.generate_texts = lambda *a, **k: [["only one"]]  # type: ignore[attr-defined]
    monkeypatch.setitem(sys.modules, "rlhfkit.rollout.generate", module)
    job_id = start_generation(store, "gen", ["p"], GenerationParams(model="m", n=2), None, background=False)
    job = get_job(store, job_id)
    assert job["status"] == "failed" and "2 strings" in job["error"]
    with pytest.raises(Invalid, match="pairwise item needs 2..2"):
        start_generation(store, "gen", ["p"], GenerationParams(model="m", n=3), None, background=False)
    with pytest.raises(Invalid):
        GenerationParams(model="m", temperature=0.0)


def test_interrupted_jobs_are_marked_at_startup(store, fake_generator) -> None:
    store.create_project(ProjectSpec(name="gen", overlap=1))
    with store.db.write() as s:
        from rlhfkit.feedback.tables import Job

        s.add(
            Job(
                project_id=store.project("gen").id,
                kind="generate",
                status="running",
                total=3,
                done=1,
                params={},
                created_at=0.0,
            )
        )
    assert mark_interrupted(store) == 1
    assert list_jobs(store, "gen")[0]["status"] == "interrupted"


def test_generate_from_the_admin_page_runs_in_background(store, app, fake_generator, web_login) -> None:
    store.create_user("boss", "admin", PASSWORD)
    store.create_project(ProjectSpec(name="gen", overlap=1))
    client = TestClient(app)
    csrf = web_login(client, "boss")
    reply = client.post(
        "/admin/projects/gen/generate",
        follow_redirects=False,
        data={
            "csrf_token": csrf,
            "model": "tiny",
            "n": "2",
            "max_new_tokens": "8",
            "temperature": "0.9",
            "top_p": "0.95",
            "seed": "3",
            "prompts": "first prompt\nsecond prompt\n",
        },
    )
    assert reply.status_code == 303
    deadline = time.monotonic() + 30
    while list_jobs(store, "gen")[0]["status"] != "done" and time.monotonic() < deadline:
        time.sleep(0.05)
    assert list_jobs(store, "gen")[0]["status"] == "done"
    assert "2 / 2" in client.get("/admin/projects/gen/jobs").text
    assert store.progress("gen").items == 2
    bad = client.post(
        "/admin/projects/gen/generate", data={"csrf_token": csrf, "model": "tiny", "n": "many", "prompts": "x"}
    )
    assert bad.status_code == 422
