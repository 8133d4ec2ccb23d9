"""`rlhfkit loop`: rounds of candidates -> feedback -> reward model -> policy -> evaluation.

    loop_dir/
      loop.yaml                 the resolved config (a restart with another config is refused)
      feedback.db               the feedback app's database (unless feedback.db names another)
      prompts-train.jsonl, prompts-eval.jsonl
      round-00/  stages/{prompts,eval}.done, eval/{samples.jsonl,summary.json}      the initial policy
      round-01/  stages/{candidates,items,feedback,reward,policy,eval}.done
                 candidates.jsonl  reward/ (a reward-model run)  policy/ (a PPO or DPO run)  eval/
      metrics.jsonl, samples.jsonl, eval.json, best.json, report.html             (see summary.py)

Round r (Ouyang et al. 2022, sec. 3; Stiennon et al. 2020, sec. 3): the current policy samples K
candidates per prompt; they become items of the app's project; the simulated panel and/or people
judge them through the app; a reward model is trained on the project's whole export (every round's
judgments); the policy is optimized against it with PPO (or with DPO on the exported pairs) starting
from the current policy; the new policy is evaluated on held-out prompts against the initial one.

State lives in the database and the round directories; every stage ends with an atomic marker (see
`markers.py`), so a loop killed at any point restarts at the stage it was in.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from rlhfkit.config import ConfigError, save_config, to_dict
from rlhfkit.data.loaders import write_jsonl
from rlhfkit.eval.gold import GoldScorer, resolve_gold
from rlhfkit.feedback.entities import ProjectSpec
from rlhfkit.feedback.errors import Conflict
from rlhfkit.feedback.store import FeedbackStore
from rlhfkit.loop.annotators import make_panel
from rlhfkit.loop.candidates import (
    candidate_items,
    gold_items,
    gold_shortfall,
    items_from_json,
    items_to_json,
    load_prompts,
    round_prompts,
    sample_candidates,
    split_loop_prompts,
)
from rlhfkit.loop.config import LoopConfig, PPOStage
from rlhfkit.loop.evaluate import evaluate_policy
from rlhfkit.loop.markers import PlannedStage, StageProgress, round_dir
from rlhfkit.loop.panel_feedback import ensure_account, run_panel
from rlhfkit.loop.serve import AppServer, wait_for_judgments
from rlhfkit.loop.summary import write_loop_outputs
from rlhfkit.loop.training import train_policy, train_reward

log = logging.getLogger("rlhfkit")

LOOP_ACCOUNT = "rlhfkit-loop"
"""Admin account (random password) under which the loop creates projects and items (audit log)."""

AI_ACCOUNT = "ai-judge"
"""AI account under which the loop's judge (feedback.source ai or mixed) labels items."""

RESUMABLE_FIELDS = {
    "rounds",
    "progress",
    "feedback.serve",
    "feedback.host",
    "feedback.port",
    "feedback.poll_seconds",
    "feedback.wait_timeout",
}
"""Config fields a restarted loop may change (more rounds, another port ...); any other change is refused."""

ROUND_STAGES = ("candidates", "items", "feedback", "reward", "policy", "eval")
"""The stages of rounds >= 1, in order."""


def _flat(tree: dict[str, Any], prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, dict):
            out |= _flat(value, f"{prefix}{key}.")
        else:
            out[f"{prefix}{key}"] = value
    return out


def check_config(cfg: LoopConfig, loop_dir: Path) -> None:
    """Write loop.yaml; refuse to continue a loop that was started with another config."""
    path = loop_dir / "loop.yaml"
    if path.exists():
        old = _flat(yaml.safe_load(path.read_text()) or {})
        new = _flat(to_dict(cfg))
        diff = sorted(k for k in set(old) | set(new) if k not in RESUMABLE_FIELDS and old.get(k) != new.get(k))
        if diff:
            raise ConfigError(
                f"{loop_dir} holds a loop started with another config ({', '.join(diff)}); use another output directory"
            )
    save_config(cfg, path)


