"""One argparse parser per row of the command table, every row built the same way.

A row's parser holds its flags (from `Flag`), ``--config FILE.yaml``, trailing ``key=value``
overrides, and an epilog listing every field of its config with its documentation.
"""

from __future__ import annotations

import argparse
import importlib
import inspect
import typing
from collections.abc import Callable, Sequence
from typing import Any, Literal

from rlhfkit.cli.table import COMMANDS, GROUPS, Command, Flag, FlagKind
from rlhfkit.config import FIELDS_EPILOG, REQUIRED_HELP, field_docs, format_fields

FIELD_DEST = "field:"
"""Prefix of the namespace attributes that hold config fields, so a field can never clash with
argparse's own (``command``, ``verbose``, ``config_file``, ``overrides``)."""

DESCRIPTION = "RLHF from the first human judgment to the aligned model."
"""The first line of ``rlhfkit --help``."""

INTRO = (
    "rlhfkit: RLHF from the first human judgment to the aligned model. Supervised fine-tuning, a web app\n"
    "for human feedback, reward models, PPO and DPO, and the loop that joins them.\n"
    "\n"
    "Try it first:   rlhfkit demo\n"
    "                (the whole pipeline on the bundled SmolLM2-135M with a simulated panel; minutes on a CPU)\n"
    "Then:           rlhfkit COMMAND --help   (every setting of a command, documented)\n"
)
"""What ``rlhfkit`` with no arguments prints above the command list: what it is and the first command."""

EPILOG = "Start with `rlhfkit demo`; `rlhfkit COMMAND --help` documents every setting of a command."
"""The last line of ``rlhfkit --help``."""


def load(ref: str) -> Any:
    """The attribute a ``"module:attr"`` reference names, importing its module now."""
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def selected_row(argv: Sequence[str]) -> Command | None:
    """The row whose words begin the non-option arguments of `argv` (top-level options take no value)."""
    words = tuple(arg for arg in argv if not arg.startswith("-"))
    return next((row for row in COMMANDS if words[: len(row.words)] == row.words), None)


def _choices(tp: Any) -> tuple[str, ...] | None:
    """The values of a ``Literal[...]`` field (also inside ``X | None``), for argparse to offer and check."""
    if typing.get_origin(tp) is Literal:
        values = typing.get_args(tp)
        return values if all(isinstance(v, str) for v in values) else None
    return next((c for c in map(_choices, typing.get_args(tp)) if c), None)


def _value(parser: argparse.ArgumentParser, flag: Flag, tp: Any, help_text: str) -> None:
    choices = _choices(tp)
    parser.add_argument(
        flag.spelling,
        dest=FIELD_DEST + flag.field,
        choices=choices,
        metavar=None if choices else flag.field.upper(),
        help=help_text,
    )


def _switch(parser: argparse.ArgumentParser, flag: Flag, tp: Any, help_text: str) -> None:
    # default None, not False: an absent switch must not override a true in the config file.
    parser.add_argument(
        flag.spelling, dest=FIELD_DEST + flag.field, action="store_true", default=None, help=f"set {flag.field}=true"
    )


def _positional(parser: argparse.ArgumentParser, flag: Flag, tp: Any, help_text: str) -> None:
    parser.add_argument(FIELD_DEST + flag.field, metavar=flag.field.upper(), help=help_text)


FLAG_ADDERS: dict[FlagKind, Callable[[argparse.ArgumentParser, Flag, Any, str], None]] = {
    "value": _value,
    "switch": _switch,
    "positional": _positional,
}
"""Flag kind -> how it becomes an argparse argument, given the field's type and its help line."""


def _help(flag: Flag, doc: str) -> str:
    """The first sentence of the field's doc, and the required marker."""
    first = doc.split(". ")[0].rstrip(".") or f"config field {flag.field!r}"
    return first + (REQUIRED_HELP if flag.required else "")


def description(row: Command, config: type) -> str:
    """A command's --help description: its one line, then what its config's docstring adds."""
    doc = inspect.getdoc(config) or ""
    _, _, rest = doc.partition("\n\n")
    return row.help + (f"\n\n{rest.strip()}" if rest.strip() else "")


def add_row_arguments(parser: argparse.ArgumentParser, row: Command) -> None:
    """Give `parser` the row's flags, --config, key=value overrides and the field list of its config."""
    cls = load(row.config)
    parser.description = description(row, cls)
    parser.epilog = FIELDS_EPILOG + format_fields(cls)
    hints, docs = typing.get_type_hints(cls), field_docs(cls)
    for flag in row.flags:
        FLAG_ADDERS[flag.kind](parser, flag, hints[flag.field], _help(flag, docs.get(flag.field, "")))
    parser.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="YAML config file")
    parser.add_argument(
        "overrides",
        nargs="*",
        default=[],
        metavar="key=value",
        help="config fields to set (listed below; a dotted key reaches a nested config)",
    )


def _subcommands(root: Any, groups: dict[tuple[str, ...], Any], words: tuple[str, ...]) -> Any:
    """The sub-parsers that commands starting with `words` hang off (a group parser per prefix: ``reward``)."""
    if not words:
        return root
    if words not in groups:
        name = " ".join(words)
        parent = _subcommands(root, groups, words[:-1])
        group = parent.add_parser(words[-1], help=GROUPS[name], description=GROUPS[name])
        group.set_defaults(usage_of=group)
        groups[words] = group.add_subparsers(dest="subcommand", metavar="SUBCOMMAND")
    return groups[words]


def build_parser(argv: Sequence[str] | None = None) -> argparse.ArgumentParser:
    """The `rlhfkit` parser; each command's namespace carries its row as ``row``.

    With `argv`, only the row it names gets its flags and field list, so only that row's config
    module is imported (``rlhfkit --help`` loads no trainer); without, every row is complete.
    """
    from rlhfkit import __version__

    top = argparse.ArgumentParser(prog="rlhfkit", description=DESCRIPTION, epilog=EPILOG)
    top.add_argument("--version", action="version", version=f"rlhfkit {__version__}")
    top.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    top.set_defaults(row=None, usage_of=top)
    root = top.add_subparsers(dest="command", metavar="COMMAND")
    complete = set(COMMANDS) if argv is None else {selected_row(argv)}
    groups: dict[tuple[str, ...], Any] = {}
    for row in COMMANDS:
        parser = _subcommands(root, groups, row.words[:-1]).add_parser(
            row.words[-1],
            help=row.help,
            description=row.help,
            formatter_class=argparse.RawDescriptionHelpFormatter,
        )
        parser.set_defaults(row=row)
        if row in complete:
            add_row_arguments(parser, row)
    return top


def parse(argv: Sequence[str]) -> argparse.Namespace:
    """Parse `argv`, taking ``key=value`` overrides wherever they stand.

    argparse alone fills a trailing ``nargs="*"`` positional from one run of words only, so
    ``admin create-user NAME --role admin db=URL`` would reject ``db=URL``; such words join the
    overrides in order. Anything else argparse does not know is still an error.
    """
    parser = build_parser(argv)
    args, extra = parser.parse_known_args(argv)
    stray = [word for word in extra if word.startswith("-") or "=" not in word]
    if stray or (extra and args.row is None):
        parser.error(f"unrecognized arguments: {' '.join(stray or extra)}")
    if extra:
        args.overrides = [*args.overrides, *extra]
    return args
