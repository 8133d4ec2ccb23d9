"""The command table: every `rlhfkit` command is one `Command` row, and nothing else defines one.

A row names its words, its typed config class and its target function as ``"module:attr"``
strings, imported only when that command is parsed or run: ``rlhfkit --help`` imports no torch,
and ``rlhfkit serve`` never loads a trainer.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

FlagKind = Literal["value", "switch", "positional"]
"""``--db URL``; ``--json`` (sets a boolean field to true); ``admin create-user NAME``."""


@dataclass(frozen=True)
class Flag:
    """A command-line spelling of one config field."""

    field: str
    """The top-level config field it sets."""
    kind: FlagKind = "value"
    """How it is spelled. An absent --flag or switch leaves the config file's value standing."""
    required: bool = False
    """Marked required in --help. Not enforced by argparse: --config or key=value may give it, and the
    config's validation names it when it is missing everywhere."""
    option: str = ""
    """Spelling when it is not ``--`` + the field with dashes (``--as`` for `container`)."""

    @property
    def spelling(self) -> str:
        """``--skip-invalid`` for `skip_invalid`, or the explicit `option`."""
        return self.option or "--" + self.field.replace("_", "-")


@dataclass(frozen=True)
class Command:
    """One row of the table: the words that name a command and what runs it."""

    words: tuple[str, ...]
    """``("sft",)`` or, for a nested command, ``("reward", "train")``."""
    help: str
    """One line for the command list and the top of its --help."""
    config: str
    """``"module:ConfigClass"``: the typed, frozen config the command line is parsed into."""
    target: str
    """``"module:function"`` taking that config."""
    flags: tuple[Flag, ...] = ()
    """Config fields that also have a flag or positional (every field is settable as key=value)."""
    writes_report: bool = False
    """Trainer commands: the target returns a run directory, whose HTML report the CLI then writes, titled
    by the config's ``title()`` (the loop titles its stages' reports the same way), before printing the
    directory. False: print what the target returns."""

    @property
    def name(self) -> str:
        """The words as typed: ``"reward train"``."""
        return " ".join(self.words)


def _required(*fields: str) -> tuple[Flag, ...]:
    return tuple(Flag(f, required=True) for f in fields)


GROUPS: dict[str, str] = {
    "reward": "train, evaluate and apply reward models",
    "admin": "manage the feedback app's accounts",
}
"""Help of the first word of nested commands."""

