"""Alembic environment: runs online against the connection `Database.migrate` passes in."""

from __future__ import annotations

from alembic import context

from rlhfkit.feedback.tables import Base

connection = context.config.attributes["connection"]
context.configure(
    connection=connection,
    target_metadata=Base.metadata,
    # SQLite cannot ALTER most things in place; batch mode rebuilds tables instead.
    render_as_batch=connection.dialect.name == "sqlite",
)
with context.begin_transaction():
    context.run_migrations()
