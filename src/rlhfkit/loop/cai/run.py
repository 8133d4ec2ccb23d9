"""`rlhfkit cai`: Constitutional AI end to end, resumable stage by stage.

    out/
      cai.yaml                       the resolved config
      stages/{revise,sft,label,rl}.done   markers (a restarted run skips what is done; after a config
                                     change it runs again the stages the change reaches)
      sl/traces.jsonl                every response, critique and revision, with the principle drawn
      sl/revisions.jsonl             the final revisions as demonstrations; sl/sft/ the SFT run on them
      rl/preferences.jsonl           every pair the AI compared: both orders, the flip, the label
      rl/pairs.jsonl                 the decided pairs; rl/judge-cache.sqlite the judge's answers
      rl/reward/ (rl.method=ppo)     the preference model; rl/policy/ the final policy (DPO or PPO run)
      report.html                    every intermediate text (rlhfkit.loop.cai.report)

1. Supervised stage (Bai et al. 2022, sec. 3): the starting policy answers the red-team prompts,
   critiques and revises its answer k times under drawn principles; SFT on the final revisions.
2. RL stage (sec. 4): the SFT policy samples two responses per prompt; the judge picks one under a
   drawn feedback principle, in both orders; DPO on the decided pairs, or a reward model then PPO.
"""

from __future__ import annotations

import logging
import shutil
from pathlib import Path
from typing import Any

from rlhfkit.config import ConfigError, build_config, complete, save_config
from rlhfkit.data.loaders import iter_jsonl
from rlhfkit.data.records import PromptText
from rlhfkit.eval.report import write_report
from rlhfkit.files import write_jsonl_atomic
from rlhfkit.judges import build_asker, flip_rate, load_templates
from rlhfkit.loop.cai.config import CAIConfig
from rlhfkit.loop.cai.preferences import ai_preferences, preference_pairs
from rlhfkit.loop.cai.principles import load_constitution
from rlhfkit.loop.cai.report import write_cai_report
from rlhfkit.loop.cai.supervised import critique_and_revise, demonstrations
from rlhfkit.loop.candidates import load_prompts
from rlhfkit.loop.config import DPOStage
from rlhfkit.loop.markers import PlannedStage, StageProgress, is_done, marker_path
from rlhfkit.train.dpo import DPOConfig, dpo
from rlhfkit.train.ppo import PPOConfig, ppo
from rlhfkit.train.reward import RewardConfig, train_reward_model
from rlhfkit.train.sft import SFTConfig, sft

log = logging.getLogger("rlhfkit")


def first_user_turn(prompt: PromptText) -> PromptText:
    """The first user message of a conversation (a text prompt is returned as it is)."""
    if isinstance(prompt, str):
        return prompt
    return next((m["content"] for m in prompt if m["role"] == "user"), prompt)


def select_prompts(cfg: CAIConfig) -> list[PromptText]:
    prompts = load_prompts(cfg.prompts)
    if cfg.first_turn:
        prompts = [first_user_turn(p) for p in prompts]
    return prompts[: cfg.max_prompts] if cfg.max_prompts else prompts


def _read(path: Path) -> list[dict[str, Any]]:
    return [row for _, row in iter_jsonl(path)]


def stage_revise(cfg: CAIConfig, out: Path) -> dict[str, Any]:
    from rlhfkit.models.loading import load_model

    loaded = load_model(cfg.policy_model)
    constitution = load_constitution(cfg.principles)
    traces = critique_and_revise(
        loaded.model, loaded.tokenizer, select_prompts(cfg), constitution, cfg.revisions, cfg.sampling, cfg.seed
    )
    write_jsonl_atomic(out / "sl" / "traces.jsonl", traces)
    demos = demonstrations(traces)
    write_jsonl_atomic(out / "sl" / "revisions.jsonl", demos)
    return {"prompts": len(traces), "demonstrations": len(demos)}


def stage_sft(cfg: CAIConfig, out: Path) -> dict[str, Any]:
    sc = complete(
        SFTConfig,
        cfg.sft,
        output=out / "sl" / "sft",
        model=cfg.policy_model,
        data=str(out / "sl" / "revisions.jsonl"),
        seed=cfg.seed,
        progress=cfg.progress,
    )
    return {"path": str(write_report(sft(sc), title=sc.title()).parent)}


def stage_label(cfg: CAIConfig, out: Path) -> dict[str, Any]:
    from rlhfkit.models.loading import load_model

    loaded = load_model(out / "sl" / "sft")
    asker = build_asker(cfg.judge, out / "rl")
    rows = ai_preferences(
        loaded.model,
        loaded.tokenizer,
        [t["prompt"] for t in _read(out / "sl" / "traces.jsonl")],
        asker,
        load_templates(cfg.judge.templates),
        load_constitution(cfg.principles),
        cfg.pair_sampling,
        how=cfg.judge.asking(),
        seed=cfg.seed + 17,
    )
    write_jsonl_atomic(out / "rl" / "preferences.jsonl", rows)
    pairs = preference_pairs(rows)
    if not pairs:
        raise ConfigError(
            f"the judge decided no pair of {len(rows)} (identical, tied or flipped both ways; see {out / 'rl' / 'preferences.jsonl'}):"
            " nothing to train the RL stage on; a stronger judge (judge.judge=URL judge.model=NAME) is needed"
        )
    write_jsonl_atomic(out / "rl" / "pairs.jsonl", pairs)
    judged = [r for r in rows if r["label"] != "identical"]
    return {
        "compared": len(judged),
        "identical": len(rows) - len(judged),
        "pairs": len(pairs),
        "ties": sum(r["label"] == "tie" for r in judged),
        "unlabelled": sum(r["label"] is None for r in judged),
        "flip_rate": flip_rate([r["flipped"] for r in judged]) if cfg.judge.compare == "both_orders" else None,
        "judge_requests": asker.requests,
        "judge_cached": asker.hits,
    }


