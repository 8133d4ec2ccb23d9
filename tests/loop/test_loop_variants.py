"""Loop variants on tiny models: people + panel through the served app over HTTP; DPO over two rounds."""

from __future__ import annotations

import json
import socket
import threading
import time
from pathlib import Path

import pytest

from rlhfkit.config import build_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.loop import run_loop

pytestmark = pytest.mark.slow

TINY = [
    "candidates.prompts_per_round=4",
    "candidates.sampling.max_new_tokens=10",
    "reward.max_steps=5",
    "reward.normalize_prompts=4",
    "eval.samples_per_prompt=1",
    "eval.sampling.max_new_tokens=10",
    "progress=false",
    "feedback.gold_items=0",
]
TINY_PPO = [
    "policy.max_steps=2",
    "policy.rollout_batch_size=8",
    "policy.batch_size=8",
    "policy.sampling.max_new_tokens=10",
]


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _config(out: Path, *overrides: str, policy: list[str] = TINY_PPO) -> LoopConfig:
    values = {"output": str(out), "policy_model": "tiny", "prompts": str(fixture_path("sentiment_prompts.jsonl"))}
    return build_config(LoopConfig, values=values, overrides=[*TINY, *policy, *overrides])


def _person(url: str, db: str, project: str, stop: threading.Event, answered: list[int]) -> None:
    """Someone using the served app's JSON API: log in, take tasks, always prefer the first shown."""
    import httpx

    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(db)
    store.create_user("alice", "annotator", "correct horse battery staple")
    store.close()
    with httpx.Client(base_url=url, timeout=30) as http:
        token = http.post(
            "/api/v1/auth/login", json={"name": "alice", "password": "correct horse battery staple"}
        ).json()["token"]
        auth = {"Authorization": f"Bearer {token}"}
        while not stop.is_set():
            try:
                answer = http.post(f"/api/v1/projects/{project}/next", headers=auth)
            except httpx.TransportError:  # the loop finished and closed the app
                return
            task = answer.json().get("task") if answer.status_code == 200 else None
            if task is None:  # the project does not exist yet, or nothing is open for alice right now
                time.sleep(0.2)
                continue
            ranking = [r["id"] for r in task["responses"]]
            http.post(
                f"/api/v1/tasks/{task['assignment_id']}/submit", headers=auth, json={"answer": {"ranking": ranking}}
            ).raise_for_status()
            answered.append(task["item_id"])


def test_panel_and_people_share_items_through_the_served_app(tmp_path: Path) -> None:
    port = _free_port()
    out = tmp_path / "loop"
    cfg = _config(
        out,
        "feedback.source=both",
        "feedback.serve=true",
        f"feedback.port={port}",
        "feedback.panel.transport=rest",
        "feedback.poll_seconds=0.2",
        "feedback.wait_timeout=300",
    )
    stop, answered = threading.Event(), []
    worker = threading.Thread(
        target=_person, args=(f"http://127.0.0.1:{port}", cfg.db_url(), "loop", stop, answered), daemon=True
    )
    # Alice's account must exist before she logs in: create the database (and her) before the loop.
    from rlhfkit.feedback.store import FeedbackStore

    out.mkdir(parents=True)
    FeedbackStore(cfg.db_url()).close()
    loop = threading.Thread(target=run_loop, args=(cfg,), daemon=True)
    loop.start()
    deadline = time.time() + 120
    while time.time() < deadline:  # the app listens once the loop has started it
        try:
            socket.create_connection(("127.0.0.1", port), timeout=1).close()
            break
        except OSError:
            time.sleep(0.2)
    worker.start()
    loop.join(timeout=900)
    stop.set()
    assert not loop.is_alive(), "the loop did not finish"
    assert (out / "report.html").exists()

    store = FeedbackStore(cfg.db_url(), migrate=False)
    judgments = store.judgments("loop")
    store.close()
    by_item: dict[int, list[str]] = {}
    for j in judgments:
        by_item.setdefault(j["item_id"], []).append(j["annotator"])
    # overlap 3: two panel members and alice on every item, all through the JSON API.
    assert all(
        len(names) == 3 and "alice" in names and sum(n.startswith("sim-") for n in names) == 2
        for names in by_item.values()
    )
    assert {j["source"] for j in judgments} == {"api"}
    feedback = json.loads((out / "round-01" / "stages" / "feedback.done").read_text())
    assert feedback["panel_judgments"] == 2 * len(by_item) and feedback["judgments"] == 3 * len(by_item)


def test_dpo_loop_two_rounds(tmp_path: Path) -> None:
    out = run_loop(
        _config(
            tmp_path / "dpo",
            "rounds=2",
            policy=["policy.method=dpo", "policy.max_steps=3", "policy.batch_size=4", "policy.kl_prompts=2"],
        )
    )
    evaluation = json.loads((out / "eval.json").read_text())
    assert [r["round"] for r in evaluation["rounds"]] == [0, 1, 2]
    # DPO has no PPO rollouts: the hacking points are the per-round evaluations.
    assert len(evaluation["hacking"]["points"]) == 3
    assert [w["label"] for w in evaluation["win_rate"]] == [
        "round 1 vs round 0 (gold)",
        "round 1 vs round 0 (proxy)",
        "round 2 vs round 0 (gold)",
        "round 2 vs round 0 (proxy)",
    ]
    # Round 2's reward model and DPO trained on the project's whole export: both rounds' items.
    import yaml

    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(f"sqlite:///{out / 'feedback.db'}", migrate=False)
    rounds = {row.record.prompt for row in store.export_rows("loop", "rankings", "majority")}
    ids = {store.item(j["item_id"])["external_id"][:3] for j in store.judgments("loop")}
    store.close()
    assert ids == {"r01", "r02"} and len(rounds) >= 4
    rm_cfg = yaml.safe_load((out / "round-02" / "reward" / "config.yaml").read_text())
    dpo_cfg = yaml.safe_load((out / "round-02" / "policy" / "config.yaml").read_text())
    assert rm_cfg["data"] == [f"sqlite:///{(out / 'feedback.db').resolve()}#loop"] == [dpo_cfg["data"]]
    assert dpo_cfg["model"] == str(out / "round-01" / "policy")  # round 2 starts from round 1's policy
    assert len(evaluation["leaderboard"]) == 3


@pytest.mark.parametrize("method", ["grpo", "rloo"])
def test_critic_free_policy_stage(method: str, tmp_path: Path) -> None:
    out = run_loop(
        _config(
            tmp_path / method,
            policy=[
                f"policy.method={method}",
                "policy.max_steps=2",
                "policy.prompts_per_step=2",
                "policy.group_size=4",
                "policy.batch_size=4",
                "policy.grad_accum=2",
                "policy.sampling.max_new_tokens=10",
            ],
        )
    )
    import yaml

    policy_cfg = yaml.safe_load((out / "round-01" / "policy" / "config.yaml").read_text())
    assert policy_cfg["advantage"] == method and policy_cfg["samples_per_log"] == 8
    evaluation = json.loads((out / "eval.json").read_text())
    # The hacking points are the policy's per-step points (proxy, KL, gold of its logged rollouts) plus the rounds.
    points = evaluation["hacking"]["points"]
    assert len(points) >= 2 and all(p["gold"] is not None for p in points)
