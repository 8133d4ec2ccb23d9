"""`rlhfkit reward train | eval | score`: the command line of reward models.

The lead wires it with ``"rlhfkit.train.reward_cli"`` in `rlhfkit.cli.EXTENSIONS`; `register` adds the
``reward`` command and its three sub-commands to the top-level sub-parsers.
"""

from __future__ import annotations

import argparse
from typing import Any

from rlhfkit.config import FIELDS_EPILOG, REQUIRED_HELP, build_config, format_fields

TRAIN_FLAGS = ("model", "data", "output")
"""Config fields of `reward train` that also have a --flag."""


def _train(args: argparse.Namespace) -> int:
    from rlhfkit.train.reward import RewardConfig, train_reward_model

    cfg = build_config(RewardConfig, yaml_path=args.config_file,
                       values={f: getattr(args, f) for f in TRAIN_FLAGS}, overrides=args.overrides)
    print(train_reward_model(cfg))
    return 0


def _eval(args: argparse.Namespace) -> int:
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.train.reward.evaluation import (
        evaluate_source,
        format_metrics,
        metrics_json,
    )

    model = load_reward_model(args.model)
    metrics = evaluate_source(model, args.data, args.kind, args.skip_invalid, args.batch_size)
    print(metrics_json(metrics) if args.json else format_metrics(metrics))
    return 0


def _score(args: argparse.Namespace) -> int:
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.train.reward.evaluation import score_file

    n = score_file(load_reward_model(args.model), args.data, args.output, args.batch_size)
    print(f"scored {n} rows -> {args.output}")
    return 0


def register(subparsers: Any) -> None:
    """Add ``reward`` with sub-commands ``train``, ``eval`` and ``score`` to `subparsers`."""
    from rlhfkit.train.reward import RewardConfig

    reward = subparsers.add_parser("reward", help="train, evaluate and apply reward models",
                                   description="Reward models from pairwise preferences, rankings and ratings.")
    sub = reward.add_subparsers(dest="reward_command", metavar="SUBCOMMAND", required=True)

    train = sub.add_parser(
        "train", help="train a reward model", description="Train a reward model; the output directory is the model.",
        formatter_class=argparse.RawDescriptionHelpFormatter,
        epilog=FIELDS_EPILOG + format_fields(RewardConfig),
    )
    train.add_argument("--model", dest="model", metavar="MODEL", help="trunk to start from (default smollm2)")
    train.add_argument("--data", dest="data", metavar="FILE",
                       help="pairs, rankings or ratings" + REQUIRED_HELP)
    train.add_argument("--output", dest="output", metavar="DIR",
                       help="run directory" + REQUIRED_HELP)
    train.add_argument("--config", dest="config_file", metavar="FILE.yaml", help="YAML config file")
    train.add_argument("overrides", nargs="*", metavar="key=value", help="config overrides, e.g. max_steps=50")
    train.set_defaults(func=_train)

    evaluate = sub.add_parser("eval", help="accuracy, margin, calibration and accuracy by length on judgments")
    evaluate.add_argument("--model", required=True, metavar="DIR", help="reward model directory")
    evaluate.add_argument("--data", required=True, metavar="FILE", help="pairs, rankings or ratings")
    evaluate.add_argument("--json", action="store_true", help="print JSON instead of a table")
    evaluate.add_argument("--kind", default="auto", choices=("auto", "pairs", "rankings", "ratings"))
    evaluate.add_argument("--skip-invalid", action="store_true", help="skip (and report) invalid rows")
    evaluate.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    evaluate.set_defaults(func=_eval)

    score = sub.add_parser("score", help="add reward scores to every row of a JSONL file")
    score.add_argument("--model", required=True, metavar="DIR", help="reward model directory")
    score.add_argument("--data", required=True, metavar="FILE.jsonl", help="rows with prompt + response (or pairs)")
    score.add_argument("--output", required=True, metavar="FILE.jsonl", help="where the scored rows go")
    score.add_argument("--batch-size", type=int, default=16, help="sequences per forward pass")
    score.set_defaults(func=_score)
