"""RLAIF on the demo task: the bundled model as a judge beside a simulated panel, and a loop fed by it.

    .venv/bin/python bench/aif_demo.py agreement   # judge vs panel vs gold on the same items (minutes)
    .venv/bin/python bench/aif_demo.py loop        # `rlhfkit demo` with loop.feedback.source=ai (~15 min)
    add --compare scores to either: the judge scores each review alone instead of comparing two

agreement: SmolLM2-135M-Instruct (bundled) writes two reviews for each of the demo's prompts; they
become pairwise items of a feedback project; the demo's simulated panel (5 members, one careless,
judging by the gold sentiment scorer with noise) and the same bundled model as an AI judge (asked
"which review is more positive", both orders, flips -> tie) label every item through the store. The
result: the judge's agreement with gold and with the panel's majority, the panel's with gold, the
judge's flip rate, and Krippendorff's alpha with and without the judge (from the app's QC).

loop: the demo's pipeline with the AI judge as the only annotator (overlap 1, ranking items of K=8
read from the judge's P(best) in both orders); its gold win rate against SFT and KL come from the
demo's own evaluation. Both write bench/results/aif_demo.json and .md (run under the bench lock).
"""

from __future__ import annotations

import argparse
import json
import sys
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, bench_lock, cpu_name, markdown_table, run_measured

