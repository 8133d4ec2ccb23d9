"""Project membership: an admin decides which annotators work on a members-only project.

A project with ``members_only`` is invisible to every other annotator: it is missing from their
project list, and every request naming it answers exactly as for a project that does not exist
(404 "no project named ..."), so its name, progress and items are not revealed. Admins see every
project. Projects without ``members_only`` (the default) are open to every annotator.
"""

from __future__ import annotations

from typing import Any

from sqlalchemy import Connection, delete, select
from sqlalchemy.orm import Session

from rlhfkit.feedback.accounts import get_user, user_view
from rlhfkit.feedback.audit import record_event
from rlhfkit.feedback.entities import ProjectView, UserView
from rlhfkit.feedback.errors import Invalid, NotFound
from rlhfkit.feedback.projects import get_project
from rlhfkit.feedback.tables import ProjectMember, User

_MEMBERS, _USERS = ProjectMember.__table__, User.__table__


def _is_admin(conn: Connection, user_id: int) -> bool:
    return conn.execute(select(_USERS.c.role).where(_USERS.c.id == user_id)).scalar() == "admin"


def _member_projects(conn: Connection, user_id: int) -> set[int]:
    return set(conn.execute(select(_MEMBERS.c.project_id).where(_MEMBERS.c.user_id == user_id)).scalars())


def check_visible(conn: Connection, project: Any, user_id: int | None) -> None:
    """NotFound, worded as for an unknown project, unless `user_id` may see `project` (None: the
    store's own callers, such as scripts and exports, see everything)."""
    if user_id is None or not project.members_only or _is_admin(conn, user_id):
        return
    if project.id not in _member_projects(conn, user_id):
        raise NotFound(f"no project named {project.name!r}")


def visible(conn: Connection, projects: list[ProjectView], user_id: int | None) -> list[ProjectView]:
    """The projects `user_id` may see, in the given order."""
    if user_id is None or _is_admin(conn, user_id):
        return projects
    mine = _member_projects(conn, user_id)
    return [p for p in projects if not p.members_only or p.id in mine]


def _annotator(session: Session, user_id: int) -> User:
    user = get_user(session, user_id)
    if user.role != "annotator":
        raise Invalid(f"{user.name!r} is an admin: admins see every project already")
    return user


def set_member(session: Session, name: str, user_id: int, member: bool, now: float, by_user: int) -> None:
    """Make an annotator a member of the project, or not (both idempotent)."""
    project, user = get_project(session, name), _annotator(session, user_id)
    session.execute(
        delete(ProjectMember).where(ProjectMember.project_id == project.id, ProjectMember.user_id == user.id)
    )
    if member:
        session.add(ProjectMember(project_id=project.id, user_id=user.id))
    action = "add_member" if member else "remove_member"
    record_event(session, now, by_user, action, project_id=project.id, detail={"user": user.name})


def member_list(session: Session, name: str) -> list[UserView]:
    project = get_project(session, name)
    rows = session.scalars(
        select(User).join(ProjectMember, ProjectMember.user_id == User.id).where(ProjectMember.project_id == project.id)
    )
    return sorted((user_view(u) for u in rows), key=lambda u: u.name)
