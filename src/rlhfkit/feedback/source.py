"""The feedback app as a source of training records (``--data DBURL#PROJECT``).

Registered in ``pyproject.toml`` as the entry point ``feedback`` of the group
``rlhfkit.record_sources``; `rlhfkit.data.projects.read_project_records` finds it there, so the data
layer reads projects without importing the app.
"""

from __future__ import annotations

from rlhfkit.data.errors import DataError
from rlhfkit.data.projects import Aggregation, redact_url
from rlhfkit.data.records import Comparison, Record, RecordKind
from rlhfkit.feedback.export import JudgmentRow
from rlhfkit.feedback.store import FeedbackStore


def project_records(url: str, project: str, kind: RecordKind, aggregate: Aggregation = "majority") -> list[Record]:
    """Records of a project in the feedback database, exactly as ``rlhfkit export`` would write them.

    Example: ``project_records("sqlite:///feedback.db", "helpful-v1", "pairs")``. ``aggregate``:
    ``majority`` (default), ``bradley-terry`` or ``raw`` (one record per judgment). The schema is
    not migrated: reading training data never changes the database.
    """
    store = FeedbackStore(url, migrate=False)
    try:
        records = [row.record for row in store.export_rows(project, kind, aggregate)]
    finally:
        store.close()
    if kind == "pairs" and records and all(isinstance(r, Comparison) and r.tie for r in records):
        raise DataError(
            f"{redact_url(url)}#{project}",
            0,
            "tie",
            f"every one of the project's {len(records)} pairs is a tie ({aggregate}): ties name no better "
            "response, so there is nothing to learn (split votes tie under bradley-terry: try DBURL#PROJECT?aggregate=raw)",
            reason="all ties",
        )
    return [r for r in records if not isinstance(r, JudgmentRow)]
