"""`rlhfkit demo`: the whole RLHF pipeline on the bundled model, on two CPU cores, in minutes.

The task follows Ziegler et al. 2019 ("Fine-Tuning Language Models from Human Preferences", the
positive-sentiment continuation task): a policy reviews films, and the preference it should learn is
"more positive". A simulated panel judges by the gold scorer ``sentiment`` of `rlhfkit.eval.gold`
(VADER compound minus a degeneracy penalty, so "great great great" is not a win), with Bradley-Terry
noise and one careless member in five, and submits through the feedback app's store like people.

Pipeline (each stage resumable; `rlhfkit.loop.loop` for the rounds):

1. SFT of SmolLM2-135M-Instruct on the shipped ``demos_small.jsonl`` (LoRA, a few steps);
2. the SFT policy answers the held-out prompts (the baseline of every comparison);
3. the policy writes K = 8 candidates for each of the 48 training prompts (``sentiment_prompts.jsonl``);
4. the candidates become ranking items of a project in ``OUTPUT/feedback.db``; the panel (5 accounts)
   takes them through the app's assignment, 3 judgments per item; QC and export see them;
5. a 3-head reward-model ensemble on the frozen SFT trunk (cached features: only the heads train,
   reading the mean state over the tokens) is fitted on the project's export and normalized on the SFT
   policy's samples;
6. 20 steps of PPO with LoRA against it (32 rollouts each), the KL penalty to the SFT policy steered to
   3.5 nats by the PI controller (beta starts at 0.1, floor 0.02);
7. evaluation on held-out prompts: gold win rate against SFT with a 95% interval, KL to SFT, proxy
   vs gold, ensemble disagreement, drift, leaderboard, annotator agreement; then the report.

Its wall time per stage and the runs behind its defaults are in ``bench/results/demo.md``.

``--serve`` runs the same pipeline with the app open on http://127.0.0.1:8000 and no simulated
panel: it prints an annotator account (random password) and waits until people have ranked the
round's items (12 prompts, one judgment each), then trains on their judgments.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from rlhfkit.config import Config, complete, require, save_config
from rlhfkit.data.fixtures import fixture_path
from rlhfkit.eval.report import write_report
from rlhfkit.files import write_json_atomic
from rlhfkit.loop.config import LoopConfig, LoopSettings
from rlhfkit.loop.loop import plan_stages, run_loop
from rlhfkit.loop.markers import PlannedStage, StageProgress
from rlhfkit.models.adapters import LoRAConfig
from rlhfkit.train.sft import SFTConfig, SFTSettings, sft

log = logging.getLogger("rlhfkit")

TARGET_WIN_RATE = 0.70
"""The demo's target: the final policy beats SFT on gold at least this often ..."""
TARGET_KL = 6.0
"""... at a KL to SFT of at most this many nats."""

HUMAN_ACCOUNT = "annotator"
"""The account `--serve` opens for people (its random password is printed at each start)."""


DEMO_SFT = SFTSettings(
    chat_template="always",  # the policy samples from templated prompts, so it learns from them
    max_steps=8,
    lr=5e-4,
    batch_size=4,
    max_length=128,
    lora=LoRAConfig(r=8, alpha=16.0),
    warmup_steps=1,
    eval_fraction=0.1,
    eval_batches=2,
    save_every=0,
)
"""The demo's short SFT: a few LoRA steps, enough to put the bundled model on the task's format."""


