"""Alembic migration scripts of the feedback app (applied by `rlhfkit.feedback.db.Database.migrate`)."""
