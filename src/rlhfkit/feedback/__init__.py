"""The human-feedback web app: collect judgments from people (and AI judges) for reward models and DPO.

Run it::

    rlhfkit admin create-user alice --role admin          # the first admin (password prompted)
    rlhfkit serve [--db URL] [--host 127.0.0.1] [--port 8000]
    rlhfkit export --db URL --project NAME --format pairs|rankings|ratings|demos --output FILE

Storage is SQLite by default (WAL, one file, zero setup) or PostgreSQL by URL
(``postgresql://user:pass@host/db``); Alembic migrations run at startup.

Two equivalent ways to drive it -- a simulated-annotator panel or an AI judge can use either,
and every answer is validated, deduplicated and audited exactly as a person's:

1. **REST API** (``/api/v1``, OpenAPI at ``/openapi.json``, a reference page at ``/docs`` with ``rlhfkit serve --docs``)::

       POST /api/v1/auth/login                {"name", "password"}        -> {"token"}
       POST /api/v1/projects/NAME/next        (Authorization: Bearer TOKEN) -> {"task", "remaining"}
       POST /api/v1/tasks/ASSIGNMENT/submit   {"answer": {...}, "duration_ms"?} -> {"judgment_id", "duplicate"}
       POST /api/v1/tasks/ASSIGNMENT/skip     {"reason"}

   ``task`` lists its responses (``id``, display ``label``, ``text``) in this annotator's random
   order; answers name responses by ``id`` (see `rlhfkit.feedback.tasks` for each task
   type's answer). When ``task`` is null and ``remaining`` > 0, items are locked by others and
   may come back: poll again. Admin endpoints create projects, users, items (JSON or a JSONL
   upload), generation jobs, and serve QC reports and exports.

2. **Python store** (`rlhfkit.feedback.store.FeedbackStore`), the service layer the web routes
   call; in-process, no HTTP::

       store = FeedbackStore("sqlite:///feedback.db")
       store.create_project(ProjectSpec(name="p", task_type="pairwise", overlap=3))
       store.add_items("p", [NewItem(prompt="...", responses=("...", "..."))])
       judge = store.create_user("judge-1", "annotator", "a long password")
       task = store.next_task("p", judge.id)          # TaskView | None
       store.submit(task.assignment_id, judge.id, {"choice": task.responses[0].id})
       store.qc_report("p"); store.export_rows("p", "pairs", "majority")

Training commands read a project straight from the database (``--data sqlite:///feedback.db#p``)
through `rlhfkit.data.projects.read_project_records`, which finds `rlhfkit.feedback.source` by its
entry point. Storage is `rlhfkit.feedback.tables` (SQLAlchemy), read into the frozen dataclasses of
`rlhfkit.feedback.entities`.
"""
