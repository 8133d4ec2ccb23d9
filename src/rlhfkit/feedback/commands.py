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
import json
import os
import sys
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Literal, TextIO

from rlhfkit.config import Config, require
from rlhfkit.config.packages import require_database_driver
from rlhfkit.data.projects import redact_url
from rlhfkit.feedback.errors import Invalid

if TYPE_CHECKING:
    from rlhfkit.feedback.web.app import AppConfig

DEFAULT_DB_URL = "sqlite:///rlhfkit-feedback.db"
"""Database used when neither --db nor $RLHFKIT_DB is given."""

ExportFormat = Literal["pairs", "rankings", "ratings", "demos", "critiques", "harm"]
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
    https: bool = False
    """The app is reached over HTTPS (directly or through a proxy): cookies are marked Secure and
    responses carry Strict-Transport-Security, so browsers never send a session over plain HTTP."""
    docs: bool = False
    """Serve the API reference page at /docs (a plain page, no third-party scripts)."""
    idle_timeout_min: float = 480.0
    """Minutes without a request after which a login ends."""
    workers: int = 1
    """Server processes sharing the port (uvicorn workers; one that dies is replaced). More than 1
    needs PostgreSQL: items are handed out under its row locks, and SQLite admits one writer."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.db), "db is required (a database URL)")
        require_database_driver(self.db, f"db={redact_url(self.db)}")
        require(bool(self.host), "host is required")
        require(0 < self.port < 65536, f"port must be in 1..65535, got {self.port}")
        require(
            0 < self.idle_timeout_min <= 7 * 24 * 60,
            f"idle_timeout_min must be in (0, 10080], got {self.idle_timeout_min}",
        )
        require(self.workers >= 1, f"workers must be >= 1, got {self.workers}")
        require(
            self.workers == 1 or self.db.startswith(("postgresql", "postgres:")),
            f"workers={self.workers} needs a PostgreSQL database (SQLite admits one writer); got {self.db.split(':')[0]}",
        )

    def app_config(self) -> AppConfig:
        """The web app's settings these options ask for."""
        from rlhfkit.feedback.store import StoreConfig
        from rlhfkit.feedback.web.app import AppConfig

        store = StoreConfig(session_idle_s=self.idle_timeout_min * 60)
        return AppConfig(secure_cookies=self.https, hsts=self.https, docs=self.docs, store=store)


def serve(cfg: ServeConfig) -> None:
    """Migrate the database and serve the app with uvicorn until interrupted."""
    import uvicorn

    from rlhfkit.feedback.web.app import create_app

    # Hand the GIL over every 0.5 ms instead of 5 ms: the event loop otherwise waits behind
    # database threads for whole switch intervals, which dominates tail latency.
    sys.setswitchinterval(0.0005)
    if cfg.workers > 1:
        # Each worker process builds its own app (its own connection pool) from the URL and options in
        # the environment; the migration runs once, here, before any of them starts.
        from rlhfkit.feedback.db import Database

        database = Database(cfg.db)
        database.migrate()
        database.dispose()
        os.environ[WORKER_DB_ENV] = cfg.db
        os.environ[WORKER_OPTIONS_ENV] = json.dumps(
            {"https": cfg.https, "docs": cfg.docs, "idle_timeout_min": cfg.idle_timeout_min}
        )
        print(
            f"rlhfkit feedback on http://{cfg.host}:{cfg.port}  ({cfg.workers} workers, database {redact_url(cfg.db)})",
            flush=True,
        )
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
    app = create_app(cfg.db, config=cfg.app_config())
    print(f"rlhfkit feedback on http://{cfg.host}:{cfg.port}  (database {redact_url(cfg.db)})", flush=True)
    uvicorn.run(app, host=cfg.host, port=cfg.port, log_level="info", access_log=False)


WORKER_DB_ENV = "RLHFKIT_SERVE_WORKER_DB"
"""How `serve --workers N` hands the database URL to its worker processes (never printed)."""
WORKER_OPTIONS_ENV = "RLHFKIT_SERVE_WORKER_OPTIONS"
"""The app options (https, docs, idle_timeout_min) of `serve --workers N`, as JSON, for its workers."""


def worker_app() -> Any:
    """The app of one `serve --workers N` process (uvicorn calls this factory in each worker)."""
    from rlhfkit.feedback.web.app import create_app

    sys.setswitchinterval(0.0005)
    db = os.environ[WORKER_DB_ENV]
    options = json.loads(os.environ.get(WORKER_OPTIONS_ENV, "{}"))
    return create_app(db, config=ServeConfig(db=db, **options).app_config())


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
        require_database_driver(self.db, f"db={redact_url(self.db)}")


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
    return f"created {cfg.role} {cfg.name!r} in {redact_url(cfg.db)}"


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
    """What to export: training records (pairs, rankings, ratings, demos), critiques ({prompt, response,
    critique} rows) or harm (per-response harm labels); the formats are in rlhfkit.feedback.export."""
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
        require(self.format is not None, "format is required: pairs, rankings, ratings, demos, critiques or harm")
        require(bool(self.output), "output is required (FILE.jsonl or a dataset directory)")
        require(bool(self.db), "db is required (a database URL)")
        require_database_driver(self.db, f"db={redact_url(self.db)}")


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
        if not rows:
            raise Invalid(
                f"nothing to export as {fmt} from project {project!r}: {store.export_empty_reason(project, fmt)}"
            )
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