ROOT = Path(__file__).resolve().parents[1]
CRITERION = "Which review is more positive about the film, while still reading as a sensible review?"
"""What the judge is asked side by side (the demo's task: positive sentiment, not degenerate text)."""
SCORE_QUESTION = "Is the sentiment of this review positive or negative?"
"""What the judge is asked about one review under --compare scores (answers: positive, negative)."""
SCORE_LABELS = ("positive", "negative")
TIE_EPS = 0.05
"""Gold-score differences below this are ties (no gold preference)."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("part", choices=("agreement", "loop"))
    p.add_argument("--output", type=Path, default=Path("/tmp/rlhfkit-aif"))
    p.add_argument("--prompts", type=int, default=64, help="agreement: prompts (items)")
    p.add_argument(
        "--model", default="smollm2", help="agreement: the model that writes and judges ('tiny' for a smoke run)"
    )
    p.add_argument("--seed", type=int, default=0)
    p.add_argument("--compare", choices=("both_orders", "scores"), default="both_orders", help="how the judge compares")
    p.add_argument("--override", action="append", default=[], help="loop: extra demo key=value")
    return p.parse_args(argv)


def _items(model: str, n: int, seed: int) -> list[tuple[str, str, str]]:
    from rlhfkit.data.fixtures import fixture_path
    from rlhfkit.loop.candidates import load_prompts
    from rlhfkit.models.loading import load_model
    from rlhfkit.rollout.generate import SamplingConfig, sample_texts

    prompts = [p for p in load_prompts(str(fixture_path("sentiment_prompts.jsonl"))) if isinstance(p, str)][:n]
    loaded = load_model(model)
    texts = sample_texts(
        loaded.model,
        loaded.tokenizer,
        prompts,
        SamplingConfig(max_new_tokens=32, temperature=0.8, batch_size=32),
        n=2,
        seed=seed,
    )
    return [(p, a, b) for p, (a, b) in zip(prompts, texts, strict=True) if a.strip() != b.strip()]


def judge_settings(model: str, compare: str) -> Any:
    from rlhfkit.judges import JudgeSettings

    if compare == "scores":
        return JudgeSettings(judge=model, compare="scores", criterion=SCORE_QUESTION, score_labels=SCORE_LABELS)
    return JudgeSettings(judge=model, on_flip="tie", criterion=CRITERION)


def agreement(out: Path, n: int, seed: int, model: str = "smollm2", compare: str = "both_orders") -> dict[str, Any]:
    from collections import Counter

    from rlhfkit.eval.gold import resolve_gold
    from rlhfkit.feedback.entities import NewItem, ProjectSpec
    from rlhfkit.feedback.store import FeedbackStore
    from rlhfkit.judges import build_asker, load_templates
    from rlhfkit.loop.annotators import make_panel
    from rlhfkit.loop.judge import run_judge
    from rlhfkit.loop.panel_feedback import run_panel

    out.mkdir(parents=True, exist_ok=True)
    items = _items(model, n, seed)
    gold = resolve_gold("sentiment")
    store = FeedbackStore(f"sqlite:///{out / 'feedback.db'}")
    store.create_project(ProjectSpec(name="aif", task_type="pairwise", overlap=6))
    ids = store.add_items(
        "aif", [NewItem(prompt=p, responses=(a, b), external_id=str(i)) for i, (p, a, b) in enumerate(items)]
    )
    run_panel(store, "aif", make_panel(gold, n_members=5, careless_share=0.2, temperature=0.1, seed=seed), seed=seed)
    settings = judge_settings(model, compare)
    asker = build_asker(settings, out / "judge")
    judged = run_judge(
        store,
        "aif",
        asker,
        load_templates(),
        account="ai-smollm2",
        how=settings.asking(),
        run_dir=out / "judge",
        criterion=settings.criterion,
    )
    # Per item: gold's side, the panel's majority side, the judge's side ("first"/"second"/"tie").
    side: dict[int, dict[str, list[str]]] = {i: {"panel": [], "judge": []} for i in ids}
    for j in store.judgments("aif"):
        refs = sorted(r["id"] for r in store.item(j["item_id"])["responses"])
        choice = j["payload"]["choice"]
        label = choice if choice in ("tie", "both_bad") else ("first", "second")[refs.index(choice)]
        side[j["item_id"]]["judge" if j["annotator"] == "ai-smollm2" else "panel"].append(label)
    verdicts = {v["item_id"]: v for v in map(json.loads, (out / "judge" / "verdicts.jsonl").read_text().splitlines())}
    rows = []
    for item_id, (p, a, b) in zip(ids, items, strict=True):
        diff = gold(p, a) - gold(p, b)
        g = "tie" if abs(diff) < TIE_EPS else ("first" if diff > 0 else "second")
        votes = Counter(side[item_id]["panel"]).most_common()
        majority = votes[0][0] if votes and (len(votes) == 1 or votes[0][1] > votes[1][1]) else "split"
        # The side of the mean P(first) over both orders, flips or not: is any signal left under the bias?
        mean_side = "first" if verdicts[item_id]["p_first"] > 0.5 else "second"
        rows.append(
            {"gold": g, "panel": majority, "judge": (side[item_id]["judge"] or ["none"])[0], "mean_p": mean_side}
        )
    forward = [v["p_forward"] for v in verdicts.values()]
    reverse = [v["p_reverse"] for v in verdicts.values()]
    position = {
        "mean_p_first_when_shown_first": sum(forward) / len(forward),
        "mean_p_first_when_shown_second": sum(reverse) / len(reverse),
    }
    qc = store.qc_report("aif")
    store.close()
    return summarize(rows, qc, judged, asker) | {"position": position}


def _agree(rows: list[dict[str, str]], x: str, y: str) -> dict[str, Any]:
    """Share of items where x and y name the same winner, over items where y names one (not tie/split)."""
    decided = [r for r in rows if r[y] in ("first", "second")]
    hits = sum(r[x] == r[y] for r in decided)
    return {
        "agree": hits / len(decided) if decided else None,
        "n": len(decided),
        "x_ties": sum(r[x] == "tie" for r in decided),
    }


def summarize(rows: list[dict[str, str]], qc: Any, judged: Any, asker: Any) -> dict[str, Any]:
    judge_row = next(a for a in qc.annotators if a.role == "ai")
    panel_rows = [a for a in qc.annotators if a.role != "ai"]
    return {
        "items": len(rows),
        "judge_vs_gold": _agree(rows, "judge", "gold"),
        "judge_vs_panel_majority": _agree(rows, "judge", "panel"),
        "panel_majority_vs_gold": _agree(rows, "panel", "gold"),
        "judge_mean_probability_vs_gold": _agree(rows, "mean_p", "gold"),
        "judge_flip_rate": judged.flip_rate,
        "judge_questions": judged.questions,
        "qc_judge_agreement_with_majority": judge_row.agreement,
        "qc_panel_agreement_with_majority": {a.name: a.agreement for a in panel_rows},
        "alpha_with_judge": [a.alpha for a in qc.alphas],
        "alpha_without_judge": [a.alpha for a in qc.alphas_without_ai],
        "judge_requests": asker.requests,
        "judge_cached": asker.hits,
    }


def loop(out: Path, overrides: list[str], compare: str = "both_orders") -> dict[str, Any]:
    settings = judge_settings("smollm2", compare)
    judge = [f"loop.feedback.judge.criterion={settings.criterion}", f"loop.feedback.judge.compare={compare}"]
    if compare == "scores":
        judge.append("loop.feedback.judge.score_labels=[" + ",".join(settings.score_labels) + "]")
    cmd = [
        sys.executable, "-m", "rlhfkit.cli", "demo", "--output", str(out),
        "loop.feedback.source=ai", "loop.feedback.overlap=1", *judge, "loop.progress=false", *overrides,
    ]  # fmt: skip
    out.parent.mkdir(parents=True, exist_ok=True)
    run = run_measured(
        cmd,
        log_path=out.parent / f"{out.name}.log",
        cwd=ROOT,
        env={**__import__("os").environ, "PYTHONPATH": str(ROOT / "src")},
    )
    result: dict[str, Any] = {"returncode": run.returncode, "run": run.as_dict()}
    if (out / "demo_result.json").exists():
        result |= json.loads((out / "demo_result.json").read_text())
        feedback = json.loads((out / "round-01" / "stages" / "feedback.done").read_text())
        result["feedback"] = {k: v for k, v in feedback.items() if k.startswith(("ai_", "total", "items"))}
    return result


def write_results(key: str, result: dict[str, Any]) -> None:
    """Keep `result` under `key` in aif_demo.json and rewrite aif_demo.md from every key there."""
    path = RESULTS_DIR / "aif_demo.json"
    data = json.loads(path.read_text()) if path.exists() else {}
    data[key] = {**result, "cpu": cpu_name()}
    path.write_text(json.dumps(data, indent=2) + "\n")
    lines = ["# RLAIF on the demo task (bench/aif_demo.py)", ""]
    for name, a in data.items():
        if name.startswith("agreement"):
            table = [
                [k, f"{v['agree']:.3f}" if v["agree"] is not None else "n/a", str(v["n"]), str(v["x_ties"])]
                for k, v in a.items()
                if isinstance(v, dict) and "agree" in v
            ]
            lines += [f"## {name}", "", f"Items: {a['items']}; judge flip rate {a['judge_flip_rate']}; Krippendorff's alpha "
                      f"with the judge {a['alpha_with_judge']}, without {a['alpha_without_judge']}; judge requests "
                      f"{a['judge_requests']}; wall {a.get('wall_s')} s, other cores busy {a.get('other_cpu_cores')}", "",
                      markdown_table(["agreement", "share", "items decided", "of them ties"], table), ""]  # fmt: skip
        elif name.startswith("loop") and "run" in a:
            lines += [f"## {name}", "", f"Gold win rate {a.get('win_rate')} (95% CI {a.get('ci_low')}-{a.get('ci_high')}, "
                      f"n={a.get('n')}) at KL {a.get('kl')}; wall {a['run']['wall_s']:.0f} s, other cores busy "
                      f"{a['run']['other_cpu_cores']:.2f}; feedback {a.get('feedback')}", ""]  # fmt: skip
    (RESULTS_DIR / "aif_demo.md").write_text("\n".join(lines))


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    with bench_lock():
        if args.part == "agreement":
            import os
            import time

            cpu0, t0 = os.times(), time.perf_counter()
            busy0 = __import__("psutil").cpu_times()
            result = agreement(
                args.output / f"agreement-{args.compare}", args.prompts, args.seed, args.model, args.compare
            )
            wall = time.perf_counter() - t0
            busy1 = __import__("psutil").cpu_times()
            mine = (os.times().user - cpu0.user) + (os.times().system - cpu0.system)
            total = (busy1.user + busy1.system) - (busy0.user + busy0.system)
            result |= {"wall_s": round(wall, 1), "other_cpu_cores": round(max(0.0, total - mine) / wall, 2)}
        else:
            result = loop(args.output / f"loop-{args.compare}", args.override, args.compare)
    write_results(args.part if args.compare == "both_orders" else f"{args.part}_scores", result)
    print(json.dumps(result, indent=2, default=str))


if __name__ == "__main__":
    main(sys.argv[1:])
