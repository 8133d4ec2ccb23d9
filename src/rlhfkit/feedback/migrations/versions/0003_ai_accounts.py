"""AI accounts: the ``ai`` role (an AI judge that submits judgments and cannot log in) and ``ai_verdicts``.

Revision ID: 0003_ai_accounts
Revises: 0002_hardening
Create Date: 2026-12-07
"""

from __future__ import annotations

import sqlalchemy as sa
from alembic import op

revision = "0003_ai_accounts"
down_revision = "0002_hardening"
branch_labels = None
depends_on = None


def _role_check(roles: str) -> None:
    # SQLite cannot alter a CHECK constraint in place: batch mode rebuilds the table.
    with op.batch_alter_table("users", recreate="auto") as batch:
        batch.drop_constraint("ck_users_role", type_="check")
        batch.create_check_constraint("ck_users_role", f"role IN ({roles})")


def upgrade() -> None:
    _role_check("'admin', 'annotator', 'ai'")
    op.create_table(
        "ai_verdicts",
        sa.Column("id", sa.Integer(), primary_key=True),
        sa.Column("project_id", sa.Integer(), sa.ForeignKey("projects.id", ondelete="CASCADE"), nullable=False),
        sa.Column("item_id", sa.Integer(), sa.ForeignKey("items.id", ondelete="CASCADE"), nullable=False),
        sa.Column("user_id", sa.Integer(), sa.ForeignKey("users.id", ondelete="CASCADE"), nullable=False),
        sa.Column("flipped", sa.Boolean(), nullable=False),
        sa.Column("labelled", sa.Boolean(), nullable=False),
        sa.Column("detail", sa.JSON(), nullable=True),
        sa.Column("created_at", sa.Float(), nullable=False),
        sa.UniqueConstraint("item_id", "user_id", name="uq_ai_verdicts_item_user"),
    )
    op.create_index("ix_ai_verdicts_project_id", "ai_verdicts", ["project_id"])


def downgrade() -> None:
    op.drop_index("ix_ai_verdicts_project_id", "ai_verdicts")
    op.drop_table("ai_verdicts")
    op.execute("DELETE FROM users WHERE role = 'ai'")
    _role_check("'admin', 'annotator'")
