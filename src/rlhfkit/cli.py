"""The `rlhfkit` command: parse a typed config, call the Python function. Nothing else lives here.

Every training command reads ``[--config FILE.yaml] [key=value ...]`` on top of its named flags;
``rlhfkit CMD --help`` lists every config field with its documentation.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from dataclasses import dataclass
from typing import Any

from rlhfkit.config import FIELDS_EPILOG, REQUIRED_HELP, build_config, format_fields


@dataclass(frozen=True)
class Command:
    """A config-driven command: `module:function` takes an instance of `module:config`."""

    name: str
    help: str
    target: str
    """'rlhfkit.train.sft:sft' — imported only when the command runs, so `--help` stays fast."""
    config: str
    """'rlhfkit.train.sft:SFTConfig'."""
    flags: tuple[str, ...]
    """Config fields that also have a --flag (the command-line contract)."""
    required: tuple[str, ...] = ()
    """Flags the command needs: given here, in --config or as key=value (the config validates it)."""


def _load(ref: str) -> Any:
    module, attr = ref.split(":")
    return getattr(importlib.import_module(module), attr)


COMMANDS = [
    Command("sft", "supervised fine-tuning on demonstrations", "rlhfkit.train.sft:sft",
            "rlhfkit.train.sft:SFTConfig", ("model", "data", "output"), ("data", "output")),
    Command("generate", "sample n responses per prompt into a JSONL file", "rlhfkit.rollout.candidates:generate",
            "rlhfkit.rollout.candidates:GenerateConfig", ("model", "prompts", "output"), ("prompts", "output")),
    Command("ppo", "PPO with a KL penalty against a reward model, function or URL", "rlhfkit.train.ppo:ppo",
            "rlhfkit.train.ppo:PPOConfig", ("policy", "reward", "prompts", "output"), ("reward", "prompts", "output")),
    Command("dpo", "DPO and its variants (ipo, cdpo, robust, hinge, simpo, orpo) on preference pairs",
            "rlhfkit.train.dpo:dpo", "rlhfkit.train.dpo:DPOConfig", ("model", "data", "output"), ("data", "output")),
]


def _add_config_command(sub: Any, cmd: Command) -> None:
    cfg_cls = _load(cmd.config)
    parser = sub.add_parser(
        cmd.name,
        help=cmd.help,
        description=cmd.help,
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FIELDS_EPILOG + format_fields(cfg_cls),
    )
    # Not argparse-required: a required field may come from --config or key=value instead, and the
    # config's own validation names it when it is missing everywhere.
    for flag in cmd.flags:
        needed = REQUIRED_HELP if flag in cmd.required else ""
        parser.add_argument(f"--{flag}", dest=flag, metavar=flag.upper(), help=f"config field {flag!r}{needed}")
    parser.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="YAML config file")
    parser.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. max_steps=10 lora.r=8")

    def run(args: argparse.Namespace) -> int:
        cfg = build_config(
            cfg_cls,
            yaml_path=args.config_file,
            values={f: getattr(args, f) for f in cmd.flags},
            overrides=args.overrides,
        )
        result = _load(cmd.target)(cfg)
        if result is not None:
            print(result)
        return 0

    parser.set_defaults(func=run)


def _models(args: argparse.Namespace) -> int:
    from rlhfkit.models.loading import list_models

    for row in list_models():
        print(f"{row['name']:<24} {row['kind']:<8} {row['source']}\n{'':<33} cache: {row['cache']}")
    return 0


def _report(args: argparse.Namespace) -> int:
    from pathlib import Path

    from rlhfkit.eval.report import write_report

    print(write_report(Path(args.run_dir)))
    return 0


EXTENSIONS: list[str] = ["rlhfkit.train.reward_cli", "rlhfkit.feedback.cli", "rlhfkit.loop.cli"]
"""Modules exposing `register(subparsers)` for commands that are not plain config commands."""


def build_parser() -> argparse.ArgumentParser:
    from rlhfkit import __version__

    parser = argparse.ArgumentParser(prog="rlhfkit", description="RLHF from the first human judgment to the aligned model.")
    parser.add_argument("--version", action="version", version=f"rlhfkit {__version__}")
    parser.add_argument("-v", "--verbose", action="store_true", help="debug logging")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    for cmd in COMMANDS:
        _add_config_command(sub, cmd)
    models = sub.add_parser("models", help="list the bundled and cached models")
    models.set_defaults(func=_models)
    report = sub.add_parser("report", help="(re)write the HTML report of a run directory")
    report.add_argument("run_dir", metavar="RUN_DIR")
    report.set_defaults(func=_report)
    for module in EXTENSIONS:
        importlib.import_module(module).register(sub)
    return parser


def main(argv: list[str] | None = None) -> int:
    parser = build_parser()
    args = parser.parse_args(argv)
    logging.basicConfig(
        level=logging.DEBUG if args.verbose else logging.INFO,
        format="%(asctime)s %(levelname)s %(name)s: %(message)s",
        datefmt="%H:%M:%S",
    )
    for noisy in ("httpx", "urllib3", "filelock", "accelerate"):
        logging.getLogger(noisy).setLevel(logging.WARNING)
    if not getattr(args, "func", None):
        parser.print_help()
        return 2
    from rlhfkit.errors import USER_ERRORS

    try:
        return int(args.func(args) or 0)
    except USER_ERRORS as e:
        print(f"rlhfkit {args.command}: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("interrupted", file=sys.stderr)
        return 130


if __name__ == "__main__":
    sys.exit(main())