def stage_rl(cfg: CAIConfig, out: Path) -> dict[str, Any]:
    sft_dir, pairs = str(out / "sl" / "sft"), str(out / "rl" / "pairs.jsonl")
    if isinstance(cfg.rl, DPOStage):
        dc = complete(
            DPOConfig,
            cfg.rl,
            output=out / "rl" / "policy",
            model=sft_dir,
            data=pairs,
            kind="pairs",
            seed=cfg.seed,
            progress=cfg.progress,
        )
        return {"path": str(write_report(dpo(dc), title=dc.title()).parent)}
    rc = complete(
        RewardConfig,
        cfg.reward,
        output=out / "rl" / "reward",
        model=cfg.reward.model or sft_dir,
        data=(pairs,),
        kind="pairs",
        seed=cfg.seed,
        progress=cfg.progress,
    )
    reward_dir = write_report(train_reward_model(rc), title=rc.title()).parent
    prompts = out / "rl" / "prompts.jsonl"
    write_jsonl_atomic(prompts, [{"prompt": t["prompt"]} for t in _read(out / "sl" / "traces.jsonl")])
    pc = complete(
        PPOConfig,
        cfg.rl,
        output=out / "rl" / "policy",
        policy=sft_dir,
        reward=str(reward_dir),
        prompts=str(prompts),
        seed=cfg.seed,
        progress=cfg.progress,
    )
    return {"reward": str(reward_dir), "path": str(write_report(ppo(pc), title=pc.title()).parent)}


STAGES = (
    ("revise", "supervised stage: responses, critiques and revisions", stage_revise),
    ("sft", "supervised stage: SFT on the final revisions", stage_sft),
    ("label", "RL stage: the AI compares pairs of the SFT policy's responses", stage_label),
    ("rl", "RL stage: DPO on the AI's pairs, or a reward model then PPO", stage_rl),
)
"""(marker, title, fn(cfg, out) -> info) in order."""

STAGE_INPUTS = {
    "revise": ("prompts", "first_turn", "max_prompts", "policy_model", "principles", "revisions", "sampling", "seed"),
    "sft": ("sft",),
    "label": ("pair_sampling", "judge"),
    "rl": ("rl", "reward"),
}
"""Stage -> the config fields it reads first (a stage also depends on every stage before it)."""

STAGE_DIRS = {"sft": ("sl/sft",), "rl": ("rl/policy", "rl/reward")}
"""Stage -> run directories it trains into (cleared before it runs again: a trainer resumes what it finds)."""


def stale_stages(saved: CAIConfig, cfg: CAIConfig) -> tuple[list[str], list[str]]:
    """(changed fields, stages to run again: from the first one that reads a changed field on)."""
    changed = [f for fields in STAGE_INPUTS.values() for f in fields if getattr(saved, f) != getattr(cfg, f)]
    names = [name for name, _, _ in STAGES]
    first = next((i for i, name in enumerate(names) if set(STAGE_INPUTS[name]) & set(changed)), len(names))
    return changed, names[first:]


def _forget_stale(cfg: CAIConfig, out: Path) -> None:
    """A run directory resumed with another config runs again the stages that config changes (their
    markers and training directories removed), instead of handing back results of the old one."""
    if not (out / "cai.yaml").exists():
        return
    try:
        changed, stale = stale_stages(build_config(CAIConfig, yaml_path=out / "cai.yaml"), cfg)
    except ConfigError:  # written by another version: trust none of its stages
        changed, stale = ["(cai.yaml unreadable)"], [name for name, _, _ in STAGES]
    stale = [name for name in stale if is_done(out, name)]
    if not stale:
        return
    log.info("cai: the config changed (%s): running %s again", ", ".join(changed), ", ".join(stale))
    for name in stale:
        marker_path(out, name).unlink()
        for sub in STAGE_DIRS.get(name, ()):
            shutil.rmtree(out / sub, ignore_errors=True)


def cai(cfg: CAIConfig) -> str:
    """Run (or resume) Constitutional AI; returns where the final policy and the report are."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    _forget_stale(cfg, out)
    save_config(cfg, out / "cai.yaml")
    progress = StageProgress([PlannedStage(name, title, 60.0) for name, title, _ in STAGES], enabled=cfg.progress)
    summary: dict[str, Any] = {}
    for name, _, fn in STAGES:
        info = progress.run(out, name, name, lambda fn=fn: fn(cfg, out))  # type: ignore[misc]
        summary |= {f"{name}.{k}": v for k, v in info.items() if k not in ("stage", "finished_at")}
    report = write_cai_report(out, _read(out / "sl" / "traces.jsonl"), _read(out / "rl" / "preferences.jsonl"), summary)
    return f"final policy: {out / 'rl' / 'policy'}\nreport: {report}"
