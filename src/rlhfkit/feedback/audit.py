"""The append-only audit log (the table rejects UPDATE and DELETE through triggers)."""

from __future__ import annotations

from typing import Any

from sqlalchemy import select
from sqlalchemy.orm import Session

from rlhfkit.feedback.tables import AuditEvent


def record_event(
    session: Session,
    now: float,
    user_id: int | None,
    action: str,
    *,
    project_id: int | None = None,
    item_id: int | None = None,
    detail: Any = None,
) -> None:
    """Append one event inside the caller's transaction, so it commits (or not) with the change."""
    session.add(
        AuditEvent(at=now, user_id=user_id, action=action, project_id=project_id, item_id=item_id, detail=detail)
    )


def list_events(session: Session, project_id: int | None = None, limit: int = 200) -> list[dict[str, Any]]:
    """Newest events first (optionally of one project)."""
    query = select(AuditEvent).order_by(AuditEvent.id.desc()).limit(limit)
    if project_id is not None:
        query = query.where(AuditEvent.project_id == project_id)
    return [
        {
            "id": e.id,
            "at": e.at,
            "user_id": e.user_id,
            "action": e.action,
            "project_id": e.project_id,
            "item_id": e.item_id,
            "detail": e.detail,
        }
        for e in session.scalars(query)
    ]
