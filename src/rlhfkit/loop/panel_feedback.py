"""The simulated panel as annotators of the feedback app: real accounts, the app's assignment, real answers.

Each member of a `SimulatedPanel` becomes an annotator account of the app (created with a random
password that is never written anywhere; a later run that needs to log in over HTTP sets a new random
one). Members then work exactly as people do: ask the app for their next task (the app decides which
item, locks it and records the display order), judge it with the panel's noisy gold preference, and
submit the answer in the task type's canonical payload. Quality control (agreement, gold accuracy,
Krippendorff's alpha), the audit log and the export therefore see the panel like any other annotator.

Two transports, one code path:

* ``store``: in-process calls of `rlhfkit.feedback.store.FeedbackStore` (what a script on the server
  does);
* ``rest``: the JSON API ``/api/v1`` over HTTP (login, ``next``, ``submit``) through any
  ``httpx.Client`` (a live server, or FastAPI's ``TestClient`` in tests).

Members take turns one task at a time (in a seeded random order each turn) until none of them gets a
task, which is how concurrent annotators spread over items: with overlap N, each item ends up with
judgments from N different members. Answers are computed on the responses in canonical (database id)
order: the panel has no position bias, so this changes no statistic, and the same project judged
again gives the same answers. What a member answers is its task type's ``simulate``
(`rlhfkit.feedback.tasks`), to which the panel is a `rlhfkit.feedback.tasks.base.SimulatedAnnotator`;
task types without one (free text) are given back with a reason.
"""

from __future__ import annotations

import random
import secrets
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any, Protocol

from rlhfkit.feedback.entities import ResponseView, TaskView
from rlhfkit.feedback.errors import NotFound
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.feedback.tasks import task_type
from rlhfkit.loop.annotators import SimulatedPanel

PASSWORD_BYTES = 24
"""Random bytes of a generated password (32 URL-safe characters)."""

SIMULATED_DURATION_MS = 4000
"""Duration reported with each simulated answer, so per-annotator timing stats stay defined."""

SKIP_REASON = "simulated panel: this item already has its share of simulated judgments; slot left for people"
"""Why a member gives a task back when the panel may fill only part of an item's overlap."""


def random_password() -> str:
    """A fresh random password (there is never a default one)."""
    return secrets.token_urlsafe(PASSWORD_BYTES)


# ------------------------------------------------------------------ transports


class AnnotatorClient(Protocol):
    """What a member needs from the app: its next task, and a way to answer or give it back."""

    def next_task(self, project: str) -> TaskView | None:
        """The member's current or a newly locked task; None when nothing is open for it."""
        ...

    def submit(self, assignment_id: int, payload: dict[str, Any]) -> None:
        """Store the answer."""
        ...

    def skip(self, assignment_id: int, reason: str) -> None:
        """Give the task back (it is never handed to this member again)."""
        ...


@dataclass
class StoreClient:
    """A member working through the in-process store."""

    store: FeedbackStore
    """The app's store."""
    user_id: int
    """The member's account id."""

    def next_task(self, project: str) -> TaskView | None:
        return self.store.next_task(project, self.user_id)

    def submit(self, assignment_id: int, payload: dict[str, Any]) -> None:
        self.store.submit(assignment_id, self.user_id, payload, duration_ms=SIMULATED_DURATION_MS, source="api")

    def skip(self, assignment_id: int, reason: str) -> None:
        self.store.skip(assignment_id, self.user_id, reason)


def _task_from_json(data: dict[str, Any]) -> TaskView:
    return TaskView(
        assignment_id=int(data["assignment_id"]),
        item_id=int(data["item_id"]),
        project=data["project"],
        task_type=data["task_type"],
        prompt=data["prompt"],
        responses=tuple(ResponseView(id=int(r["id"]), label=r["label"], text=r["text"]) for r in data["responses"]),
        aspects=tuple(data.get("aspects", ())),
        expires_at=float(data["expires_at"]),
    )


@dataclass
class RestClient:
    """A member working through the JSON API: ``POST /api/v1/auth/login``, then bearer-token calls."""

    http: Any
    """An ``httpx.Client`` whose base URL is the app (e.g. ``http://127.0.0.1:8000``), or a TestClient."""
    name: str
    """Account name."""
    password: str
    """Account password."""
    token: str = field(default="", init=False)

    def _call(self, path: str, body: dict[str, Any] | None = None) -> dict[str, Any]:
        if not self.token:
            answer = self.http.post("/api/v1/auth/login", json={"name": self.name, "password": self.password})
            answer.raise_for_status()
            self.token = answer.json()["token"]
        answer = self.http.post(path, json=body or {}, headers={"Authorization": f"Bearer {self.token}"})
        answer.raise_for_status()
        return answer.json()

    def next_task(self, project: str) -> TaskView | None:
        data = self._call(f"/api/v1/projects/{project}/next")
        return None if data.get("task") is None else _task_from_json(data["task"])

    def submit(self, assignment_id: int, payload: dict[str, Any]) -> None:
        self._call(f"/api/v1/tasks/{assignment_id}/submit", {"answer": payload, "duration_ms": SIMULATED_DURATION_MS})

    def skip(self, assignment_id: int, reason: str) -> None:
        self._call(f"/api/v1/tasks/{assignment_id}/skip", {"reason": reason})


