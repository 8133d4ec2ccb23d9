"""What the feedback app's commands do: ``rlhfkit serve``, ``rlhfkit admin create-user``, ``rlhfkit export``.

Each command has a typed config beside the function it configures; `rlhfkit.cli` parses the command
line into it. The database URL defaults to ``$RLHFKIT_DB`` or ``sqlite:///rlhfkit-feedback.db`` in the
current directory. There is no default password anywhere, and none in a config: ``create-user`` asks
for one (twice) on a terminal, or reads the first line of stdin when it is piped.

This module imports only the feedback package, and its heavy parts (the store, uvicorn) only inside
the functions, so that building a command's parser stays fast.
"""

from __future__ import annotations

import getpass
import os
import sys
from dataclasses import dataclass, field
from typing import Any, Literal, TextIO

from rlhfkit.config import Config, require
from rlhfkit.feedback.errors import Invalid

DEFAULT_DB_URL = "sqlite:///rlhfkit-feedback.db"
"""Database used when neither --db nor $RLHFKIT_DB is given."""

ExportFormat = Literal["pairs", "rankings", "ratings", "demos"]
"""Record kinds a project exports (`rlhfkit.feedback.export.EXPORT_KINDS`)."""

Aggregation = Literal["majority", "bradley-terry", "raw"]
"""Per-item aggregations of an export (`rlhfkit.feedback.export.AGGREGATIONS`)."""

Container = Literal["hf", "jsonl"]
"""Output containers of an export (the keys of `rlhfkit.feedback.export.WRITERS`)."""


def default_db_url() -> str:
    """``$RLHFKIT_DB``, else the SQLite file in the current directory; read when a config is built."""
    return os.environ.get("RLHFKIT_DB") or DEFAULT_DB_URL


