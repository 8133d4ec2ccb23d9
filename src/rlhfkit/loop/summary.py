"""The loop-level record: metrics, examples, eval.json (win rates, leaderboard, hacking, agreement), report.

Written into the loop directory after every round (so a stopped loop still has a report):

* ``metrics.jsonl``: one row per PPO (or GRPO / RLOO) step of every round on a global step axis (proxy = ``ppo/score``,
  ``gold/score`` = mean gold of that step's rollout, ``ppo/kl``, ensemble std) and one row per round
  (``eval/*``: held-out gold, proxy, KL to the initial policy, gold win rate);
* ``samples.jsonl``: held-out responses of the initial policy (step 0) and of the latest round;
* ``eval.json``: see `rlhfkit.eval`; the reward-hacking points are PPO's per-step points (for DPO
  rounds, the per-round evaluations), and ``best`` names the best *saved* policy (a round's end);
* ``report.html``.

KL on the training points is PPO's own estimate against the round's starting policy; rounds after
the first add the held-out KL of their starting policy to the initial one. The sum is exact in the
first round and an approximation afterwards (KL is not additive along a chain of policies); the
per-round ``eval/kl`` rows are the exact held-out estimates against the initial policy.
"""

from __future__ import annotations

import itertools
import json
from collections import defaultdict
from pathlib import Path
from typing import Any

import numpy as np

from rlhfkit.data.loaders import write_jsonl
from rlhfkit.data.records import Choice, prompt_text
from rlhfkit.eval.gold import GoldScorer, repetition_stats
from rlhfkit.eval.hacking import (
    EvalPoint,
    auto_selection,
    best_checkpoint,
    hacking_summary,
)
from rlhfkit.eval.leaderboard import Battle, leaderboard
from rlhfkit.eval.report import read_jsonl, write_report
from rlhfkit.files import write_json_atomic
from rlhfkit.loop.config import LoopConfig
from rlhfkit.loop.evaluate import SUMMARY_FILE, read_samples
from rlhfkit.loop.markers import round_dir

TIE_EPS = 1e-9
"""Gold scores closer than this are a tie in leaderboard battles."""


POINT_KEYS = (("ppo/score", "ppo/kl", "ppo/reward_std"), ("rl/reward", "rl/kl", "rl/ensemble_std"))
"""(proxy, KL, ensemble std) metric names of a policy run's per-step points: PPO's, then the critic-free
trainers' (GRPO, RLOO); the loop's record names them as PPO's."""


def _mean(values: list[float]) -> float | None:
    return float(np.mean(values)) if values else None


def ppo_points(
    policy_dir: Path, gold: GoldScorer | None, step_offset: int, kl_offset: float
) -> tuple[list[EvalPoint], list[dict[str, Any]]]:
    """Per-step points and metric rows of a PPO run: proxy and KL from its metrics, gold, length and
    distinct-2 of the rollout it logged at that step."""
    metrics_path, samples_path = policy_dir / "metrics.jsonl", policy_dir / "samples.jsonl"
    if not metrics_path.exists():
        return [], []
    by_step: dict[int, list[str]] = defaultdict(list)
    prompts: dict[int, list[str]] = defaultdict(list)
    if samples_path.exists():
        for row in read_jsonl(samples_path):
            by_step[int(row["step"])].append(str(row["response"]))
            prompts[int(row["step"])].append(prompt_text(row["prompt"]))
    points, rows = [], []
    for m in read_jsonl(metrics_path):
        keys = next((k for k in POINT_KEYS if k[0] in m and k[1] in m), None)
        if keys is None:
            continue
        score_key, kl_key, std_key = keys
        step = int(m["step"])
        texts = by_step.get(step, [])
        stats = [repetition_stats(t) for t in texts]
        gold_mean = (
            _mean([float(gold(p, t)) for p, t in zip(prompts[step], texts, strict=True)]) if gold and texts else None
        )
        point = EvalPoint(
            step=step_offset + step,
            kl=float(m[kl_key]) + kl_offset,
            proxy=float(m[score_key]),
            gold=gold_mean,
            ensemble_std=m.get(std_key),
            length=_mean([s["n_tokens"] for s in stats]),
            distinct2=_mean([s["distinct2"] for s in stats]),
        )
        points.append(point)
        row = {"step": point.step, "ppo/score": point.proxy, "ppo/kl": point.kl}
        row |= {
            key: value
            for key, value in (
                ("gold/score", point.gold),
                ("ppo/reward_std", point.ensemble_std),
                ("ppo/beta", m.get("ppo/beta")),
            )
            if value is not None
        }
        rows.append(row)
    return points, rows


