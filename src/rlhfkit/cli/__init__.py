"""The `rlhfkit` command: parse a typed config, call the Python function. Nothing else lives here.

Every command is a row of `rlhfkit.cli.table.COMMANDS`, parsed by `rlhfkit.cli.parser` and run by
`rlhfkit.cli.run`: each reads ``[--config FILE.yaml] [key=value ...]`` on top of its named flags, and
``rlhfkit CMD --help`` lists every field of its config with its documentation.

This is the top layer: it may import any package (heavy ones lazily, when a command runs), and no
package imports it.
"""

from __future__ import annotations

import logging
import os
import sys
import warnings
from collections.abc import Sequence

from rlhfkit.cli.parser import INTRO, build_parser, parse
from rlhfkit.cli.run import run_command, run_row
from rlhfkit.cli.table import COMMANDS, Command, Flag

__all__ = ["COMMANDS", "Command", "Flag", "build_parser", "main", "run_command"]

QUIET_LOGGERS = ("httpx", "urllib3", "filelock", "accelerate")
"""Libraries whose INFO lines drown the run's own; they log warnings and errors only."""


def quiet_libraries() -> None:
    """No progress bars or advice from the libraries underneath: a run shows one live line of its own
    (`rlhfkit.train.console`), and loading or saving a model is not a stage worth a bar. Set both for
    libraries imported later (their environment switches) and for those already imported."""
    os.environ.setdefault("HF_HUB_DISABLE_PROGRESS_BARS", "1")  # huggingface_hub, datasets, transformers
    os.environ.setdefault("TRANSFORMERS_VERBOSITY", "error")
    os.environ.setdefault("TRANSFORMERS_NO_ADVISORY_WARNINGS", "1")
    for module, switch in (
        ("huggingface_hub.utils", "disable_progress_bars"),
        ("transformers.utils.logging", "disable_progress_bar"),
        ("transformers.utils.logging", "set_verbosity_error"),
    ):
        if module in sys.modules:
            getattr(sys.modules[module], switch)()
    # transformers warns about its own deprecations when peft calls it; nothing a user can act on.
    warnings.filterwarnings("ignore", category=FutureWarning, module=r"transformers\.")


def configure_logging(verbose: bool) -> None:
    """INFO (DEBUG with -v) with timestamps for rlhfkit, WARNING for `QUIET_LOGGERS`, and without -v
    `quiet_libraries`."""
    logging.basicConfig(
        level=logging.DEBUG if verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not verbose:
        quiet_libraries()


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command `argv` names (default: ``sys.argv[1:]``); returns the exit code."""
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv:  # a first-time user: what this is, and what to type first
        print(INTRO)
        build_parser([]).print_help()
        return 0
    args = parse(argv)
    configure_logging(args.verbose)
    if args.row is None:
        args.usage_of.print_help()
        return 2
    return run_row(args.row, args)
