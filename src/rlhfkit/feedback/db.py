"""Database engines, transactions and migrations for the feedback app.

Two backends, one code path:

* SQLite (the zero-setup default): WAL journal so page reads never wait for a writer, a busy
  timeout so a second process waits instead of failing, foreign keys on, and ``synchronous=FULL``
  (an fsync per commit) so that an acknowledged judgment survives not only ``kill -9`` but a
  power cut. ``sqlite:///f.db?synchronous=normal`` trades that last guarantee for speed: in WAL
  mode a committed transaction still survives any crash of the server process, but the last
  commits before an OS crash or power cut may roll back (never corrupting the file). Every write
  transaction starts with ``BEGIN IMMEDIATE``: SQLite then admits exactly one writer at a time, which
  makes the read-check-insert of assignment atomic. Inside one process a lock serializes writers
  *before* they reach SQLite, because SQLite's own busy handler sleeps in growing steps (up to
  100 ms) and would dominate the tail latency under concurrent annotators.
* PostgreSQL (``postgresql://...``, driver psycopg 3): ordinary READ COMMITTED transactions; the
  assignment code takes row locks (``SELECT ... FOR UPDATE [SKIP LOCKED]``) on the item it touches.

Migrations are Alembic scripts shipped in ``feedback/migrations`` and applied programmatically by
`Database.migrate` (no ``alembic.ini`` needed).
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

from sqlalchemy import Connection, Engine, create_engine, event, text
from sqlalchemy.engine import make_url
from sqlalchemy.orm import Session, sessionmaker

MIGRATIONS_DIR = Path(__file__).parent / "migrations"
"""The Alembic script directory shipped inside the package."""

SQLITE_BUSY_TIMEOUT_MS = 30_000
"""How long a writer from another process waits for SQLite's write lock before giving up."""

_WRITE_OPTION = "rlhfkit_write"


def normalize_url(url: str) -> str:
    """Map the URLs people type to the drivers we ship: ``postgresql://`` uses psycopg 3."""
    for prefix in ("postgresql://", "postgres://"):
        if url.startswith(prefix):
            return "postgresql+psycopg://" + url[len(prefix) :]
    return url


SQLITE_SYNCHRONOUS = ("full", "normal")
"""Accepted values of the ``?synchronous=`` option of SQLite URLs (default full)."""


def _sqlite_engine(url: str) -> Engine:
    parsed = make_url(url)
    synchronous = parsed.query.get("synchronous", "full")
    if synchronous not in SQLITE_SYNCHRONOUS:
        raise ValueError(f"synchronous must be one of {SQLITE_SYNCHRONOUS}, got {synchronous!r}")
    engine = create_engine(
        parsed.difference_update_query(["synchronous"]),
        connect_args={"check_same_thread": False, "timeout": SQLITE_BUSY_TIMEOUT_MS / 1000},
        pool_size=16,
        max_overflow=32,
    )

    @event.listens_for(engine, "connect")
    def _on_connect(dbapi_connection: Any, _record: Any) -> None:
        # Take BEGIN away from pysqlite so that we can choose DEFERRED or IMMEDIATE ourselves.
        dbapi_connection.isolation_level = None
        cursor = dbapi_connection.cursor()
        cursor.execute("PRAGMA journal_mode=WAL")
        cursor.execute(f"PRAGMA busy_timeout={SQLITE_BUSY_TIMEOUT_MS}")
        cursor.execute("PRAGMA foreign_keys=ON")
        cursor.execute(f"PRAGMA synchronous={synchronous.upper()}")
        cursor.close()

    @event.listens_for(engine, "begin")
    def _on_begin(conn: Any) -> None:
        immediate = conn.get_execution_options().get(_WRITE_OPTION, False)
        conn.exec_driver_sql("BEGIN IMMEDIATE" if immediate else "BEGIN")

    return engine


def _postgres_engine(url: str) -> Engine:
    return create_engine(url, pool_size=20, max_overflow=30, pool_pre_ping=True)


def _generic_engine(url: str) -> Engine:
    return create_engine(url)


ENGINE_FACTORIES = {"sqlite": _sqlite_engine, "postgresql": _postgres_engine}
"""Backend name -> engine factory; other SQLAlchemy backends get a plain engine."""