def expected_seconds(cfg: LoopConfig) -> dict[str, float]:
    """Rough stage durations for SmolLM2-135M on 2 CPU cores (the ETA rescales them by measured speed)."""
    per_response = 0.45 * cfg.eval.sampling.max_new_tokens / 32  # one sampled response, batched
    n_train = max(cfg.candidates.prompts_per_round, 8)
    n_eval = cfg.eval.samples_per_prompt * 16
    policy = cfg.policy
    if isinstance(policy, PPOStage):
        step = policy.rollout_batch_size * per_response * (1.6 + 0.5 * policy.ppo_epochs)
    else:  # DPO: three passes (forward, backward) over a batch of pairs, a few times a response's sampling
        step = policy.batch_size * per_response * 0.5
    return {
        "prompts": 1.0,
        "eval0": 1.2 * n_eval * per_response,
        "candidates": n_train * cfg.candidates.per_prompt * per_response + 5,
        "items": 2.0,
        "feedback": 2.0 + 0.5 * cfg.feedback.panel.members + 0.03 * n_train * cfg.feedback.overlap,
        "reward": 10 + 0.02 * cfg.reward.max_steps + cfg.reward.normalize_prompts * per_response,
        "policy": policy.max_steps * step + 5,
        "eval": 2.0 * n_eval * per_response + 15,
    }


def plan_stages(cfg: LoopConfig) -> list[PlannedStage]:
    """Every stage of the run, for the progress headers."""
    cost = expected_seconds(cfg)
    plan = [
        PlannedStage("round-00/prompts", "split prompts into training and held-out", cost["prompts"]),
        PlannedStage("round-00/eval", "round 0: evaluate the initial policy", cost["eval0"]),
    ]
    titles = {
        "candidates": "policy writes candidates",
        "items": "candidates become app items",
        "feedback": "feedback through the app",
        "reward": "reward model on all feedback so far",
        "policy": f"policy update ({cfg.policy.method.upper()})",
        "eval": "evaluation and hacking signals",
    }
    for r in range(1, cfg.rounds + 1):
        plan += [
            PlannedStage(f"round-{r:02d}/{s}", f"round {r}/{cfg.rounds}: {titles[s]}", cost[s]) for s in ROUND_STAGES
        ]
    return plan


@dataclass
class LoopRun:
    """Everything the stages of one loop process share."""

    cfg: LoopConfig
    """The loop's config."""
    loop_dir: Path
    """The loop directory."""
    store: FeedbackStore
    """The app's store (the loop's state besides the files)."""
    gold: GoldScorer | None
    """The gold scorer, if any."""
    stages: StageProgress
    """Markers and progress display."""
    server: AppServer | None = None
    """The app, when served from the loop."""

    def prompts(self, which: str) -> list[Any]:
        return load_prompts(str(self.loop_dir / f"prompts-{which}.jsonl"))

    def evaluate(self, r: int, policy: str, reward_dir: Path | None) -> dict[str, Any]:
        cfg = self.cfg
        return evaluate_policy(
            round_index=r,
            policy=policy,
            initial_policy=cfg.policy_model,
            reward_dir=reward_dir,
            prompts=self.prompts("eval"),
            gold=self.gold,
            sampling=cfg.eval.sampling,
            n=cfg.eval.samples_per_prompt,
            seed=cfg.seed * 100_003 + 7,
            out_dir=round_dir(self.loop_dir, r) / "eval",
            baseline_dir=None if r == 0 else round_dir(self.loop_dir, 0) / "eval",
            progress=cfg.progress,
        )


def stage_candidates(run: LoopRun, r: int, policy: str) -> dict[str, Any]:
    cfg = run.cfg
    prompts = round_prompts(run.prompts("train"), r, cfg.candidates.prompts_per_round, cfg.seed)
    texts = sample_candidates(
        policy,
        prompts,
        cfg.candidates.per_prompt,
        cfg.candidates.sampling,
        seed=cfg.seed * 1_000_003 + r * 10_007,
        progress=cfg.progress,
    )
    items = candidate_items(prompts, texts, r, policy, cfg.candidates.per_prompt)
    gold = (
        gold_items(items, run.gold, cfg.feedback.gold_items, r, cfg.feedback.task_type, cfg.seed)
        if run.gold is not None and cfg.feedback.gold_items
        else []
    )
    if not items:
        raise ValueError(
            f"round {r}: the policy gave no prompt two distinct candidates; raise candidates.sampling.temperature"
        )
    path = round_dir(run.loop_dir, r) / "candidates.jsonl"
    write_jsonl(path, items_to_json(items + gold))
    note = gold_shortfall(cfg.feedback.gold_items, len(gold), len(items)) if run.gold is not None else None
    if note:
        log.warning("round %d: %s", r, note)
    return {"items": len(items), "gold_items": len(gold), "file": str(path), **({"gold_note": note} if note else {})}