@dataclass(frozen=True)
class ServeConfig(Config):
    """`rlhfkit serve`: run the human-feedback web app."""

    db: str = field(default_factory=default_db_url)
    """Database URL (default: $RLHFKIT_DB or sqlite:///rlhfkit-feedback.db)."""
    host: str = "127.0.0.1"
    """Interface to listen on."""
    port: int = 8000
    """Port to listen on."""
    workers: int = 1
    """Server processes sharing the port (uvicorn workers; one that dies is replaced). More than 1
    needs PostgreSQL: items are handed out under its row locks, and SQLite admits one writer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.db), "db is required (a database URL)")
        require(bool(self.host), "host is required")
        require(0 < self.port < 65536, f"port must be in 1..65535, got {self.port}")
        require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        require(
            self.workers == 1 or self.db.startswith(("postgresql", "postgres:")),
            f"workers={self.workers} needs a PostgreSQL database (SQLite admits one writer); got {self.db.split(':')[0]}",
        )


def serve(cfg: ServeConfig) -> None:
    """Migrate the database and serve the app with uvicorn until interrupted."""
    import uvicorn

    from rlhfkit.feedback.web.app import create_app

    # Hand the GIL over every 0.5 ms instead of 5 ms: the event loop otherwise waits behind
    # database threads for whole switch intervals, which dominates tail latency.
    sys.setswitchinterval(0.0005)
    if cfg.workers > 1:
        # Each worker process builds its own app (its own connection pool) from the URL in the
        # environment; the migration runs once, here, before any of them starts.
        from rlhfkit.feedback.db import Database

        database = Database(cfg.db)
        database.migrate()
        database.dispose()
        os.environ[WORKER_DB_ENV] = cfg.db
        print(f"rlhfkit feedback on http://{cfg.host}:{cfg.port}  ({cfg.workers} workers)", flush=True)
        uvicorn.run(
            f"{__name__}:worker_app",
            factory=True,
            workers=cfg.workers,
            host=cfg.host,
            port=cfg.port,
            log_level="info",
            access_log=False,
        )
        return
    app = create_app(cfg.db)
    print(f"rlhfkit feedback on http://{cfg.host}:{cfg.port}  (database {cfg.db})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False)


WORKER_DB_ENV = "RLHFKIT_SERVE_WORKER_DB"
"""How `serve --workers N` hands the database URL to its worker processes (never printed)."""


def worker_app() -> Any:
    """The app of one `serve --workers N` process (uvicorn calls this factory in each worker)."""
    from rlhfkit.feedback.web.app import create_app

    sys.setswitchinterval(0.0005)
    return create_app(os.environ[WORKER_DB_ENV])


@dataclass(frozen=True)
class CreateUserConfig(Config):
    """`rlhfkit admin create-user NAME`: create an account; the password comes from a prompt or stdin."""

    name: str = ""
    """Login name."""
    role: Literal["admin", "annotator"] | None = None
    """What the account may do: 'admin' (projects, users, exports) or 'annotator' (judging)."""
    db: str = field(default_factory=default_db_url)
    """Database URL (default: $RLHFKIT_DB or sqlite:///rlhfkit-feedback.db)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.name), "name is required (a login name)")
        require(self.role is not None, "role is required: admin or annotator")
        require(bool(self.db), "db is required (a database URL)")


def create_user(db_url: str, name: str, role: str, password: str) -> None:
    """Create an account (migrating the database first if needed)."""
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(db_url)
    try:
        store.create_user(name, role, password)
    finally:
        store.close()


def create_user_command(cfg: CreateUserConfig) -> str:
    """Read the password (never a config value, so it stays out of files and logs), create the account."""
    assert cfg.role is not None  # __post_init__ requires it
    create_user(cfg.db, cfg.name, cfg.role, read_password())
    return f"created {cfg.role} {cfg.name!r} in {cfg.db}"


def read_password(stdin: TextIO | None = None) -> str:
    """Ask twice on a terminal; otherwise take the first line of stdin (without its newline)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise Invalid("the passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


@dataclass(frozen=True)
class ExportConfig(Config):
    """`rlhfkit export`: write a feedback project's judgments as training records."""

    project: str = ""
    """Project name."""
    format: ExportFormat | None = None
    """Record kind to export: pairs, rankings, ratings or demos."""
    output: str = ""
    """FILE.jsonl (or .json), or a directory for a Hugging Face dataset."""
    aggregate: Aggregation = "majority"
    """Per-item aggregation; 'raw' writes one record per judgment with an "annotator" key."""
    raw: bool = False
    """Same as aggregate=raw."""
    container: Container | None = None
    """Output container (--as): 'jsonl' or 'hf'; null picks it from the output's name."""
    db: str = field(default_factory=default_db_url)
    """Database URL (default: $RLHFKIT_DB or sqlite:///rlhfkit-feedback.db)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.project), "project is required (a project name)")
        require(self.format is not None, "format is required: pairs, rankings, ratings or demos")
        require(bool(self.output), "output is required (FILE.jsonl or a dataset directory)")
        require(bool(self.db), "db is required (a database URL)")


def export_project(
    db_url: str,
    project: str,
    fmt: str,
    output: str,
    aggregate: str = "majority",
    raw: bool = False,
    container: str | None = None,
) -> int:
    """Write a project's records to `output` (JSONL for .jsonl/.json, else a HF dataset dir).

    Returns the number of records written. ``raw=True`` (or ``aggregate="raw"``) writes one
    record per judgment with an ``"annotator"`` key.
    """
    from rlhfkit.feedback.export import WRITERS, container_for
    from rlhfkit.feedback.store import FeedbackStore

    aggregate = "raw" if raw else aggregate
    container = container or container_for(output)
    if container not in WRITERS:
        raise Invalid(f"output container must be one of {sorted(WRITERS)}")
    store = FeedbackStore(db_url, migrate=False)
    try:
        rows = [r.to_json() for r in store.export_rows(project, fmt, aggregate)]  # type: ignore[arg-type]
        count = WRITERS[container](rows, output)
        store.record_export(project, fmt, aggregate, count, None)
        return count
    finally:
        store.close()


def export_command(cfg: ExportConfig) -> str:
    """`export_project` with the command's config; returns the line the command prints."""
    assert cfg.format is not None  # __post_init__ requires it
    count = export_project(
        cfg.db, cfg.project, cfg.format, cfg.output, aggregate=cfg.aggregate, raw=cfg.raw, container=cfg.container
    )
    return f"wrote {count} {cfg.format} records to {cfg.output}"