class Database:
    """An engine plus the two kinds of transactions the app uses (read and write)."""

    def __init__(self, url: str) -> None:
        self.url = normalize_url(url)
        self.backend = make_url(self.url).get_backend_name()
        factory = ENGINE_FACTORIES.get(self.backend, _generic_engine)
        self.engine = factory(self.url)
        self._write_engine = self.engine.execution_options(**{_WRITE_OPTION: True})
        self._reads = sessionmaker(self.engine, expire_on_commit=False)
        self._writes = sessionmaker(self._write_engine, expire_on_commit=False)
        # SQLite admits one writer; queueing them here is fair and sleep-free (see module doc).
        self._write_lock: threading.Lock | None = threading.Lock() if self.backend == "sqlite" else None

    @property
    def is_sqlite(self) -> bool:
        return self.backend == "sqlite"

    @contextmanager
    def read(self) -> Iterator[Session]:
        """A read-only session (the transaction is rolled back at the end)."""
        with self._reads() as session:
            yield session

    @contextmanager
    def write(self) -> Iterator[Session]:
        """One write transaction: commits when the block ends, rolls back on any exception."""
        if self._write_lock is None:
            with self._writes() as session, session.begin():
                yield session
            return
        with self._write_lock, self._writes() as session, session.begin():
            yield session

    @contextmanager
    def read_conn(self) -> Iterator[Connection]:
        """A Core connection for hot read paths (no ORM session bookkeeping)."""
        with self.engine.connect() as conn:
            yield conn

    @contextmanager
    def write_conn(self) -> Iterator[Connection]:
        """`write` for Core-only hot paths: same locking and transaction, no ORM session."""
        if self._write_lock is None:
            with self._write_engine.begin() as conn:
                yield conn
            return
        with self._write_lock, self._write_engine.begin() as conn:
            yield conn

    def migrate(self) -> None:
        """Bring the schema to the newest migration (idempotent; safe with concurrent starters)."""
        with _quiet_alembic():
            self._upgrade()

    def require_current_schema(self) -> None:
        """Refuse, with the remedy, a database whose schema is older (or newer) than this rlhfkit's, for
        readers that must not migrate it (reading training data never changes the database); without
        this check the first query fails with an SQL error about a missing column."""
        from alembic.runtime.migration import MigrationContext
        from alembic.script import ScriptDirectory

        from rlhfkit.config import ConfigError
        from rlhfkit.data.projects import redact_url

        head = ScriptDirectory.from_config(_alembic_config()).get_current_head()
        with _quiet_alembic(), self.engine.connect() as conn:
            current = MigrationContext.configure(conn).get_current_revision()
        if current != head:
            where = redact_url(self.url)
            raise ConfigError(
                f"the feedback database {where} has schema {current or 'none (no rlhfkit tables)'}, this rlhfkit "
                f"reads schema {head}: start `rlhfkit serve --db {where}` once, which upgrades it (reading "
                "training data never changes the database), or use the rlhfkit that wrote it"
            )

    def _upgrade(self) -> None:
        from alembic import command

        config = _alembic_config()
        if self.is_sqlite:
            self._upgrade_sqlite(config)
            return
        with self._write_engine.begin() as connection:
            if self.backend == "postgresql":
                # Two servers starting at once must not both run the DDL.
                connection.execute(text("SELECT pg_advisory_xact_lock(7207411)"))
            config.attributes["connection"] = connection
            command.upgrade(config, "head")

    def _upgrade_sqlite(self, config: Any) -> None:
        """SQLite cannot alter most columns in place, so Alembic's batch mode copies a table to a new one
        and drops the old. With foreign keys enforced, dropping `projects` or `users` cascades: an upgrade
        from 0001 deleted every item, response, assignment and judgment of the database. Foreign keys are
        off while migrating (SQLite ignores the pragma inside a transaction, hence on the raw connection
        before BEGIN), then checked: a violation rolls the whole upgrade back."""
        from alembic import command

        with self._write_engine.connect() as connection:
            raw = connection.connection.dbapi_connection
            assert raw is not None  # a live pooled connection
            raw.execute("PRAGMA foreign_keys=OFF")
            try:
                with connection.begin():
                    config.attributes["connection"] = connection
                    command.upgrade(config, "head")
                    broken = connection.exec_driver_sql("PRAGMA foreign_key_check").fetchall()
                    if broken:
                        raise RuntimeError(f"the migration left rows that break foreign keys: {broken[:5]}")
            finally:
                raw.execute("PRAGMA foreign_keys=ON")

    def dispose(self) -> None:
        self.engine.dispose()


def sqlite_path(url: str) -> Path | None:
    """The file behind a SQLite URL (None for other backends or in-memory SQLite)."""
    parsed = make_url(normalize_url(url))
    if parsed.get_backend_name() != "sqlite" or not parsed.database:
        return None
    if parsed.database == ":memory:":
        return None
    return Path(parsed.database)


def _alembic_config() -> Any:
    """Alembic's configuration for rlhfkit's migrations (no ``alembic.ini``)."""
    from alembic.config import Config

    config = Config()
    config.set_main_option("script_location", str(MIGRATIONS_DIR))
    return config


@contextmanager
def _quiet_alembic() -> Iterator[None]:
    """Alembic narrates every step at INFO (on import, too); starting a server, creating a user or
    reading training data should stay quiet."""
    alembic_log = logging.getLogger("alembic")
    previous = alembic_log.level
    alembic_log.setLevel(max(previous, logging.WARNING))
    try:
        yield
    finally:
        alembic_log.setLevel(previous)