def ensure_project(run: LoopRun) -> int:
    """Create the loop's project if missing (checking an existing one fits); returns the loop admin's id."""
    fb = run.cfg.feedback
    admin_id, _ = ensure_account(run.store, LOOP_ACCOUNT, role="admin")
    try:
        run.store.create_project(
            ProjectSpec(
                name=fb.project,
                task_type=fb.task_type,
                overlap=fb.overlap,
                gold_rate=fb.gold_rate if fb.gold_items else 0.0,
                title=f"rlhfkit loop: {fb.project}",
            ),
            by_user=admin_id,
        )
    except Conflict:
        existing = run.store.project(fb.project)
        if (existing.task_type, existing.overlap) != (fb.task_type, fb.overlap):
            raise ConfigError(
                f"project {fb.project!r} exists with task_type={existing.task_type}, "
                f"overlap={existing.overlap}; the loop needs {fb.task_type}, {fb.overlap}"
            ) from None
    return admin_id


def stage_items(run: LoopRun, r: int) -> dict[str, Any]:
    from rlhfkit.data.loaders import iter_jsonl

    admin_id = ensure_project(run)
    rows = [row for _, row in iter_jsonl(round_dir(run.loop_dir, r) / "candidates.jsonl")]
    items = items_from_json(rows)
    try:
        added = len(run.store.add_items(run.cfg.feedback.project, items, by_user=admin_id, source="loop"))
    except Conflict:
        # add_items is one transaction: a conflict on this round's ids means a killed run added them all.
        log.info("round %d: its items are already in the project (added before a restart)", r)
        added = len(items)
    return {"added": added}


def _panel_feedback(run: LoopRun, r: int) -> dict[str, Any]:
    cfg, fb = run.cfg, run.cfg.feedback
    assert run.gold is not None  # LoopConfig requires a gold scorer for a simulated panel
    panel = make_panel(
        run.gold,
        n_members=fb.panel.members,
        careless_share=fb.panel.careless_share,
        bias_std=fb.panel.bias_std,
        temperature=fb.panel.temperature,
        seed=fb.panel.seed,
    )
    http = None
    if fb.panel.transport == "rest":
        import httpx

        assert run.server is not None
        http = httpx.Client(base_url=run.server.url, timeout=30)
    limit = (fb.panel_judgments or fb.overlap - 1) if fb.source in ("both", "mixed") else 0
    result = run_panel(
        run.store,
        fb.project,
        panel,
        transport=fb.panel.transport,
        http=http,
        max_panel_judgments=limit,
        seed=cfg.seed + r,
    )
    return {"panel_judgments": result.submitted, "panel_skips": result.skipped}


def _ai_feedback(run: LoopRun) -> dict[str, Any]:
    from rlhfkit.judges import build_asker, load_templates
    from rlhfkit.loop.judge import run_judge

    settings = run.cfg.feedback.judge
    asker = build_asker(settings, run.loop_dir / "judge")
    result = run_judge(
        run.store,
        run.cfg.feedback.project,
        asker,
        load_templates(settings.templates),
        account=AI_ACCOUNT,
        how=settings.asking(),
        run_dir=run.loop_dir / "judge",
        criterion=settings.criterion,
    )
    return {
        "ai_judgments": result.submitted,
        "ai_unlabelled": result.unlabelled,
        "ai_flip_rate": result.flip_rate,
        "ai_requests": asker.requests,
        "ai_cached": asker.hits,
    }


