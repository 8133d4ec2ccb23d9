"""Initial schema: users, sessions, projects, items, responses, assignments, judgments, audit, jobs.

Revision ID: 0001_initial
Revises:
Create Date: 2025-01-01
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0001_initial"
down_revision = None
branch_labels = None
depends_on = None

_SQLITE_TRIGGERS = [
    "CREATE TRIGGER audit_events_no_update BEFORE UPDATE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER audit_events_no_delete BEFORE DELETE ON audit_events "
    "BEGIN SELECT RAISE(ABORT, 'audit_events is append-only'); END",
    "CREATE TRIGGER judgments_no_update BEFORE UPDATE ON judgments "
    "BEGIN SELECT RAISE(ABORT, 'judgments are immutable'); END",
]
_POSTGRES_TRIGGERS = [
    "CREATE OR REPLACE FUNCTION rlhfkit_append_only() RETURNS trigger AS $$ "
    "BEGIN RAISE EXCEPTION '% is append-only', TG_TABLE_NAME; END $$ LANGUAGE plpgsql",
    "CREATE TRIGGER audit_events_append_only BEFORE UPDATE OR DELETE ON audit_events "
    "FOR EACH ROW EXECUTE FUNCTION rlhfkit_append_only()",
    "CREATE TRIGGER judgments_immutable BEFORE UPDATE ON judgments FOR EACH ROW EXECUTE FUNCTION rlhfkit_append_only()",
]
TRIGGERS = {"sqlite": _SQLITE_TRIGGERS, "postgresql": _POSTGRES_TRIGGERS}
"""Dialect -> statements that make the audit log append-only and judgments immutable."""


def _now_col(name: str, nullable: bool = False) -> sa.Column:
    return sa.Column(name, sa.Float(), nullable=nullable)


def upgrade() -> None:
    op.create_table(
        "users",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("role", sa.String(16), nullable=False),
        sa.Column("password_hash", sa.String(255), nullable=False),
        sa.Column("active", sa.Boolean(), nullable=False),
        _now_col("created_at"),
        sa.CheckConstraint("role IN ('admin', 'annotator')", name="ck_users_role"),
    )
    op.create_table(
        "sessions",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("token_hash", sa.String(64), nullable=False, unique=True),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(8), nullable=False),
        sa.Column("csrf_token", sa.String(64), nullable=False),
        _now_col("created_at"),
        _now_col("expires_at"),
    )
    op.create_index("ix_sessions_user_id", "sessions", ["user_id"])
    op.create_table(
        "projects",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("name", sa.String(64), nullable=False, unique=True),
        sa.Column("title", sa.String(200), nullable=False),
        sa.Column("guidelines", sa.Text(), nullable=False),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("overlap", sa.Integer(), nullable=False),
        sa.Column("aspects", sa.JSON(), nullable=False),
        sa.Column("lock_ttl_s", sa.Integer(), nullable=False),
        sa.Column("gold_rate", sa.Float(), nullable=False),
        _now_col("created_at"),
    )
    op.create_table(
        "items",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("prompt", sa.JSON(), nullable=False),
        sa.Column("external_id", sa.String(200), nullable=True),
        sa.Column("is_gold", sa.Boolean(), nullable=False),
        sa.Column("gold_answer", sa.JSON(), nullable=True),
        sa.Column("required", sa.Integer(), nullable=False),
        sa.Column("done_count", sa.Integer(), nullable=False),
        sa.Column("complete", sa.Boolean(), nullable=False),
        _now_col("created_at"),
        sa.UniqueConstraint("project_id", "external_id", name="uq_items_project_external"),
    )
    op.create_index("ix_items_open", "items", ["project_id", "is_gold", "complete", "id"])
    op.create_table(
        "responses",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("position", sa.Integer(), nullable=False),
        sa.Column("text", sa.Text(), nullable=False),
        sa.Column("model", sa.String(200), nullable=True),
        sa.UniqueConstraint("item_id", "position", name="uq_responses_item_position"),
    )
    op.create_table(
        "assignments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("display_order", sa.JSON(), nullable=False),
        _now_col("created_at"),
        _now_col("expires_at"),
        sa.Column("skip_reason", sa.Text(), nullable=True),
        sa.UniqueConstraint("item_id", "user_id", name="uq_assignments_item_user"),
    )
    op.create_index("ix_assignments_lock", "assignments", ["item_id", "status", "expires_at"])
    op.create_index("ix_assignments_user", "assignments", ["user_id", "status"])
    op.create_table(
        "judgments",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("assignment_id", sa.Integer(), sa.ForeignKey("assignments.id"), nullable=False, unique=True),
        sa.Column("task_type", sa.String(16), nullable=False),
        sa.Column("payload", sa.JSON(), nullable=False),
        sa.Column("display_order", sa.JSON(), nullable=False),
        _now_col("created_at"),
        sa.Column("duration_ms", sa.Integer(), nullable=True),
        sa.Column("source", sa.String(8), nullable=False),
        sa.UniqueConstraint("item_id", "user_id", name="uq_judgments_item_user"),
    )
    op.create_index("ix_judgments_item_id", "judgments", ["item_id"])
    op.create_index("ix_judgments_user_id", "judgments", ["user_id"])
    op.create_table(
        "audit_events",
        sa.Column("id", sa.Integer(), primary_key=True),
        _now_col("at"),
        sa.Column("user_id", sa.Integer(), nullable=True),
        sa.Column("action", sa.String(32), nullable=False),
        sa.Column("project_id", sa.Integer(), nullable=True),
        sa.Column("item_id", sa.Integer(), nullable=True),
        sa.Column("detail", sa.JSON(), nullable=True),
    )
    op.create_index("ix_audit_events_project_id", "audit_events", ["project_id"])
    op.create_table(
        "jobs",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("kind", sa.String(16), nullable=False),
        sa.Column("status", sa.String(12), nullable=False),
        sa.Column("total", sa.Integer(), nullable=False),
        sa.Column("done", sa.Integer(), nullable=False),
        sa.Column("params", sa.JSON(), nullable=False),
        sa.Column("error", sa.Text(), nullable=True),
        _now_col("created_at"),
        _now_col("finished_at", nullable=True),
    )
    for statement in TRIGGERS.get(op.get_bind().dialect.name, []):
        op.execute(statement)


def downgrade() -> None:
    for table in (
        "jobs",
        "audit_events",
        "judgments",
        "assignments",
        "responses",
        "items",
        "projects",
        "sessions",
        "users",
    ):
        op.drop_table(table)
    if op.get_bind().dialect.name == "postgresql":
        op.execute("DROP FUNCTION IF EXISTS rlhfkit_append_only()")
