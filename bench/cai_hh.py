"""Constitutional AI on HH-RLHF's harmless prompts, judged by a reward model trained on human pairs it never saw.

    .venv/bin/python bench/cai_hh.py                  # split, reward model, `rlhfkit cai`, evaluation
    .venv/bin/python bench/cai_hh.py --cai-prompts 48 --override revisions=1   # a smaller run

Issue 22's target: the final CAI policy beats the starting policy (bundled SmolLM2-135M-Instruct)
with a win rate >= 60% judged by a reward model trained with `rlhfkit reward train` on human HH-RLHF
pairs that CAI never saw, on held-out prompts, at KL <= 6 nats.

The rows of ``../shared/data/hh-rlhf-harmless/dev.jsonl`` are split three ways, in file order: the
first ``--cai-prompts`` rows give CAI's prompts (their first human turn), the next ``--eval-prompts``
rows the held-out prompts (first human turn; any text equal to a CAI prompt is dropped), the rest
train the reward model (configs/reward_hh.yaml, whole trunk frozen: only the head trains, on cached
features, to fit the two shared cores). Both policies then answer the held-out prompts with the
same seeds; the reward model scores both; KL(final || start) is the k1 estimate over the final
policy's own samples. Every step runs under the bench lock; results go to bench/results/cai_hh.json
and .md with each step's wall time and how busy the other cores were.
"""

from __future__ import annotations

import argparse
import json
import os
import sys
from pathlib import Path
from typing import Any

from common import RESULTS_DIR, bench_lock, cpu_name, run_measured

ROOT = Path(__file__).resolve().parents[1]
DATA = ROOT.parent / "shared" / "data" / "hh-rlhf-harmless" / "dev.jsonl"
TARGET_WIN, TARGET_KL = 0.60, 6.0


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--output", type=Path, default=Path("/tmp/rlhfkit-cai-hh"))
    p.add_argument("--cai-prompts", type=int, default=96)
    p.add_argument("--eval-prompts", type=int, default=64)
    p.add_argument("--rm-steps", type=int, default=300)
    p.add_argument(
        "--rm-rows", type=int, default=800, help="human pairs for the reward model (0 = every remaining row)"
    )
    p.add_argument("--override", action="append", default=[], help="extra `rlhfkit cai` key=value (repeatable)")
    p.add_argument("--keep-rm", action="store_true", help="reuse OUTPUT/rm from an earlier run of the same split")
    return p.parse_args(argv)


def _first_turn(dialogue: str) -> str:
    return dialogue.split("\n\nHuman:", 1)[-1].split("\n\nAssistant:", 1)[0].strip()


def split(out: Path, n_cai: int, n_eval: int, n_rm: int) -> dict[str, int]:
    sys.path.insert(0, str(ROOT / "src"))
    from rlhfkit.data.loaders import load_records
    from rlhfkit.loop.cai.run import first_user_turn

    rows = [json.loads(line) for line in DATA.read_text().splitlines() if line.strip()]
    prompts = [first_user_turn(r.prompt) for r in load_records(str(DATA), "prompts", skip_invalid=True).records]
    cai = prompts[:n_cai]
    held = [p for p in prompts[n_cai : n_cai + n_eval] if p not in cai]
    out.mkdir(parents=True, exist_ok=True)
    for name, items in (("cai_prompts", cai), ("eval_prompts", held)):
        (out / f"{name}.jsonl").write_text("".join(json.dumps({"prompt": p}) + "\n" for p in items))
    seen = set(cai) | set(held)
    # Every row after the prompt rows whose first human turn is neither a CAI nor a held-out prompt.
    rm_rows = [r for r in rows[n_cai + n_eval :] if _first_turn(r["chosen"]) not in seen][: n_rm or None]
    (out / "rm_pairs.jsonl").write_text("".join(json.dumps(r) + "\n" for r in rm_rows))
    return {"cai_prompts": len(cai), "eval_prompts": len(held), "rm_pairs": len(rm_rows)}


def cli(out: Path, name: str, args: list[str]) -> dict[str, Any]:
    env = {**os.environ, "PYTHONPATH": str(ROOT / "src")}
    run = run_measured([sys.executable, "-m", "rlhfkit.cli", *args], log_path=out / f"{name}.log", cwd=ROOT, env=env)
    if run.returncode != 0:
        raise SystemExit(f"{name} failed (exit {run.returncode}); see {out / f'{name}.log'}")
    return run.as_dict()


EVAL_SAMPLING = {"max_new_tokens": 48, "temperature": 0.7, "batch_size": 32}
"""How both policies answer the held-out prompts (also the referee probe's sampling)."""
EVAL_SAMPLES, EVAL_SEED = 2, 1234
"""Answers per held-out prompt, and the sampling seed both sides share."""


def versus(ours: list[float], theirs: list[float]) -> dict[str, float]:
    """The referee's win rate of `ours` over `theirs` (paired scores) with its 95% interval."""
    from rlhfkit.eval.winrate import win_rate

    wr = win_rate(ours, theirs)
    return {"win_rate": wr.win_rate, "ci_low": wr.ci_low, "ci_high": wr.ci_high, "n": len(ours)}


