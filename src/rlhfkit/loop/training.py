"""The two training stages of a round, as calls of the trainers with configs built from the loop's
(each run directory then gets its HTML report, as a run from the command line does).

* reward model: `rlhfkit.train.reward` on the whole project (``DBURL#PROJECT``: every round's
  judgments so far, aggregated per item by majority), normalized on the current policy's samples;
* policy: `rlhfkit.train.ppo` (or `rlhfkit.train.grpo`: GRPO, RLOO) against that reward model, starting
  from the current policy (which is also the KL reference), or `rlhfkit.train.dpo` on the project's pairs.

Each stage of the loop config holds its trainer's settings; a round completes them with its inputs
and output (`rlhfkit.config.complete`). Each trainer writes its own run directory and resumes from its
own checkpoints when the loop is restarted; the configs built here are a pure function of the loop
config, so a resumed trainer finds the same config it started with.
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path

from rlhfkit.config import complete
from rlhfkit.eval.report import write_report
from rlhfkit.loop.config import DPOStage, GRPOStage, LoopConfig, PPOStage, RLOOStage
from rlhfkit.train.dpo import DPOConfig, dpo
from rlhfkit.train.grpo import GRPOConfig, RLOOConfig, grpo
from rlhfkit.train.ppo import PPOConfig, ppo
from rlhfkit.train.reward import RewardConfig, train_reward_model

REWARD_KIND = {"ranking": "rankings", "pairwise": "pairs"}
"""Task type of the project -> the record kind the reward model trains on."""


def data_spec(cfg: LoopConfig) -> str:
    """The project as a training source: ``DBURL#PROJECT``."""
    return f"{cfg.db_url()}#{cfg.feedback.project}"


def trunk_dir(cfg: LoopConfig) -> str:
    """The reward model's trunk: `reward.model` (or the initial policy), cut to `reward.trunk_layers`."""
    model = cfg.reward.model or cfg.policy_model
    if cfg.reward.trunk_layers == 0:
        return model
    return str(Path(cfg.output).resolve() / f"reward-trunk-{cfg.reward.trunk_layers}")


def build_truncated_trunk(model: str, layers: int, out: Path) -> Path:
    """A model directory holding the embeddings, the bottom `layers` blocks and the final norm of MODEL.

    Written once (atomically) and reused by every round. A model with at most `layers` blocks is
    copied whole.
    """
    from rlhfkit.models.adapters import decoder_layers
    from rlhfkit.models.loading import load_model
    from rlhfkit.models.saving import save_model_dir

    if (out / "config.json").exists():
        return out
    loaded = load_model(model, dtype="fp32")
    blocks = decoder_layers(loaded.model)
    if layers < len(blocks):
        del blocks[layers:]
        config = loaded.model.config
        config.num_hidden_layers = layers
        if getattr(config, "layer_types", None):  # per-layer attention kinds (sliding/full) in newer configs
            config.layer_types = config.layer_types[:layers]
    save_model_dir(loaded.model, loaded.tokenizer, out)
    return out


def reward_config(cfg: LoopConfig, output: Path, policy: str) -> RewardConfig:
    """The RewardConfig of a round: the reward stage's settings on the whole project, with trunk
    `trunk_dir` and the normalization on samples of `policy`."""
    return complete(
        RewardConfig,
        cfg.reward,
        output=output,
        model=trunk_dir(cfg),
        data=(data_spec(cfg),),
        kind=REWARD_KIND[cfg.feedback.task_type],
        normalize_policy=policy,
        seed=cfg.seed,
        progress=cfg.progress,
    )


def train_reward(cfg: LoopConfig, output: Path, policy: str) -> Path:
    if cfg.reward.trunk_layers:
        build_truncated_trunk(cfg.reward.model or cfg.policy_model, cfg.reward.trunk_layers, Path(trunk_dir(cfg)))
    rc = reward_config(cfg, output, policy)
    return write_report(train_reward_model(rc), title=rc.title()).parent


def ppo_config(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> PPOConfig:
    """The PPOConfig of a round: from `policy` (also the KL reference) against the round's reward model,
    logging every rollout (see `PPOStage`)."""
    stage = cfg.policy
    if not isinstance(stage, PPOStage):
        raise TypeError(f"policy.method is {stage.method!r}, not 'ppo'")
    return complete(
        PPOConfig,
        stage,
        output=output,
        policy=policy,
        reward=str(reward_dir),
        prompts=train_prompts,
        samples_per_log=stage.rollout_batch_size,
        seed=cfg.seed,
        progress=cfg.progress,
    )


def dpo_config(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> DPOConfig:
    """The DPOConfig of a round: from `policy` on every pair the project has exported so far."""
    if not isinstance(cfg.policy, DPOStage):
        raise TypeError(f"policy.method is {cfg.policy.method!r}, not 'dpo'")
    return complete(
        DPOConfig,
        cfg.policy,
        output=output,
        model=policy,
        data=data_spec(cfg),
        kind="pairs",
        seed=cfg.seed,
        progress=cfg.progress,
    )


def grpo_config(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> GRPOConfig:
    """The GRPOConfig (or RLOOConfig) of a round: from `policy` (also the KL reference) against the
    round's reward model, logging every rollout (see `GRPOStage`)."""
    stage = cfg.policy
    if not isinstance(stage, GRPOStage | RLOOStage):
        raise TypeError(f"policy.method is {stage.method!r}, not 'grpo' or 'rloo'")
    return complete(
        RLOOConfig if isinstance(stage, RLOOStage) else GRPOConfig,
        stage,
        output=output,
        policy=policy,
        reward=str(reward_dir),
        prompts=train_prompts,
        samples_per_log=stage.rollout_size,
        seed=cfg.seed,
        progress=cfg.progress,
    )


def _run_ppo(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    pc = ppo_config(cfg, output, policy, reward_dir, train_prompts)
    return write_report(ppo(pc), title=pc.title()).parent


def _run_dpo(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    dc = dpo_config(cfg, output, policy, reward_dir, train_prompts)
    return write_report(dpo(dc), title=dc.title()).parent


def _run_grpo(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    gc = grpo_config(cfg, output, policy, reward_dir, train_prompts)
    return write_report(grpo(gc), title=gc.title()).parent


POLICY_TRAINERS: dict[str, Callable[[LoopConfig, Path, str, Path, str], Path]] = {
    "ppo": _run_ppo,
    "dpo": _run_dpo,
    "grpo": _run_grpo,
    "rloo": _run_grpo,
}
"""policy.method -> ``fn(cfg, output, current policy, reward dir, training prompts file) -> model dir``."""


def train_policy(cfg: LoopConfig, output: Path, policy: str, reward_dir: Path, train_prompts: str) -> Path:
    return POLICY_TRAINERS[cfg.policy.method](cfg, output, policy, reward_dir, train_prompts)
