"""Command-line entry points of the feedback app: ``serve``, ``admin create-user``, ``export``.

`register` adds them to the main ``rlhfkit`` parser; ``python -m rlhfkit.feedback.cli ...`` runs
them on their own. The database URL defaults to ``$RLHFKIT_DB`` or ``sqlite:///rlhfkit-feedback.db``
in the current directory. There is no default password anywhere: ``create-user`` asks for one
(twice) on a terminal, or reads the first line of stdin when it is piped.
"""

from __future__ import annotations

import argparse
import getpass
import os
import sys
from typing import Any, TextIO

from rlhfkit.feedback.errors import FeedbackError, Invalid
from rlhfkit.feedback.export import AGGREGATIONS, EXPORT_KINDS, WRITERS, container_for

DEFAULT_DB_URL = "sqlite:///rlhfkit-feedback.db"
"""Database used when neither --db nor $RLHFKIT_DB is given."""


def default_db_url() -> str:
    return os.environ.get("RLHFKIT_DB") or DEFAULT_DB_URL


def serve(db_url: str, host: str = "127.0.0.1", port: int = 8000) -> None:
    """Migrate the database and serve the app with uvicorn until interrupted."""
    import uvicorn

    from rlhfkit.feedback.web.app import create_app

    # Hand the GIL over every 0.5 ms instead of 5 ms: the event loop otherwise waits behind
    # database threads for whole switch intervals, which dominates tail latency.
    sys.setswitchinterval(0.0005)
    app = create_app(db_url)
    print(f"rlhfkit feedback on http://{host}:{port}  (database {db_url})", flush=True)
    uvicorn.run(app, host=host, port=port, log_level="info", access_log=False)


def create_user(db_url: str, name: str, role: str, password: str) -> None:
    """Create an account (migrating the database first if needed)."""
    from rlhfkit.feedback.store import FeedbackStore

    store = FeedbackStore(db_url)
    try:
        store.create_user(name, role, password)
    finally:
        store.close()


def export_project(db_url: str, project: str, fmt: str, output: str, aggregate: str = "majority",
                   raw: bool = False, container: str | None = None) -> int:
    """Write a project's records to `output` (JSONL for .jsonl/.json, else a HF dataset dir).

    Returns the number of records written. ``raw=True`` (or ``aggregate="raw"``) writes one
    record per judgment with an ``"annotator"`` key.
    """
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


def read_password(stdin: TextIO | None = None) -> str:
    """Ask twice on a terminal; otherwise take the first line of stdin (without its newline)."""
    stdin = stdin or sys.stdin
    if stdin.isatty():
        first = getpass.getpass("Password: ")
        if getpass.getpass("Repeat password: ") != first:
            raise Invalid("the passwords differ")
        return first
    return stdin.readline().rstrip("\r\n")


# ------------------------------------------------------------------ argparse wiring


def _run(action: Any) -> int:
    try:
        action()
    except FeedbackError as exc:
        print(f"error: {exc.message}", file=sys.stderr)
        return 2
    return 0


def _serve_cmd(args: argparse.Namespace) -> int:
    return _run(lambda: serve(args.db, args.host, args.port))


def _create_user_cmd(args: argparse.Namespace) -> int:
    def action() -> None:
        create_user(args.db, args.name, args.role, read_password())
        print(f"created {args.role} {args.name!r} in {args.db}")

    return _run(action)


def _export_cmd(args: argparse.Namespace) -> int:
    def action() -> None:
        count = export_project(args.db, args.project, args.format, args.output,
                               aggregate=args.aggregate, raw=args.raw, container=args.container)
        print(f"wrote {count} {args.format} records to {args.output}")

    return _run(action)


def _admin_help(parser: argparse.ArgumentParser) -> Any:
    def show(_args: argparse.Namespace) -> int:
        parser.print_help()
        return 2

    return show


def register(subparsers: Any) -> None:
    """Add ``serve``, ``admin create-user`` and ``export`` to an argparse subparsers object."""
    db_help = "database URL (default: $RLHFKIT_DB or sqlite:///rlhfkit-feedback.db)"

    p = subparsers.add_parser("serve", help="run the human-feedback web app")
    p.add_argument("--db", default=default_db_url(), help=db_help)
    p.add_argument("--host", default="127.0.0.1", help="interface to listen on (default 127.0.0.1)")
    p.add_argument("--port", type=int, default=8000, help="port (default 8000)")
    p.set_defaults(func=_serve_cmd)

    admin = subparsers.add_parser("admin", help="manage the feedback app's accounts")
    admin.set_defaults(func=_admin_help(admin))
    actions = admin.add_subparsers(dest="admin_command")
    p = actions.add_parser("create-user", help="create an account (password from a prompt or stdin)")
    p.add_argument("name", help="login name")
    p.add_argument("--role", choices=("admin", "annotator"), required=True)
    p.add_argument("--db", default=default_db_url(), help=db_help)
    p.set_defaults(func=_create_user_cmd)

    p = subparsers.add_parser("export", help="export a feedback project as training records")
    p.add_argument("--db", default=default_db_url(), help=db_help)
    p.add_argument("--project", required=True, help="project name")
    p.add_argument("--format", choices=EXPORT_KINDS, required=True)
    p.add_argument("--output", required=True, help="FILE.jsonl, or a directory for a HF dataset")
    p.add_argument("--aggregate", choices=AGGREGATIONS, default="majority",
                   help="per-item aggregation (default majority); raw = one record per judgment")
    p.add_argument("--raw", action="store_true", help="same as --aggregate raw")
    p.add_argument("--as", dest="container", choices=sorted(WRITERS), default=None,
                   help="force the output container (default: from the file name)")
    p.set_defaults(func=_export_cmd)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m rlhfkit.feedback.cli")
    register(parser.add_subparsers(dest="command", required=True))
    args = parser.parse_args(argv)
    return int(args.func(args) or 0)


if __name__ == "__main__":
    raise SystemExit(main())