def round_point(summary: dict[str, Any], step: int, next_summary: dict[str, Any] | None) -> EvalPoint:
    """A round's held-out evaluation as a point. Round 0 has no reward model of its own: its proxy is
    round 1's reward model on its samples (`next_summary`; 0, that model's normalized mean, if unknown)."""
    proxy, std = summary.get("proxy"), summary.get("ensemble_std")
    if summary["round"] == 0 and next_summary is not None:
        proxy, std = next_summary.get("baseline_proxy"), next_summary.get("baseline_ensemble_std")
    return EvalPoint(
        step=step,
        kl=float(summary.get("kl") or 0.0),
        proxy=float(proxy or 0.0),
        gold=summary.get("gold"),
        ensemble_std=std,
        length=summary.get("length"),
        distinct2=summary.get("distinct2"),
    )


def round_battles(samples: dict[int, list[dict[str, Any]]]) -> list[Battle]:
    """Gold-judged battles between every two rounds, sample by sample (same prompt, same seed)."""
    battles = []
    for a, b in itertools.combinations(sorted(samples), 2):
        for sa, sb in zip(samples[a], samples[b], strict=True):
            if "gold" not in sa or "gold" not in sb:
                return []
            diff = sa["gold"] - sb["gold"]
            winner: Choice = "tie" if abs(diff) <= TIE_EPS else ("a" if diff > 0 else "b")
            battles.append(Battle(round_name(a), round_name(b), winner))
    return battles


def round_name(r: int) -> str:
    return "round-0 (initial)" if r == 0 else f"round-{r}"


def agreement(store: Any, project: str) -> dict[str, Any] | None:
    """Krippendorff's alpha (with and without AI judges) and per-annotator agreement (with the majority,
    with gold; an AI judge's flip rate) from the app's QC."""
    qc = store.qc_report(project)
    if not qc.annotators:
        return None
    alpha = next((a.alpha for a in qc.alphas if a.alpha is not None), None)
    without_ai = next((a.alpha for a in qc.alphas_without_ai if a.alpha is not None), None)
    per: dict[str, dict[str, Any]] = {}
    for a in qc.annotators:
        per[a.name] = {"majority": a.agreement, "gold": a.gold_accuracy}
        if a.role == "ai":  # an AI judge (RLAIF): its position-flip rate beside its agreement
            per[a.name]["flip_rate"] = a.flip_rate
    return {"alpha": alpha, "alpha_without_ai": without_ai, "per_annotator": per}


def _example_row(step: int, sample: dict[str, Any], score: float | None) -> dict[str, Any]:
    row = {"step": step, "prompt": sample["prompt"], "response": sample["response"], "kl": sample["kl"]}
    row |= {key: value for key, value in (("gold", sample.get("gold")), ("score", score)) if value is not None}
    return row


def _examples(loop_dir: Path, last: int, last_step: int, limit: int) -> list[dict[str, Any]]:
    """Held-out responses (first sample of the first `limit` prompts) of round 0 and of round `last`.

    Both rounds' sample files are row-aligned (same prompts, same seeds), so row i of one is the
    counterpart of row i of the other; the latest reward model scores both sides.
    """
    initial = read_samples(round_dir(loop_dir, 0) / "eval")
    final = read_samples(round_dir(loop_dir, last) / "eval") if last else []
    rows = []
    for i in [i for i, s in enumerate(initial) if s["sample"] == 0][:limit]:
        rows.append(_example_row(0, initial[i], final[i].get("baseline_proxy") if final else None))
        if final:
            rows.append(_example_row(last_step, final[i], final[i].get("proxy")))
    return rows