# ------------------------------------------------------------------ accounts


def ensure_account(
    store: FeedbackStore, name: str, role: str = "annotator", *, new_password: bool = False
) -> tuple[int, str | None]:
    """The account `name` (created with a random password if missing): (user id, password or None).

    The password is returned only when it was just set: at creation, or when `new_password` asks to
    replace the unknown password of an existing account by a new random one (e.g. to log in over HTTP).
    """
    try:
        user = store.user(name)
    except NotFound:
        password = random_password()
        return store.create_user(name, role, password).id, password
    if not new_password:
        return user.id, None
    password = random_password()
    store.set_password(user.id, password, by_user=user.id)
    return user.id, password


def panel_clients(
    store: FeedbackStore, panel: SimulatedPanel, *, transport: str = "store", http: Any = None
) -> dict[str, AnnotatorClient]:
    """One client per member (accounts created as needed). ``transport='rest'`` needs `http`."""
    if transport not in TRANSPORTS:
        raise ValueError(f"transport must be one of {', '.join(TRANSPORTS)}, got {transport!r}")
    if transport == "rest" and http is None:
        raise ValueError("transport='rest' needs an httpx.Client pointed at the app")
    clients: dict[str, AnnotatorClient] = {}
    for member in panel.members:
        user_id, password = ensure_account(store, member.name, new_password=transport == "rest")
        clients[member.name] = TRANSPORTS[transport](store, user_id, member.name, password, http)
    return clients


def _store_client(store: FeedbackStore, user_id: int, name: str, password: str | None, http: Any) -> AnnotatorClient:
    return StoreClient(store, user_id)


def _rest_client(store: FeedbackStore, user_id: int, name: str, password: str | None, http: Any) -> AnnotatorClient:
    return RestClient(http, name, password or "")


TRANSPORTS: dict[str, Callable[[FeedbackStore, int, str, str | None, Any], AnnotatorClient]] = {
    "store": _store_client,
    "rest": _rest_client,
}
"""Transport name -> client builder ``(store, user id, name, password, http) -> client``."""


# ------------------------------------------------------------------ the panel at work


@dataclass
class PanelRun:
    """What a panel session did."""

    submitted: int = 0
    """Answers stored."""
    skipped: int = 0
    """Tasks given back (slots left for people, or task types the panel cannot answer)."""
    per_member: dict[str, int] = field(default_factory=dict)
    """Answers per member."""


def run_panel(
    store: FeedbackStore,
    project: str,
    panel: SimulatedPanel,
    *,
    transport: str = "store",
    http: Any = None,
    max_panel_judgments: int = 0,
    seed: int = 0,
    on_answer: Callable[[], None] | None = None,
) -> PanelRun:
    """Let every member take and answer tasks in `project` until none of them gets one.

    Args:
        max_panel_judgments: if > 0, a member handed an item that already holds this many panel
            judgments gives it back (with `SKIP_REASON`), leaving the item's other slots to people.
        seed: seeds the order in which members take turns.
        on_answer: called after each stored answer (progress bars).
    """
    clients = panel_clients(store, panel, transport=transport, http=http)
    members = [m.name for m in panel.members]
    panel_counts: dict[int, int] = {}
    for judgment in store.judgments(project):  # a resumed session counts the panel's earlier answers too
        if judgment["annotator"] in members:
            panel_counts[judgment["item_id"]] = panel_counts.get(judgment["item_id"], 0) + 1
    run = PanelRun(per_member=dict.fromkeys(members, 0))
    active = list(members)
    rng = random.Random(seed)
    while active:
        rng.shuffle(active)
        for name in list(active):
            task = clients[name].next_task(project)
            if task is None:
                active.remove(name)
                continue
            answer = task_type(task.task_type).simulate
            full = max_panel_judgments > 0 and panel_counts.get(task.item_id, 0) >= max_panel_judgments
            if answer is None or full:
                reason = SKIP_REASON if full else f"simulated panel: cannot answer {task.task_type} tasks"
                clients[name].skip(task.assignment_id, reason)
                run.skipped += 1
                continue
            clients[name].submit(task.assignment_id, answer(panel, task, name))
            panel_counts[task.item_id] = panel_counts.get(task.item_id, 0) + 1
            run.submitted += 1
            run.per_member[name] += 1
            if on_answer is not None:
                on_answer()
    return run
