"""RLAIF through the app: an AI judge labels a project's open items as a named AI account.

The judge works exactly as a person does: it asks the store for its next task (the app picks the
item, locks it, records a display order), answers in the task type's canonical payload and submits
it through `FeedbackStore.submit`, so quality control, the audit log and the export see its answers
like anyone's. What only a judge has, both orders and the flip, goes to ``ai_verdicts`` (for the
flip rate in QC) and to ``verdicts.jsonl`` in the run directory.

Pairwise and ranking questions are asked in both orders (`rlhfkit.judges.combine`), or with each
response scored alone (``judge.compare=scores``, no order to flip). A pairwise flip becomes a tie or
leaves the item unlabelled (given back with `FLIP_SKIP`), as ``judge.on_flip`` says. Answers are
cached in the run directory: a killed run re-asks nothing.
"""

from __future__ import annotations

import re
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from rlhfkit.config import require
from rlhfkit.data.records import prompt_text
from rlhfkit.feedback.commands import default_db_url
from rlhfkit.feedback.entities import TaskView
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.files import append_jsonl, cache_dir
from rlhfkit.judges import Asker, BudgetExhausted, JudgeSettings, Templates, build_asker, load_templates
from rlhfkit.judges.questions import Asking, compare_pair, compare_ranking, judge_rating
from rlhfkit.loop.panel_feedback import ensure_account

FLIP_SKIP = "AI judge: the two orders disagreed (left unlabelled)"
"""Why the judge gives back an item whose orders flipped under on_flip=unlabelled."""

UNREADABLE_SKIP = "AI judge: its answer named no option"
"""Why the judge gives back an item whose rating it could not read."""

VERDICTS_FILE = "verdicts.jsonl"
"""One line per answered task: item, payload, both orders, flip."""


@dataclass(frozen=True)
class JudgeCommandConfig(JudgeSettings):
    """`rlhfkit judge`: label a project's open items with an AI judge, as a named AI account."""

    db: str = field(default_factory=default_db_url)
    """Database URL of the feedback app (default: $RLHFKIT_DB or sqlite:///rlhfkit-feedback.db)."""
    project: str = ""
    """Project to label."""
    account: str = ""
    """Name of the judge's AI account ('' = 'ai-' and the judge's name)."""
    output: Path = Path("")
    """Run directory (answer cache, verdicts.jsonl); '' = the rlhfkit cache's judges/PROJECT/ACCOUNT."""
    limit: int = 0
    """Answer at most this many tasks (0 = every open one)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.project), "project is required")
        require(bool(self.db), "db is required (a database URL)")
        require(self.limit >= 0, "limit must be >= 0")

    def account_name(self) -> str:
        if self.account:
            return self.account
        base = self.model if self.is_url else Path(self.judge.rstrip("/")).name
        return ("ai-" + re.sub(r"[^A-Za-z0-9_.-]+", "-", base))[:64]

    def run_dir(self) -> Path:
        return (
            Path(self.output)
            if str(self.output) not in ("", ".")
            else cache_dir() / "judges" / self.project / self.account_name()
        )


@dataclass
class JudgeRun:
    """What a labelling session did."""

    submitted: int = 0
    """Answers stored."""
    unlabelled: int = 0
    """Items given back unlabelled: the orders flipped (on_flip=unlabelled), or a rating was unreadable."""
    unanswerable: int = 0
    """Tasks of a type the judge cannot answer (given back)."""
    flips: int = 0
    """Questions whose two orders disagreed."""
    questions: int = 0
    """Questions asked in both orders."""
    stopped: str = ""
    """Why the session stopped early ('' = no open task left)."""

    @property
    def flip_rate(self) -> float | None:
        return self.flips / self.questions if self.questions else None


Verdict = tuple[dict[str, Any] | None, bool | None, dict[str, Any]]
"""(payload or None = unlabelled, flipped or None = not a both-orders question, detail)."""


def _orders(how: Asking, flipped: bool) -> bool | None:
    """The flip of a both-orders question; None for scores (nothing was shown in two orders)."""
    return flipped if how.compare == "both_orders" else None


def _pairwise(asker: Asker, templates: Templates, task: TaskView, how: Asking, criterion: str) -> Verdict:
    first, second = sorted(task.responses, key=lambda r: r.id)  # canonical order; the judge asks both
    v = compare_pair(asker, templates, prompt_text(task.prompt), first.text, second.text, how, criterion)
    choice = {"first": first.id, "second": second.id, "tie": "tie", None: None}[v.label]
    detail = {"p_forward": v.p_forward, "p_reverse": v.p_reverse, "p_first": v.p_first}
    return (None if choice is None else {"choice": choice}), _orders(how, v.flipped), detail


def _ranking(asker: Asker, templates: Templates, task: TaskView, how: Asking, criterion: str) -> Verdict:
    shown = sorted(task.responses, key=lambda r: r.id)
    v = compare_ranking(asker, templates, prompt_text(task.prompt), [r.text for r in shown], how, criterion)
    payload = None if v.flipped and how.on_flip == "unlabelled" else {"ranking": [shown[i].id for i in v.order]}
    return payload, _orders(how, v.flipped), {"p_best": list(v.p_best)}


def _likert(asker: Asker, templates: Templates, task: TaskView, how: Asking, criterion: str) -> Verdict:
    text = prompt_text(task.prompt)
    ratings = {str(r.id): judge_rating(asker, templates, text, r.text, criterion) for r in task.responses}
    if any(v is None for v in ratings.values()):
        return None, None, {"ratings": ratings}  # unreadable: no made-up rating
    return {"ratings": {rid: {"overall": v} for rid, v in ratings.items()}}, None, {}


ANSWERERS: dict[str, Callable[[Asker, Templates, TaskView, Asking, str], Verdict]] = {
    "pairwise": _pairwise,
    "ranking": _ranking,
    "likert": _likert,
}
"""Task type -> ``fn(asker, templates, task, how, criterion)``: how the judge answers it (other task
types are given back)."""


def run_judge(
    store: FeedbackStore,
    project: str,
    asker: Asker,
    templates: Templates,
    *,
    account: str,
    how: Asking,
    run_dir: Path | None = None,
    limit: int = 0,
    criterion: str = "",
) -> JudgeRun:
    """Answer the AI account's open tasks in `project` until none is left (or `limit`, or the budget)."""
    user_id, _ = ensure_account(store, account, role="ai")
    if store.user(account).role != "ai":
        raise ValueError(f"account {account!r} exists and is not an AI account; name another (judge account=...)")
    run = JudgeRun()
    while not limit or run.submitted + run.unlabelled < limit:
        task = store.next_task(project, user_id)
        if task is None:
            break
        answer = ANSWERERS.get(task.task_type)
        if answer is None:
            store.skip(task.assignment_id, user_id, f"AI judge: cannot answer {task.task_type} tasks")
            run.unanswerable += 1
            continue
        started = time.monotonic()
        try:
            payload, flipped, detail = answer(asker, templates, task, how, criterion)
        except BudgetExhausted as err:
            run.stopped = str(err)  # the held task's lock expires; a later run (with a budget) picks it up
            break
        _record(store, run, task, user_id, payload, flipped, detail, started)
        if run_dir is not None:
            row = {"item_id": task.item_id, "payload": payload, "flipped": flipped, **detail}
            append_jsonl(Path(run_dir) / VERDICTS_FILE, [row])
    return run