def _ppo_curves(
    cfg: LoopConfig,
    loop_dir: Path,
    gold: GoldScorer | None,
    rounds_done: int,
    steps: dict[int, int],
    summaries: dict[int, dict[str, Any]],
) -> tuple[list[EvalPoint], list[dict[str, Any]]]:
    """Every PPO step of every round as a point of the proxy-vs-gold curve and a metrics row (none for
    DPO, which samples nothing while it trains)."""
    points: list[EvalPoint] = []
    rows: list[dict[str, Any]] = []
    if cfg.policy.method != "ppo":
        return points, rows
    for r in range(1, rounds_done + 1):
        kl_offset = float(summaries[r - 1].get("kl") or 0.0)
        p, more = ppo_points(round_dir(loop_dir, r) / "policy", gold, steps[r - 1], kl_offset)
        points, rows = points + p, rows + more
    return points, rows


def _round_row(point: EvalPoint, summary: dict[str, Any]) -> dict[str, Any]:
    """A round's evaluation as a metrics row at its global step."""
    row = {"step": point.step, "eval/kl": point.kl, "eval/proxy_score": point.proxy}
    if point.gold is not None:
        row["eval/gold_score"] = point.gold
    row.update({f"eval/{judge}_win_rate": wr["win_rate"] for judge, wr in summary.get("win_rate", {}).items()})
    return row


def write_loop_outputs(
    cfg: LoopConfig, loop_dir: Path, store: Any, rounds_done: int, gold: GoldScorer | None, steps: dict[int, int]
) -> dict[str, Any]:
    """(Re)write metrics.jsonl, samples.jsonl, eval.json, best.json and report.html of the loop.

    `steps` maps every evaluated round to its global step (round 0 -> 0). Returns eval.json's content.
    """
    summaries = {
        r: json.loads((round_dir(loop_dir, r) / "eval" / SUMMARY_FILE).read_text()) for r in range(rounds_done + 1)
    }
    points, metric_rows = _ppo_curves(cfg, loop_dir, gold, rounds_done, steps, summaries)
    rounds = [round_point(summaries[r], steps[r], summaries.get(1)) for r in range(rounds_done + 1)]
    metric_rows += [_round_row(point, summaries[r]) for r, point in enumerate(rounds)]
    metric_rows.sort(key=lambda row: row["step"])
    write_jsonl(loop_dir / "metrics.jsonl", metric_rows)
    write_jsonl(loop_dir / "samples.jsonl", _examples(loop_dir, rounds_done, steps[rounds_done], cfg.eval.examples))

    criterion = auto_selection(rounds) if cfg.eval.select_by == "auto" else cfg.eval.select_by
    best = best_checkpoint(rounds, criterion, k=cfg.eval.conservative_k)
    best_round = next(r for r, p in enumerate(rounds) if p.step == best.step)
    best_info = {
        "round": best_round,
        "policy": summaries[best_round]["policy"],
        "by": criterion,
        "gold": best.gold,
        "proxy": best.proxy,
        "kl": best.kl,
    }
    detector_points = points or rounds
    hacking = hacking_summary(
        detector_points, window=cfg.eval.window, tolerance=cfg.eval.tolerance, std_tolerance=cfg.eval.std_tolerance
    )
    hacking["best"] = {"step": best.step, "by": criterion, "round": best_round}
    win_rates = [
        {"label": f"round {r} vs round 0 ({judge})", **wr}
        for r in range(1, rounds_done + 1)
        for judge, wr in summaries[r].get("win_rate", {}).items()
    ]
    battles = round_battles({r: read_samples(round_dir(loop_dir, r) / "eval") for r in range(rounds_done + 1)})
    evaluation = {
        "win_rate": win_rates,
        "leaderboard": [row.to_dict() for row in leaderboard(battles, n_boot=cfg.eval.bootstrap, seed=cfg.seed)]
        if battles
        else [],
        "hacking": hacking,
        "agreement": agreement(store, cfg.feedback.project),
        "rounds": [summaries[r] for r in range(rounds_done + 1)],
        "best": best_info,
    }
    write_json_atomic(loop_dir / "eval.json", evaluation)
    write_json_atomic(loop_dir / "best.json", best_info)
    write_report(loop_dir, title=f"rlhfkit loop: {rounds_done} round(s) from {cfg.policy_model}")
    return evaluation