def stage_feedback(run: LoopRun, r: int) -> dict[str, Any]:
    cfg, fb = run.cfg, run.cfg.feedback
    info: dict[str, Any] = {}
    if fb.source in ("panel", "both", "mixed"):
        info |= _panel_feedback(run, r)
    if fb.source in ("ai", "mixed"):
        info |= _ai_feedback(run)
    if fb.source in ("app", "both"):
        url = run.server.url if run.server is not None else ""
        where = url or f"the app serving {cfg.db_url()} (rlhfkit serve --db {cfg.db_url()})"
        run.stages.say(f"   waiting for people to judge the items of project {fb.project!r}: open {where}")
        info["judgments"] = wait_for_judgments(
            run.store, fb.project, poll_seconds=fb.poll_seconds, timeout=fb.wait_timeout, progress=cfg.progress, url=url
        )
    state = run.store.progress(fb.project)
    # An AI judge may leave items unlabelled on purpose (judge.on_flip=unlabelled): train on the rest.
    if state.complete_items < state.items and fb.source not in ("ai", "mixed"):
        raise RuntimeError(
            f"round {r}: {state.items - state.complete_items} items of {fb.project!r} lack judgments "
            f"(a panel of {fb.panel.members} cannot give {fb.overlap} per item)"
        )
    return info | {"total_judgments": state.judgments, "items": state.items}


def run_round(run: LoopRun, r: int, policy: str) -> str:
    """Run (or resume) round `r` starting from `policy`; returns the round's new policy directory."""
    cfg, rdir = run.cfg, round_dir(run.loop_dir, r)
    key = f"round-{r:02d}/"
    run.stages.run(rdir, "candidates", key + "candidates", lambda: stage_candidates(run, r, policy))
    run.stages.run(rdir, "items", key + "items", lambda: stage_items(run, r))
    run.stages.run(rdir, "feedback", key + "feedback", lambda: stage_feedback(run, r))
    run.stages.run(rdir, "reward", key + "reward", lambda: {"path": str(train_reward(cfg, rdir / "reward", policy))})
    train = str(run.loop_dir / "prompts-train.jsonl")
    run.stages.run(
        rdir,
        "policy",
        key + "policy",
        lambda: {"path": str(train_policy(cfg, rdir / "policy", policy, rdir / "reward", train))},
    )
    run.stages.run(rdir, "eval", key + "eval", lambda: run.evaluate(r, str(rdir / "policy"), rdir / "reward"))
    return str(rdir / "policy")


def run_loop(cfg: LoopConfig, *, stages: StageProgress | None = None) -> Path:
    """Run (or resume) the loop; returns the loop directory, which holds report.html."""
    loop_dir = Path(cfg.output)
    loop_dir.mkdir(parents=True, exist_ok=True)
    check_config(cfg, loop_dir)
    store = FeedbackStore(cfg.db_url())
    run = LoopRun(
        cfg,
        loop_dir,
        store,
        resolve_gold(cfg.gold) if cfg.gold else None,
        stages or StageProgress(plan_stages(cfg), enabled=cfg.progress),
    )
    try:
        if cfg.feedback.serve:
            run.server = AppServer(store, cfg.feedback.host, cfg.feedback.port).start()
            run.stages.say(f"feedback app: {run.server.url}  (database {cfg.db_url()})")
        r0 = round_dir(loop_dir, 0)
        run.stages.run(
            r0,
            "prompts",
            "round-00/prompts",
            lambda: split_loop_prompts(loop_dir, cfg.prompts, cfg.eval.prompts, cfg.eval.fraction, cfg.seed),
        )
        run.stages.run(r0, "eval", "round-00/eval", lambda: run.evaluate(0, cfg.policy_model, None))
        policy, steps = cfg.policy_model, {0: 0}
        for r in range(1, cfg.rounds + 1):
            policy = run_round(run, r, policy)
            steps[r] = steps[r - 1] + cfg.policy.max_steps
            evaluation = write_loop_outputs(cfg, loop_dir, store, r, run.gold, steps)
        for warning in evaluation["hacking"]["warnings"]:
            run.stages.say(f"warning (step {warning['step']}, {warning['kind']}): {warning['message']}")
        best = evaluation["best"]
        run.stages.say(f"\nbest policy: round {best['round']} ({best['policy']}), chosen by {best['by']}")
        run.stages.say(f"report: {(loop_dir / 'report.html').resolve()}")
    finally:
        if run.server is not None:
            run.server.stop()
        store.close()
    return loop_dir