def evaluate(out: Path, policy: str, baseline: str) -> dict[str, Any]:
    from rlhfkit.loop.candidates import load_prompts
    from rlhfkit.loop.evaluate import sample_with_kl
    from rlhfkit.rollout.generate import SamplingConfig
    from rlhfkit.rollout.rewards import resolve_reward

    prompts = load_prompts(str(out / "eval_prompts.jsonl"))
    sampling = SamplingConfig(**EVAL_SAMPLING)
    rows, policy_texts, kls = sample_with_kl(policy, baseline, prompts, sampling, EVAL_SAMPLES, EVAL_SEED, False)
    _, base_texts, _ = sample_with_kl(baseline, None, prompts, sampling, EVAL_SAMPLES, EVAL_SEED, False)
    rm = resolve_reward(str(out / "rm"))
    wr = versus(rm(rows, policy_texts).scores.tolist(), rm(rows, base_texts).scores.tolist())
    kl = sum(kls) / len(kls)
    return {
        **wr,
        "kl": kl,
        "target_met": wr["win_rate"] >= TARGET_WIN and kl <= TARGET_KL,
        "examples": [
            {"prompt": p, "start": b, "final": t}
            for p, b, t in list(zip(rows, base_texts, policy_texts, strict=True))[:6]
        ],
    }


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    out = args.output
    result: dict[str, Any] = {"cpu": cpu_name()}

    def save() -> None:  # after every measurement: a stopped run keeps what it measured
        (RESULTS_DIR / "cai_hh.json").write_text(json.dumps(result, indent=2, default=str) + "\n")

    with bench_lock():
        result["split"] = split(out, args.cai_prompts, args.eval_prompts, args.rm_rows)
        rm_args = ["reward", "train", "--config", "configs/reward_hh.yaml", "--data", str(out / "rm_pairs.jsonl")]
        rm_args += ["--output", str(out / "rm"), "freeze_layers=-1", "pooling=mean", f"max_steps={args.rm_steps}"]
        rm_args += ["batch_size=16", "lr=3e-3", "eval_every=100", "save_every=100", "progress=false"]
        kept = args.keep_rm and (out / "rm" / "config.json").exists() and (out / "reward.json").exists()
        result["reward_model"] = {
            "run": json.loads((out / "reward.json").read_text()) if kept else cli(out, "reward", rm_args)
        }
        (out / "reward.json").write_text(json.dumps(result["reward_model"]["run"]))
        summary = out / "rm" / "metrics.jsonl"
        if summary.exists():
            evals = [json.loads(x) for x in summary.read_text().splitlines() if "eval" in x]
            result["reward_model"]["last_eval"] = evals[-1] if evals else None
        cai_args = ["cai", "--config", "configs/cai_hh.yaml", "--output", str(out / "cai")]
        cai_args += [f"prompts={out / 'cai_prompts.jsonl'}", "progress=false", *args.override]
        try:
            result["cai"] = {"run": cli(out, "cai", cai_args)}
            result["cai"]["label"] = json.loads((out / "cai" / "stages" / "label.done").read_text())
            result["final_vs_start"] = evaluate(out, str(out / "cai" / "rl" / "policy"), "smollm2")
        except SystemExit as stop:  # e.g. the judge decided no pair: the SFT stage is still measured
            result["cai"] = {"error": str(stop)}
        save()
        result["sft_vs_start"] = evaluate(out, str(out / "cai" / "sl" / "sft"), "smollm2")
    save()
    if "final_vs_start" not in result:
        print(json.dumps(result, indent=2, default=str))
        return
    f, s = result["final_vs_start"], result["sft_vs_start"]
    lines = [
        "# Constitutional AI on HH-RLHF harmless prompts (bench/cai_hh.py)",
        "",
        f"Split: {result['split']}; CPU {result['cpu']}.",
        f"Final (CAI SL + DPO) vs start: reward-model win rate {f['win_rate']:.3f} (95% CI {f['ci_low']:.3f}-{f['ci_high']:.3f}, "
        f"n={f['n']}) at KL {f['kl']:.2f} nats; target >= {TARGET_WIN:.0%} at <= {TARGET_KL:g} nats: "
        f"{'met' if f['target_met'] else 'NOT met'}.",
        f"SFT-on-revisions vs start: win rate {s['win_rate']:.3f} at KL {s['kl']:.2f}.",
        f"AI labels: {json.dumps(result['cai']['label'])}",
        f"Reward model: last eval {json.dumps(result['reward_model'].get('last_eval'))}",
        f"Wall time (s) / other cores busy: reward {result['reward_model']['run']['wall_s']:.0f} / "
        f"{result['reward_model']['run']['other_cpu_cores']:.2f}, cai {result['cai']['run']['wall_s']:.0f} / "
        f"{result['cai']['run']['other_cpu_cores']:.2f}.",
        "",
    ]
    (RESULTS_DIR / "cai_hh.md").write_text("\n".join(lines))
    print("\n".join(lines))


if __name__ == "__main__":
    main(sys.argv[1:])
