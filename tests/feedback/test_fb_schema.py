"""Schema: Alembic migrations match the models, SQLite settings, append-only audit log."""

from __future__ import annotations

from pathlib import Path

import pytest
from alembic.autogenerate import compare_metadata
from alembic.migration import MigrationContext
from sqlalchemy import text

from rlhfkit.feedback.db import Database, normalize_url, sqlite_path
from rlhfkit.feedback.tables import Base

PASSWORD = "correct horse battery"


def test_migrations_build_exactly_the_models(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    db.migrate()
    db.migrate()  # idempotent
    with db.engine.connect() as conn:
        assert compare_metadata(MigrationContext.configure(conn), Base.metadata) == []
        assert conn.execute(text("SELECT version_num FROM alembic_version")).scalar() == "0003_ai_accounts"
    db.dispose()


def test_sqlite_settings(tmp_path: Path) -> None:
    db = Database(f"sqlite:///{tmp_path / 'm.db'}")
    with db.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA journal_mode").scalar() == "wal"
        assert conn.exec_driver_sql("PRAGMA foreign_keys").scalar() == 1
        assert conn.exec_driver_sql("PRAGMA busy_timeout").scalar() == 30_000
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 2  # FULL
    db.dispose()
    fast = Database(f"sqlite:///{tmp_path / 'n.db'}?synchronous=normal")
    with fast.engine.connect() as conn:
        assert conn.exec_driver_sql("PRAGMA synchronous").scalar() == 1  # NORMAL
    fast.dispose()
    with pytest.raises(ValueError, match="synchronous"):
        Database(f"sqlite:///{tmp_path / 'o.db'}?synchronous=off")


def test_url_helpers(tmp_path: Path) -> None:
    assert normalize_url("postgresql://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("postgres://u@h/db") == "postgresql+psycopg://u@h/db"
    assert normalize_url("sqlite:///x.db") == "sqlite:///x.db"
    assert sqlite_path(f"sqlite:///{tmp_path}/a.db") == tmp_path / "a.db"
    assert sqlite_path("sqlite://") is None and sqlite_path("postgresql://h/db") is None


def test_audit_log_is_append_only_and_judgments_immutable(store, make_project) -> None:
    make_project()
    user = store.create_user("ann", "annotator", PASSWORD).id
    task = store.next_task("proj", user)
    store.submit(task.assignment_id, user, {"choice": task.responses[0].id})
    actions = [e["action"] for e in reversed(store.audit())]
    assert actions == ["create_project", "add_items", "create_user", "assign", "judgment"]
    for statement in (
        "UPDATE audit_events SET action = 'x'",
        "DELETE FROM audit_events",
        "UPDATE judgments SET payload = '{}'",
    ):
        with pytest.raises(Exception, match="append-only|immutable"), store.db.write() as s:
            s.execute(text(statement))
    assert len(store.audit()) == 5


def test_ai_accounts_migration_upgrades_a_0001_database(tmp_path: Path) -> None:
    """A database made before AI accounts keeps its users and gains the role and ai_verdicts."""
    from alembic import command
    from alembic.config import Config

    from rlhfkit.feedback.db import MIGRATIONS_DIR

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db._write_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_initial")
        conn.execute(
            text(
                "INSERT INTO users (name, role, password_hash, active, created_at) VALUES ('ann', 'annotator', 'h', 1, 0)"
            )
        )
    db.migrate()
    with db.engine.begin() as conn:
        conn.execute(
            text("INSERT INTO users (name, role, password_hash, active, created_at) VALUES ('bot', 'ai', 'h', 1, 0)")
        )
        assert [r[0] for r in conn.execute(text("SELECT name FROM users ORDER BY id"))] == ["ann", "bot"]
        assert conn.execute(text("SELECT COUNT(*) FROM ai_verdicts")).scalar() == 0
        with pytest.raises(Exception, match="ck_users_role|CHECK"):
            conn.execute(
                text(
                    "INSERT INTO users (name, role, password_hash, active, created_at) VALUES ('x', 'root', 'h', 1, 0)"
                )
            )
    db.dispose()


def test_reading_an_older_database_says_how_to_upgrade_it(tmp_path: Path) -> None:
    """Training from a database an older rlhfkit wrote fails with the remedy, not with an SQL error about a
    missing column (what `rlhfkit dpo --data sqlite:///old.db#p` printed before), and leaves it unchanged."""
    from alembic import command
    from alembic.config import Config

    from rlhfkit.config import ConfigError
    from rlhfkit.feedback.db import MIGRATIONS_DIR
    from rlhfkit.feedback.source import project_records

    url = f"sqlite:///{tmp_path / 'old.db'}"
    db = Database(url)
    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    with db._write_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_initial")
    with pytest.raises(ConfigError, match=r"schema 0001_initial, this rlhfkit reads schema 0003.*rlhfkit serve --db"):
        project_records(url, "p", "pairs")
    with db.engine.connect() as conn:
        assert MigrationContext.configure(conn).get_current_revision() == "0001_initial"  # not migrated
    db.migrate()
    with pytest.raises(Exception, match="no project named .p."):  # now current: the usual answer
        project_records(url, "p", "pairs")
    db.dispose()


def test_upgrading_a_0001_database_keeps_every_judgment(tmp_path: Path) -> None:
    """Batch migrations copy `projects` and `users` to new tables and drop the old ones; with foreign keys
    enforced the drop cascaded, and upgrading a first-wave database deleted its items, responses,
    assignments and judgments (found on a real demo database: 144 judgments -> 0)."""
    from alembic import command

    from rlhfkit.feedback.db import _alembic_config

    db = Database(f"sqlite:///{tmp_path / 'old.db'}")
    config = _alembic_config()
    with db._write_engine.begin() as conn:
        config.attributes["connection"] = conn
        command.upgrade(config, "0001_initial")
        for statement in (
            "INSERT INTO users (id, name, role, password_hash, active, created_at) VALUES (1, 'ann', 'annotator', 'h', 1, 0)",
            "INSERT INTO projects (id, name, title, guidelines, task_type, overlap, aspects, lock_ttl_s, gold_rate, "
            "created_at) VALUES (1, 'p', 'P', '', 'pairwise', 1, '[]', 60, 0.0, 0)",
            "INSERT INTO items (id, project_id, task_type, prompt, is_gold, required, done_count, complete, created_at) "
            "VALUES (1, 1, 'pairwise', '\"hi\"', 0, 1, 1, 1, 0)",
            "INSERT INTO responses (id, item_id, position, text) VALUES (1, 1, 0, 'a'), (2, 1, 1, 'b')",
            "INSERT INTO assignments (id, item_id, user_id, project_id, status, display_order, created_at, expires_at) "
            "VALUES (1, 1, 1, 1, 'submitted', '[0, 1]', 0, 60)",
            "INSERT INTO judgments (id, item_id, user_id, assignment_id, task_type, payload, display_order, created_at, "
            "source) VALUES (1, 1, 1, 1, 'pairwise', '{\"choice\": 0}', '[0, 1]', 1, 'web')",
        ):
            conn.execute(text(statement))
    db.migrate()
    with db.engine.connect() as conn:
        counts = [conn.execute(text(f"SELECT COUNT(*) FROM {t}")).scalar() for t in TABLES_WITH_ROWS]
        assert counts == [1, 1, 1, 2, 1, 1]
        assert conn.execute(text("PRAGMA foreign_keys")).scalar() == 1  # enforced again after the upgrade
    db.dispose()


TABLES_WITH_ROWS = ("users", "projects", "items", "responses", "assignments", "judgments")
