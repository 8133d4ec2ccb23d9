"""Running a row: build its config, call its target, finish with the result, map errors to exit codes."""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from rlhfkit.cli.parser import FIELD_DEST, load
from rlhfkit.cli.table import COMMANDS, Command
from rlhfkit.config import ConfigError, build_config


def _feedback_message(exc: BaseException) -> str:
    return str(getattr(exc, "message", exc))


USER_ERRORS: dict[str, Callable[[BaseException], str]] = {
    "rlhfkit.config:ConfigError": str,
    "rlhfkit.data.errors:DataError": str,
    "rlhfkit.models.loading:ModelLoadError": str,
    "builtins:FileNotFoundError": str,
    "builtins:FloatingPointError": str,
    "rlhfkit.feedback.errors:FeedbackError": _feedback_message,
    "rlhfkit.judges.http:JudgeHTTPError": str,
}
"""Errors that mean "the user's input is wrong", by ``"module:Class"``, each with how it becomes the one
line printed. A user error exits 2 with that line; any other exception is a bug and keeps its traceback."""

USER_ERROR_EXIT = 2
"""The exit code of a user error, the same as argparse's for a malformed command line."""
INTERRUPTED_EXIT = 130
"""128 + SIGINT, what a shell reports for a command stopped with Ctrl-C."""


def user_error_message(exc: BaseException) -> str | None:
    """The message of `exc` if it is a user error, else None.

    A class is looked up only in a module already imported (an exception of it cannot exist
    otherwise), so classifying an error never imports torch or the feedback app.
    """
    for ref, message in USER_ERRORS.items():
        module, name = ref.split(":")
        cls = getattr(sys.modules.get(module), name, None)
        if cls is not None and isinstance(exc, cls):
            return message(exc)
    return None


def exit_code(exc: BaseException, row: Command) -> int | None:
    """The one mapping from an exception to what the user sees: print its line, return the exit code.

    None for an exception that is not the user's doing; the caller re-raises it.
    """
    if isinstance(exc, KeyboardInterrupt):
        print("interrupted", file=sys.stderr)
        return INTERRUPTED_EXIT
    message = user_error_message(exc)
    if message is None:
        return None
    print(f"rlhfkit {row.name}: error: {message}", file=sys.stderr)
    return USER_ERROR_EXIT


def row_values(row: Command, args: argparse.Namespace) -> dict[str, Any]:
    """The config fields given as flags; an absent flag (None) leaves the config file's value standing."""
    values = {flag.field: getattr(args, FIELD_DEST + flag.field) for flag in row.flags}
    return {name: value for name, value in values.items() if value is not None}


def row_config(row: Command, args: argparse.Namespace) -> Any:
    """The row's config: defaults <- --config FILE.yaml <- flags <- key=value, validated."""
    return build_config(
        load(row.config), yaml_path=args.config_file, values=row_values(row, args), overrides=args.overrides
    )


def call(row: Command, cfg: Any) -> Any:
    """The row's target on `cfg`; a trainer's run directory then gets its HTML report.

    The report is the CLI's job so that a trainer called from Python does only the training. A target
    that returns nothing has nothing to report.
    """
    result = load(row.target)(cfg)
    # Under torchrun / accelerate launch every process returns the run directory; one writes the report.
    if row.writes_report and result is not None and os.environ.get("RANK", "0") == "0":
        from rlhfkit.eval.report import write_report

        write_report(Path(result), title=cfg.title())
    return result


def run_command(name: str, cfg: Any) -> Any:
    """Run the command `name` (``"reward train"``) on a config built in Python, as `rlhfkit` would
    (report included, nothing printed); returns what its target returns."""
    rows = {row.name: row for row in COMMANDS}
    if name not in rows:
        raise ConfigError(f"no command {name!r}; commands: {', '.join(rows)}")
    return call(rows[name], cfg)


def run_row(row: Command, args: argparse.Namespace) -> int:
    """Run one parsed command and print what it returns; the exit code (0, or what `exit_code` maps
    an error to)."""
    ok = False
    try:
        result = call(row, row_config(row, args))
        ok = True
    except (Exception, KeyboardInterrupt) as exc:
        code = exit_code(exc, row)
        if code is None:
            raise
        return code
    finally:
        end_processes(ok)
    if result is not None:
        print(result)
    return 0


def end_processes(ok: bool) -> None:
    """Leave a multi-process run's group (``rlhfkit.train.engine.end_processes``); a command that never
    imported torch.distributed has none, and the check keeps torch out of such a command."""
    if "torch.distributed" in sys.modules:
        from rlhfkit.train.engine import end_processes as end

        end(ok)