@dataclass(frozen=True)
class DemoConfig(Config):
    """`rlhfkit demo`: SFT -> candidates -> feedback -> reward model -> PPO -> evaluation -> report."""

    output: Path = Path("rlhfkit-demo")
    """Directory of the whole run (SFT, feedback.db, rounds, report.html); a second call resumes it."""
    serve: bool = False
    """Open the feedback app and let people give the feedback instead of the simulated panel."""
    host: str = "127.0.0.1"
    """Interface of the app with --serve."""
    port: int = 8000
    """Port of the app with --serve."""
    serve_prompts: int = 12
    """With --serve: prompts people rank (one judgment each)."""
    model: str = "smollm2"
    """The model to start from ('smollm2' = the bundled SmolLM2-135M-Instruct; 'tiny' in tests)."""
    demos: str = ""
    """Demonstrations for SFT ('' = the shipped demos_small.jsonl)."""
    prompts: str = ""
    """Prompts ('' = the shipped sentiment_prompts.jsonl)."""
    sft: SFTSettings = DEMO_SFT
    """The short SFT: any `SFTSettings` field (sft.max_steps, sft.lora.r ...); seed and progress are the loop's."""
    loop: LoopSettings = LoopSettings()
    """The loop's settings (defaults: the demo budget; e.g. loop.policy.max_steps=20)."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(str(self.output) not in ("", "."), "output (the demo directory) is required")
        require(self.serve_prompts >= 1, "serve_prompts must be >= 1")
        require(1 <= self.port <= 65535, "port must be a TCP port")


def sft_stage(cfg: DemoConfig, out: Path) -> dict[str, Any]:
    sc = complete(
        SFTConfig,
        cfg.sft,
        model=cfg.model,
        data=cfg.demos or str(fixture_path("demos_small.jsonl")),
        output=out,
        seed=cfg.loop.seed,
        progress=cfg.loop.progress,
    )
    return {"path": str(write_report(sft(sc), title=sc.title()).parent)}


def loop_config(cfg: DemoConfig, policy: str) -> LoopConfig:
    """The loop of the demo; with --serve, people in the app replace the simulated panel."""
    settings = cfg.loop
    if cfg.serve:
        settings = replace(
            settings,
            feedback=replace(
                settings.feedback,
                source="app",
                serve=True,
                host=cfg.host,
                port=cfg.port,
                overlap=1,
                gold_items=0,
                project="demo-people",
            ),
            candidates=replace(settings.candidates, prompts_per_round=cfg.serve_prompts),
        )
    return LoopConfig(
        **{f: getattr(settings, f) for f in settings.__dataclass_fields__},
        output=Path(cfg.output),
        policy_model=policy,
        prompts=cfg.prompts or str(fixture_path("sentiment_prompts.jsonl")),
    )


def open_human_account(loop_cfg: LoopConfig) -> None:
    """Create (or re-key) the people's annotator account and print its fresh random password."""
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.loop.panel_feedback import ensure_account

    store = FeedbackStore(loop_cfg.db_url())
    try:
        _, password = ensure_account(store, HUMAN_ACCOUNT, new_password=True)
    finally:
        store.close()
    fb = loop_cfg.feedback
    print(
        f"\nfeedback app: http://{fb.host}:{fb.port}  log in as {HUMAN_ACCOUNT!r} with password {password}\n"
        f"(more accounts: rlhfkit admin create-user NAME --role annotator --db {loop_cfg.db_url()})\n",
        flush=True,
    )


def final_numbers(loop_dir: Path) -> dict[str, Any]:
    """The last round's gold win rate against SFT and its KL, from eval.json."""
    evaluation = json.loads((loop_dir / "eval.json").read_text())
    last = evaluation["rounds"][-1]
    wr = last["win_rate"].get("gold") or last["win_rate"].get("proxy") or {}
    judge = "gold" if "gold" in last["win_rate"] else "proxy"
    met = bool(wr) and wr["win_rate"] >= TARGET_WIN_RATE and (last["kl"] or 0.0) <= TARGET_KL
    return {
        "judge": judge,
        "win_rate": wr.get("win_rate"),
        "ci_low": wr.get("ci_low"),
        "ci_high": wr.get("ci_high"),
        "n": wr.get("n"),
        "kl": last["kl"],
        "target_met": met,
    }


def demo(cfg: DemoConfig) -> Path:
    """Run (or resume) the demo; returns the path of its report."""
    out = Path(cfg.output)
    out.mkdir(parents=True, exist_ok=True)
    save_config(cfg, out / "demo.yaml")
    probe = loop_config(cfg, str(out / "sft"))
    plan = [PlannedStage("sft", f"SFT of {cfg.model} on demonstrations", 45.0), *plan_stages(probe)]
    stages = StageProgress(plan, enabled=cfg.loop.progress)
    sft_dir = stages.run(out, "sft", "sft", lambda: sft_stage(cfg, out / "sft"))["path"]
    loop_cfg = loop_config(cfg, sft_dir)
    if cfg.serve:
        open_human_account(loop_cfg)
    loop_dir = run_loop(loop_cfg, stages=stages)
    numbers = final_numbers(loop_dir)
    timings = {
        "total_s": round(stages.total(), 1),
        "stages_s": {k: round(v, 1) for k, v in stages.durations.items()},
        "stages_cpu_s": {k: round(v, 1) for k, v in stages.cpu.items()},
    }
    write_json_atomic(out / "demo_result.json", {**numbers, **timings})
    verdict = "target met" if numbers["target_met"] else "target NOT met"
    title = (
        f"rlhfkit demo: {numbers['judge']} win rate {numbers['win_rate']:.0%} against SFT "
        f"(95% CI {numbers['ci_low']:.0%}-{numbers['ci_high']:.0%}, n={numbers['n']}) at KL {numbers['kl']:.2f} nats "
        f"({verdict}: >= {TARGET_WIN_RATE:.0%} at <= {TARGET_KL:g} nats)"
    )
    report = write_report(loop_dir, title=title)
    stages.say(
        f"\n{title}\nwall time {stages.total() / 60:.1f} min in this process; per stage (s): "
        + ", ".join(f"{k} {v:.0f}" for k, v in stages.durations.items())
    )
    return report
