"""The `rlhfkit` command: parse a typed config, call the Python function. Nothing else lives here.

Every command is a row of `rlhfkit.cli.table.COMMANDS`, parsed by `rlhfkit.cli.parser` and run by
`rlhfkit.cli.run`: each reads ``[--config FILE.yaml] [key=value ...]`` on top of its named flags, and
``rlhfkit CMD --help`` lists every field of its config with its documentation.

This is the top layer: it may import any package (heavy ones lazily, when a command runs), and no
package imports it.
"""

from __future__ import annotations

import logging
import sys
from collections.abc import Sequence

from rlhfkit.cli.parser import build_parser, parse
from rlhfkit.cli.run import run_command, run_row
from rlhfkit.cli.table import COMMANDS, Command, Flag

__all__ = ["COMMANDS", "Command", "Flag", "build_parser", "main", "run_command"]

QUIET_LOGGERS = ("httpx", "urllib3", "filelock", "accelerate")
"""Libraries whose INFO lines drown the run's own; they log warnings and errors only."""


def configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with -v) with timestamps for rlhfkit, WARNING for `QUIET_LOGGERS`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    args = parse(argv)
    configure_logging(args.verbose)
    if args.row is None:
        args.usage_of.print_help()
        return 2
    return run_row(args.row, args)