COMMANDS: tuple[Command, ...] = (
    Command(
        ("sft",),
        "supervised fine-tuning on demonstrations",
        "rlhfkit.train.sft:SFTConfig",
        "rlhfkit.train.sft:sft",
        (Flag("model"), *_required("data", "output")),
        writes_report=True,
    ),
    Command(
        ("generate",),
        "sample n responses per prompt into a JSONL file",
        "rlhfkit.rollout.candidates:GenerateConfig",
        "rlhfkit.rollout.candidates:generate",
        (Flag("model"), *_required("prompts", "output")),
    ),
    Command(
        ("ppo",),
        "PPO with a KL penalty against a reward model, function or URL",
        "rlhfkit.train.ppo:PPOConfig",
        "rlhfkit.train.ppo:ppo",
        (Flag("policy"), *_required("reward", "prompts", "output")),
        writes_report=True,
    ),
    Command(
        ("grpo",),
        "GRPO (or REINFORCE++: advantage=reinforce_pp) with groups of responses per prompt, no critic",
        "rlhfkit.train.grpo:GRPOConfig",
        "rlhfkit.train.grpo:grpo",
        (Flag("policy"), *_required("reward", "prompts", "output")),
        writes_report=True,
    ),
    Command(
        ("rloo",),
        "RLOO: REINFORCE with a leave-one-out baseline and the KL in the reward, no critic",
        "rlhfkit.train.grpo:RLOOConfig",
        "rlhfkit.train.grpo:grpo",
        (Flag("policy"), *_required("reward", "prompts", "output")),
        writes_report=True,
    ),
    Command(
        ("dpo",),
        "DPO and its variants (ipo, cdpo, robust, hinge, simpo, orpo) on preference pairs",
        "rlhfkit.train.dpo:DPOConfig",
        "rlhfkit.train.dpo:dpo",
        (Flag("model"), *_required("data", "output")),
        writes_report=True,
    ),
    Command(
        ("reward", "train"),
        "train a reward model; the output directory is the model",
        "rlhfkit.train.reward:RewardConfig",
        "rlhfkit.train.reward:train_reward_model",
        (Flag("model"), *_required("data", "output")),
        writes_report=True,
    ),
    Command(
        ("reward", "eval"),
        "accuracy, margin, calibration and accuracy by length on judgments",
        "rlhfkit.train.reward.evaluation:RewardEvalConfig",
        "rlhfkit.cli.commands:reward_eval",
        (
            *_required("model", "data"),
            Flag("json", "switch"),
            Flag("kind"),
            Flag("skip_invalid", "switch"),
            Flag("batch_size"),
        ),
    ),
    Command(
        ("reward", "score"),
        "add reward scores to every row of a JSONL file",
        "rlhfkit.train.reward.evaluation:RewardScoreConfig",
        "rlhfkit.cli.commands:reward_score",
        (*_required("model", "data", "output"), Flag("batch_size")),
    ),
    Command(
        ("models",),
        "list the bundled and cached models",
        "rlhfkit.cli.commands:ModelsConfig",
        "rlhfkit.cli.commands:models_table",
    ),
    Command(
        ("report",),
        "(re)write the HTML report of a run directory",
        "rlhfkit.eval.report:ReportConfig",
        "rlhfkit.cli.commands:run_report",
        (Flag("run_dir", "positional"),),
    ),
    Command(
        ("serve",),
        "run the human-feedback web app",
        "rlhfkit.feedback.commands:ServeConfig",
        "rlhfkit.feedback.commands:serve",
        (Flag("db"), Flag("host"), Flag("port"), Flag("https", "switch"), Flag("docs", "switch"), Flag("workers")),
    ),
    Command(
        ("admin", "create-user"),
        "create an account (password from a prompt or stdin)",
        "rlhfkit.feedback.commands:CreateUserConfig",
        "rlhfkit.feedback.commands:create_user_command",
        (Flag("name", "positional"), Flag("role", required=True), Flag("db")),
    ),
    Command(
        ("export",),
        "export a feedback project as training records",
        "rlhfkit.feedback.commands:ExportConfig",
        "rlhfkit.feedback.commands:export_command",
        (
            Flag("db"),
            *_required("project", "format", "output"),
            Flag("aggregate"),
            Flag("raw", "switch"),
            Flag("container", option="--as"),
        ),
    ),
    Command(
        ("loop",),
        "rounds of candidates -> feedback -> reward model -> policy -> evaluation",
        "rlhfkit.loop.config:LoopConfig",
        "rlhfkit.loop.loop:run_loop",
        (Flag("output"),),
    ),
    Command(
        ("judge",),
        "label a feedback project's open items with an AI judge (a model or an OpenAI-compatible URL)",
        "rlhfkit.loop.judge:JudgeCommandConfig",
        "rlhfkit.loop.judge:judge_command",
        (Flag("db"), Flag("project", required=True), Flag("judge", required=True), Flag("output"), Flag("limit")),
    ),
    Command(
        ("cai",),
        "Constitutional AI: critiques and revisions, SFT, AI preferences, then DPO or reward model and PPO",
        "rlhfkit.loop.cai.config:CAIConfig",
        "rlhfkit.loop.cai.run:cai",
        (Flag("output"),),
    ),
    Command(
        ("eval",),
        "win rate of a policy against a baseline (judge rm:DIR, gold:NAME or app:DBURL#PROJECT)",
        "rlhfkit.eval.compare:CompareConfig",
        "rlhfkit.loop.compare:compare_main",
        (
            Flag("policy"),
            Flag("baseline"),
            Flag("prompts"),
            Flag("judge", required=True),
            Flag("json", "switch"),
            Flag("collect", "switch"),
        ),
    ),
    Command(
        ("demo",),
        "the whole RLHF pipeline on the bundled model with a simulated panel (minutes on a CPU)",
        "rlhfkit.loop.demo:DemoConfig",
        "rlhfkit.loop.demo:demo",
        (Flag("output"), Flag("serve", "switch")),
    ),
)
"""Every command, in the order ``rlhfkit --help`` lists them."""
