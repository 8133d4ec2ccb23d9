"""Commands `rlhfkit demo`, `rlhfkit loop` and `rlhfkit eval` (wired into the main CLI by `register`).

Each reads ``[--config FILE.yaml] [key=value ...]`` on top of its named flags, built with
`rlhfkit.config.build_config`; ``--help`` lists every config field with its documentation.
"""

from __future__ import annotations

import argparse
import importlib
import sys
from dataclasses import dataclass
from typing import Any

from rlhfkit.config import FIELDS_EPILOG, build_config, format_fields


@dataclass(frozen=True)
class Flag:
    """A command-line flag that sets a config field."""

    name: str
    """Config field (and flag name)."""
    boolean: bool = False
    """A switch (``--serve``) instead of a flag with a value."""
    required: bool = False
    """The flag must be given."""


@dataclass(frozen=True)
class LoopCommand:
    """A config-driven command of this module."""

    name: str
    """Command name."""
    help: str
    """One-line help."""
    config: str
    """'module:ConfigClass'."""
    target: str
    """'module:function' taking the config; what it returns is printed."""
    flags: tuple[Flag, ...]
    """Named flags."""


COMMANDS = (
    LoopCommand("demo", "the whole RLHF pipeline on the bundled model with a simulated panel (minutes on a CPU)",
                "rlhfkit.loop.demo:DemoConfig", "rlhfkit.loop.demo:demo", (Flag("output"), Flag("serve", boolean=True))),
    LoopCommand("loop", "rounds of candidates -> feedback -> reward model -> policy -> evaluation",
                "rlhfkit.loop.config:LoopConfig", "rlhfkit.loop.loop:run_loop", (Flag("output"),)),
    LoopCommand("eval", "win rate of a policy against a baseline (judge rm:DIR, gold:NAME or app:DBURL#PROJECT)",
                "rlhfkit.eval.compare:CompareConfig", "rlhfkit.loop.compare:compare_main",
                (Flag("policy"), Flag("baseline"), Flag("prompts"), Flag("judge", required=True),
                 Flag("json", boolean=True), Flag("collect", boolean=True))),
)
"""The commands `register` adds."""


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


def _values(args: argparse.Namespace, flags: tuple[Flag, ...]) -> dict[str, Any]:
    """Flags the user gave (a switch only when set, so a YAML file's value stands otherwise)."""
    out: dict[str, Any] = {}
    for flag in flags:
        value = getattr(args, flag.name)
        if (flag.boolean and value) or (not flag.boolean and value is not None):
            out[flag.name] = value
    return out


def _runner(cmd: LoopCommand) -> Any:
    def run(args: argparse.Namespace) -> int:
        from rlhfkit.feedback.errors import FeedbackError

        cfg = build_config(_load(cmd.config), yaml_path=args.config_file, values=_values(args, cmd.flags),
                           overrides=args.overrides)
        try:
            result = _load(cmd.target)(cfg)
        except FeedbackError as exc:
            print(f"rlhfkit {cmd.name}: error: {exc.message}", file=sys.stderr)
            return 2
        if result is not None:
            print(result)
        return 0

    return run


def register(subparsers: Any) -> None:
    """Add ``demo``, ``loop`` and ``eval`` to an argparse subparsers object."""
    for cmd in COMMANDS:
        parser = subparsers.add_parser(
            cmd.name, help=cmd.help, description=cmd.help, formatter_class=argparse.RawDescriptionHelpFormatter,
            epilog=FIELDS_EPILOG + format_fields(_load(cmd.config)),
        )
        for flag in cmd.flags:
            if flag.boolean:
                parser.add_argument(f"--{flag.name}", dest=flag.name, action="store_true", help=f"set {flag.name}=true")
            else:
                parser.add_argument(f"--{flag.name}", dest=flag.name, required=flag.required, metavar=flag.name.upper())
        parser.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="YAML config file")
        parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. rounds=2")
        parser.set_defaults(func=_runner(cmd))
