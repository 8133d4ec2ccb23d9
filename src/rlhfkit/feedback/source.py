"""The feedback app as a source of training records (``--data DBURL#PROJECT``).

Registered in ``pyproject.toml`` as the entry point ``feedback`` of the group
``rlhfkit.record_sources``; `rlhfkit.data.projects.read_project_records` finds it there, so the data
layer reads projects without importing the app.
"""

from __future__ import annotations

from rlhfkit.data.projects import Aggregation
from rlhfkit.data.records import Record, RecordKind
from rlhfkit.feedback.store import FeedbackStore


def project_records(url: str, project: str, kind: RecordKind, aggregate: Aggregation = "majority") -> list[Record]:
    """Records of a project in the feedback database, exactly as ``rlhfkit export`` would write them.

    Example: ``project_records("sqlite:///feedback.db", "helpful-v1", "pairs")``. ``aggregate``:
    ``majority`` (default), ``bradley-terry`` or ``raw`` (one record per judgment). The schema is
    not migrated: reading training data never changes the database.
    """
    store = FeedbackStore(url, migrate=False)
    try:
        return [row.record for row in store.export_rows(project, kind, aggregate)]
    finally:
        store.close()