def _record(
    store: FeedbackStore,
    run: JudgeRun,
    task: TaskView,
    user_id: int,
    payload: dict[str, Any] | None,
    flipped: bool | None,
    detail: dict[str, Any],
    started: float,
) -> None:
    if flipped is not None:
        store.record_ai_verdict(task.item_id, user_id, flipped=flipped, labelled=payload is not None, detail=detail)
        run.questions += 1
        run.flips += flipped
    if payload is None:
        store.skip(task.assignment_id, user_id, FLIP_SKIP if flipped else UNREADABLE_SKIP)
        run.unlabelled += 1
        return
    duration_ms = int(1000 * (time.monotonic() - started))
    store.submit(task.assignment_id, user_id, payload, duration_ms=duration_ms, source="api")
    run.submitted += 1


def judge_command(cfg: JudgeCommandConfig) -> str:
    """`rlhfkit judge`: label the project's open items; prints what was done and the flip rate."""
    run_dir = cfg.run_dir()
    asker = build_asker(cfg, run_dir)
    store = FeedbackStore(cfg.db)
    try:
        run = run_judge(
            store,
            cfg.project,
            asker,
            load_templates(cfg.templates),
            account=cfg.account_name(),
            how=cfg.asking(),
            run_dir=run_dir,
            limit=cfg.limit,
            criterion=cfg.criterion,
        )
    finally:
        store.close()
    rate = f"{100 * run.flip_rate:.1f}%" if run.flip_rate is not None else f"n/a (compare={cfg.compare})"
    lines = [
        f"{cfg.account_name()} on {cfg.project!r}: {run.submitted} judgments, {run.unlabelled} left unlabelled "
        f"(orders flipped), {run.unanswerable} given back; flip rate {rate} of {run.questions} questions",
        f"requests {asker.requests}, cached answers {asker.hits}, unreadable {asker.unreadable}; run dir {run_dir}",
    ]
    if run.stopped:
        lines.append(f"stopped early: {run.stopped}")
    return "\n".join(lines)
