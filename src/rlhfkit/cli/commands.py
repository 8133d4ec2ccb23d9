"""Targets of the rows whose library functions do not take a config: each reads its typed config,
calls the function and returns the text the command prints.

They live here rather than beside the functions because they are command-line glue: loading a reward
model from a directory, formatting the model list. Heavy modules are imported inside each one.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from rlhfkit.config import Config

if TYPE_CHECKING:
    from rlhfkit.eval.report import ReportConfig
    from rlhfkit.train.reward.evaluation import RewardEvalConfig, RewardScoreConfig


@dataclass(frozen=True)
class ModelsConfig(Config):
    """`rlhfkit models`: list the bundled and cached models (no settings; a config like every command's)."""


def models_table(cfg: ModelsConfig) -> str:
    """Two lines per model: name, kind and source, then where it is cached."""
    from rlhfkit.models.loading import list_models

    return "\n".join(
        f"{row['name']:<24} {row['kind']:<8} {row['source']}\n{'':<33} cache: {row['cache']}" for row in list_models()
    )


def run_report(cfg: ReportConfig) -> Path:
    """Write the run directory's report.html; returns its path."""
    from rlhfkit.eval.report import write_report

    return write_report(Path(cfg.run_dir))


def reward_eval(cfg: RewardEvalConfig) -> str:
    """The metrics of the reward model on the judgments, as JSON or a table."""
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.train.reward.evaluation import (
        evaluate_source,
        format_metrics,
        metrics_json,
    )

    model = load_reward_model(cfg.model)
    metrics = evaluate_source(model, cfg.data, cfg.kind, cfg.skip_invalid, cfg.batch_size, cfg.progress)
    return metrics_json(metrics) if cfg.json else format_metrics(metrics)


def reward_score(cfg: RewardScoreConfig) -> str:
    """Score every row of the data file into the output file."""
    from rlhfkit.models.reward import load_reward_model
    from rlhfkit.train.reward.evaluation import score_file

    n = score_file(load_reward_model(cfg.model), cfg.data, cfg.output, cfg.batch_size, cfg.progress)
    return f"scored {n} rows -> {cfg.output}"
