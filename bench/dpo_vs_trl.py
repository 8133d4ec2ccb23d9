"""DPO: rlhfkit vs TRL's DPOTrainer on the bundled SmolLM2-135M, HH-RLHF harmless pairs, CPU.

    .venv/bin/python bench/dpo_vs_trl.py throughput   # step throughput and peak memory, both sides
    .venv/bin/python bench/dpo_vs_trl.py accuracy     # rlhfkit: held-out implicit-reward accuracy
    .venv/bin/python bench/dpo_vs_trl.py losses       # every variant's loss vs TRL's, same batch
    .venv/bin/python bench/dpo_vs_trl.py report       # bench/results/dpo.md from the three above

Each job stays under about ten minutes and holds the machine's bench lock while it measures; its
numbers go to WORK/<job>.json (default WORK: /tmp/rlhfkit-dpo-bench) and `report` renders them.

Both sides get the same model directory (rlhfkit's cached safetensors of SmolLM2-135M-Instruct),
the same pairs, batch, max length, learning rate (constant), AdamW betas, clipping, beta and steps,
with full fine-tuning on both. Pairs whose prompt + longer response exceeds max length are dropped
first, so neither side's truncation rule changes what is trained, and exactly steps x batch
training pairs are written, so each is seen once (each side in its own order). TRL receives the
prompt rendered by the chat template as text (its standard format; it appends EOS itself); the
`losses` job checks that both sides tokenized the batch identically.
"""

from __future__ import annotations

import argparse
import json
import os
import shlex
import sys
import time
from pathlib import Path
from typing import Any

from common import (
    RESULTS_DIR,
    VENVS_DIR,
    ChildRun,
    bench_lock,
    cpu_name,
    log_tail,
    markdown_table,
    read_json,
    run_measured,
    write_json,
)

HH_DEV = Path(__file__).resolve().parents[2] / "shared" / "data" / "hh-rlhf-harmless" / "dev.jsonl"
SIDES = Path(__file__).resolve().parent / "dpo_sides.py"

RLHFKIT_SETTINGS = {
    "fp32": {"rlhfkit_dtype": "fp32", "rlhfkit_layout": "packed", "rlhfkit_group_by_length": False},
    "fp32-grouped": {"rlhfkit_dtype": "fp32", "rlhfkit_layout": "packed", "rlhfkit_group_by_length": True},
    "fp32-rows": {"rlhfkit_dtype": "fp32", "rlhfkit_layout": "rows", "rlhfkit_group_by_length": False},
    "bf16": {"rlhfkit_dtype": "bf16", "rlhfkit_layout": "packed", "rlhfkit_group_by_length": False},
}
"""rlhfkit configurations measured: name -> spec fields ('fp32-grouped' is its default on this CPU)."""

TRL_SETTINGS = {
    "fp32": {"trl_dtype": "fp32", "trl_gradient_checkpointing": False, "trl_precompute_ref": True},
    "fp32-grouped": {
        "trl_dtype": "fp32",
        "trl_gradient_checkpointing": False,
        "trl_precompute_ref": True,
        "trl_group_by_length": True,
    },
    "fp32-ref-model": {"trl_dtype": "fp32", "trl_gradient_checkpointing": False, "trl_precompute_ref": False},
    "bf16": {"trl_dtype": "bf16", "trl_gradient_checkpointing": False, "trl_precompute_ref": True},
    "defaults": {"trl_dtype": "bf16", "trl_gradient_checkpointing": True, "trl_precompute_ref": False},
}
"""TRL configurations measured: name -> spec fields. 'defaults' is DPOConfig's own (bf16, gradient
checkpointing, a reference model kept in memory); the others switch off what is slower on a CPU."""

VARIANTS: dict[str, dict[str, Any]] = {
    "sigmoid": {"loss": "sigmoid", "trl": {"kind": "dpo", "options": {"loss_type": ["sigmoid"]}}},
    "hinge": {"loss": "hinge", "trl": {"kind": "dpo", "options": {"loss_type": ["hinge"]}}},
    "ipo": {"loss": "ipo", "trl": {"kind": "dpo", "options": {"loss_type": ["ipo"]}}},
    "robust": {
        "loss": "robust",
        "rlhfkit": {"label_smoothing": 0.1},
        "trl": {"kind": "dpo", "options": {"loss_type": ["robust"], "label_smoothing": 0.1}},
    },
    # The newest DPOTrainer has no cDPO; its "aot" loss is cDPO applied after sorting the batch's
    # log-ratios, which is the identity on a batch of one pair: so it is computed pair by pair.
    "cdpo": {
        "loss": "cdpo",
        "rlhfkit": {"label_smoothing": 0.1},
        "trl": {"kind": "dpo", "options": {"loss_type": ["aot"], "label_smoothing": 0.1}, "per_pair": True},
    },
    "simpo": {
        "loss": "simpo",
        "rlhfkit": {"gamma": 0.5},
        "trl": {"kind": "cpo", "options": {"loss_type": "simpo", "cpo_alpha": 0.0, "simpo_gamma": 0.5}},
    },
    # ORPO = NLL term + odds-ratio term. The NLL terms differ by definition: rlhfkit's is the mean over
    # each chosen RESPONSE's tokens (Hong et al. 2024, eq. 2), TRL's the token mean over the PROMPT and
    # chosen response of the whole batch. So the total is shown, and the odds-ratio term compared alone.
    "orpo": {"loss": "orpo", "trl": {"kind": "orpo", "options": {}}},
    "orpo odds-ratio term": {"loss": "orpo", "part": "odds_ratio", "trl": {"kind": "orpo", "options": {}}},
}
"""Loss variants compared: rlhfkit loss name and config values, and TRL's trainer and options."""


def parse_args(argv: list[str]) -> argparse.Namespace:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("job", choices=["throughput", "accuracy", "losses", "report"])
    p.add_argument("--steps", type=int, default=None, help="default: 8 (throughput), 60 (accuracy)")
    p.add_argument("--batch-size", type=int, default=4, help="preference pairs per optimizer step")
    p.add_argument("--max-length", type=int, default=384, help="pairs longer than this are dropped")
    p.add_argument("--lr", type=float, default=None, help="default: 5e-6 (throughput), 1e-5 (accuracy)")
    p.add_argument("--beta", type=float, default=0.1)
    p.add_argument("--loss", default="sigmoid", help="loss of the throughput and accuracy runs")
    p.add_argument("--eval-size", type=int, default=96, help="held-out pairs (accuracy job)")
    p.add_argument("--eval-every", type=int, default=20)
    p.add_argument("--loss-pairs", type=int, default=4, help="pairs in the batch of the losses job")
    p.add_argument("--seed", type=int, default=0)
    p.add_argument(
        "--rlhfkit",
        default="fp32,fp32-grouped",
        help=f"comma list of rlhfkit settings (throughput): {', '.join(RLHFKIT_SETTINGS)}",
    )
    p.add_argument(
        "--trl", default="fp32,fp32-grouped", help=f"comma list of TRL settings (throughput): {', '.join(TRL_SETTINGS)}"
    )
    p.add_argument("--rounds", type=int, default=1, help="throughput: alternate the sides this many times")
    p.add_argument("--append", action="store_true", help="throughput: add these sides to the earlier run's")
    p.add_argument("--trl-venv", type=Path, default=VENVS_DIR / "trl-latest")
    p.add_argument("--data", type=Path, default=HH_DEV)
    p.add_argument("--work-dir", type=Path, default=Path("/tmp/rlhfkit-dpo-bench"))
    p.add_argument("--trained-dir", type=Path, default=None, help="losses: policy model (default: accuracy run)")
    p.add_argument("--out", type=Path, default=RESULTS_DIR / "dpo.md")
    return p.parse_args(argv)


def prepare_data(args: argparse.Namespace, model_dir: Path, work: Path, steps: int, eval_size: int) -> dict:
    """train/eval pairs in rlhfkit's JSONL (conversation prompts) and TRL's (rendered prompt text)."""
    from rlhfkit.data.chat import render_prompt
    from rlhfkit.data.loaders import load_records, split_records, write_jsonl
    from rlhfkit.models.loading import load_tokenizer
    from rlhfkit.train.dpo.batches import encode_group

    loaded = load_records(args.data, "pairs", skip_invalid=True)
    tok = load_tokenizer(model_dir)
    long = 10**9
    groups = [
        encode_group(tok, r.prompt, (r.chosen, r.rejected), max_length=long, max_prompt_length=long - 1)
        for r in loaded.records
    ]
    fits = [
        r
        for r, g in zip(loaded.records, groups, strict=True)
        if len(g.prompt_ids) + max(len(x) for x in g.responses) <= args.max_length
    ]
    train, held = split_records(fits, eval_size / len(fits), args.seed) if eval_size else (fits, [])
    need = steps * args.batch_size
    if len(train) < need:
        raise SystemExit(f"only {len(train)} training pairs fit in {args.max_length} tokens; {need} needed")
    files = {}
    length = {id(r): g.packed_length for r, g in zip(loaded.records, groups, strict=True)}
    for split, recs in (("train", train[:need]), ("eval", held)):
        write_jsonl(
            work / f"{split}.jsonl", [{"prompt": r.prompt, "chosen": r.chosen, "rejected": r.rejected} for r in recs]
        )
        # "length" is read only by TRL's group_by_length sampler (the same length rlhfkit groups by).
        (work / f"trl_{split}.jsonl").write_text(
            "".join(
                json.dumps(
                    {
                        "prompt": render_prompt(tok, r.prompt),
                        "chosen": r.chosen,
                        "rejected": r.rejected,
                        "length": length[id(r)],
                    }
                )
                + "\n"
                for r in recs
            )
        )
        files[split] = len(recs)
    return {"rows": len(loaded.records), "skipped": len(loaded.skipped), "fit": len(fits), **files}


def run_job(job: str, python: Path, spec: dict[str, Any], work: Path, tag: str) -> tuple[dict[str, Any], ChildRun]:
    spec_path, out, log = work / f"{tag}.spec.json", work / f"{tag}.json", work / f"{tag}.log"
    write_json(spec_path, spec)
    env = {**os.environ, "TOKENIZERS_PARALLELISM": "false", "HF_HUB_OFFLINE": "1", "PYTHONUNBUFFERED": "1"}
    print(f"[{time.strftime('%H:%M:%S')}] {tag}: running (log {log})", file=sys.stderr, flush=True)
    run = run_measured([str(python), str(SIDES), job, str(spec_path), str(out)], log_path=log, env=env)
    if run.returncode != 0 or not out.exists():
        raise SystemExit(f"{tag} failed with exit status {run.returncode}:\n{log_tail(log)}")
    return read_json(out), run


def base_spec(args: argparse.Namespace, model_dir: Path, work: Path, steps: int, lr: float) -> dict[str, Any]:
    return {
        "model_dir": str(model_dir),
        "train_file": str(work / "train.jsonl"),
        "trl_train_file": str(work / "trl_train.jsonl"),
        "work_dir": str(work),
        "steps": steps,
        "batch_size": args.batch_size,
        "max_length": args.max_length,
        "lr": lr,
        "beta": args.beta,
        "loss": args.loss,
        "seed": args.seed,
        **RLHFKIT_SETTINGS["fp32-grouped"],
    }


def throughput(args: argparse.Namespace, model_dir: Path, trl_python: Path) -> dict[str, Any]:
    steps, lr = args.steps or 8, args.lr or 5e-6
    work = args.work_dir / "throughput"
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, model_dir, work, steps, 0)
    spec = base_spec(args, model_dir, work, steps, lr)
    sides: list[tuple[str, Path, str, dict[str, Any]]] = [
        (f"rlhfkit-{name}", Path(sys.executable), "rlhfkit-train", RLHFKIT_SETTINGS[name])
        for name in args.rlhfkit.split(",")
        if name
    ]
    sides += [(f"trl-{name}", trl_python, "trl-train", TRL_SETTINGS[name]) for name in args.trl.split(",") if name]
    results: dict[str, list[dict[str, Any]]] = {}
    with bench_lock():
        for r in range(args.rounds):
            for tag, python, job, extra in sides:
                res, run = run_job(job, python, {**spec, **extra}, work, f"{tag}-{r}")
                results.setdefault(tag, []).append({**res, "run": run.as_dict(), "date": time.strftime("%H:%M")})
                print(
                    f"  {tag}: {res['steps_per_s']:.4f} steps/s, peak {run.peak_rss_mb:.0f} MiB",
                    file=sys.stderr,
                    flush=True,
                )
    return {"args": vars(args) | {"steps": steps, "lr": lr}, "data": data, "results": results}


def merge_throughput(old: dict[str, Any], new: dict[str, Any]) -> dict[str, Any]:
    """Add a throughput invocation's sides to an earlier one's (same steps, batch, data and lr only)."""
    keys = ("steps", "batch_size", "max_length", "lr", "beta", "loss", "seed")
    if any(old["args"][k] != new["args"][k] for k in keys):
        raise SystemExit(f"--append needs the same {', '.join(keys)} as the earlier throughput run")
    return {
        **new,
        "results": {**old["results"], **new["results"]},
        "commands": old["commands"] + new["commands"],
        "date": f"{old['date']} .. {new['date']}",
    }


def accuracy(args: argparse.Namespace, model_dir: Path) -> dict[str, Any]:
    steps, lr = args.steps or 60, args.lr or 1e-5
    work = args.work_dir / "accuracy"
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(args, model_dir, work, steps, args.eval_size)
    spec = {
        **base_spec(args, model_dir, work, steps, lr),
        "eval_file": str(work / "eval.jsonl"),
        "eval_every": args.eval_every,
        "kl_prompts": 8,
    }
    with bench_lock():
        res, run = run_job("rlhfkit-train", Path(sys.executable), spec, work, "rlhfkit")
    return {"args": vars(args) | {"steps": steps, "lr": lr}, "data": data, "result": res, "run": run.as_dict()}


def losses(args: argparse.Namespace, model_dir: Path, trl_python: Path) -> dict[str, Any]:
    trained = args.trained_dir or args.work_dir / "accuracy" / "rlhfkit-run"
    if not (trained / "model.safetensors").exists():
        raise SystemExit(f"{trained} holds no trained model: run the accuracy job first")
    work = args.work_dir / "losses"
    work.mkdir(parents=True, exist_ok=True)
    data = prepare_data(argparse.Namespace(**{**vars(args), "batch_size": args.loss_pairs}), model_dir, work, 1, 0)
    spec = {
        **base_spec(args, model_dir, work, 1, 1e-6),
        "batch_size": args.loss_pairs,
        "trained_dir": str(trained),
        "variants": VARIANTS,
    }
    with bench_lock():
        ours, _ = run_job("rlhfkit-losses", Path(sys.executable), spec, work, "rlhfkit-losses")
        theirs, _ = run_job("trl-losses", trl_python, spec, work, "trl-losses")
    return {
        "args": vars(args),
        "data": data,
        "rlhfkit": ours,
        "trl": theirs,
        "same_tokens": ours["tokens"] == theirs["tokens"],
    }


# ---- the report --------------------------------------------------------------------------------


def _median(xs: list[float]) -> float:
    xs = sorted(xs)
    return xs[len(xs) // 2] if len(xs) % 2 else (xs[len(xs) // 2 - 1] + xs[len(xs) // 2]) / 2


def _side_summary(runs: list[dict[str, Any]]) -> dict[str, Any]:
    """Median over rounds of a side's steady step rate and step time; the largest peak memory."""
    return {
        "steps_per_s": _median([r["steps_per_s"] for r in runs]),
        "step_s": _median([s for r in runs for s in r["step_s"]]),
        "peak_rss_mb": max(r["run"]["peak_rss_mb"] for r in runs),
        "train_max_rss_mb": max(r["train_max_rss_mb"] for r in runs),
        "reference_pass_s": _median([r.get("reference_pass_s", float("nan")) for r in runs]),
        "other_cores": max(r["run"]["other_cpu_cores"] for r in runs),
        "settings": runs[0]["settings"],
        "version": runs[0]["version"],
        "rounds": len(runs),
    }


def throughput_section(data: dict[str, Any]) -> list[str]:
    a = data["args"]
    sides = {tag: _side_summary(runs) for tag, runs in data["results"].items()}
    rows = [
        [
            tag,
            s["version"],
            s["settings"],
            f"{s['steps_per_s']:.4f}",
            f"{s['step_s']:.1f}",
            f"{s['peak_rss_mb']:,.0f}",
            f"{s['train_max_rss_mb']:,.0f}",
            "" if s["reference_pass_s"] != s["reference_pass_s"] else f"{s['reference_pass_s']:.0f}",
            f"{s['other_cores']:.2f}",
        ]
        for tag, s in sides.items()
    ]
    header = [
        "side",
        "version",
        "configuration",
        "steps/s (steady, median of rounds)",
        "median s/step",
        "peak RSS MiB (tree)",
        "RSS MiB at last step",
        "reference pass s",
        "other cores busy (max)",
    ]
    trl = {k: v for k, v in sides.items() if k.startswith("trl-")}
    fastest = max(trl, key=lambda k: trl[k]["steps_per_s"])
    verdict = []
    for tag in (k for k in sides if k.startswith("rlhfkit-")):
        # Like with like: the TRL run with the same data order (random or grouped by length), and TRL's fastest.
        same = f"trl-{tag.removeprefix('rlhfkit-').removesuffix('-rows')}"
        for peer in dict.fromkeys(p for p in (same, fastest) if p in trl):
            speed = sides[tag]["steps_per_s"] / trl[peer]["steps_per_s"]
            memory = sides[tag]["peak_rss_mb"] / trl[peer]["peak_rss_mb"]
            verdict.append(
                [
                    f"{tag} / {peer}",
                    f"{speed:.2f}x",
                    "yes" if speed >= 2 else "NO",
                    f"{memory:.2f}x",
                    "yes" if memory <= 1 else "NO",
                ]
            )
    return [
        "## Step throughput and peak memory\n",
        "Commands (" + data["date"] + "):\n\n" + "".join(f"    {c}\n" for c in data["commands"]),
        f"{a['steps']} optimizer steps of {a['batch_size']} pairs (each of the {data['data']['train']} training "
        f"pairs seen once), max length {a['max_length']} ({data['data']['fit']} of {data['data']['rows']} HH pairs "
        f"fit), lr {a['lr']} constant, beta {a['beta']}, loss {a['loss']}, full fine-tuning on both sides, "
        f"{a['rounds']} round(s) with the sides alternating. Steady rate: steps after the first.\n",
        markdown_table(header, rows),
        f"Fastest TRL setting: `{fastest}`.\n",
        markdown_table(
            ["rlhfkit / TRL", "step throughput (target >= 2x)", "met", "peak memory (target <= 1x)", "met"], verdict
        ),
    ]


def losses_section(data: dict[str, Any]) -> list[str]:
    ours, theirs = data["rlhfkit"], data["trl"]
    rows = []
    for setting, label in (("step0", "step 0 (policy = reference)"), ("trained", "trained policy vs base reference")):
        for name in ours[setting]:
            a, b = ours[setting][name], theirs[setting][name]
            diff = abs(a - b)
            rows.append([label, name, f"{a:.7f}", f"{b:.7f}", f"{diff:.1e}", "yes" if diff <= 1e-5 else "NO"])
    return [
        "## Each variant's loss against TRL's, same batch, same beta\n",
        "Commands (" + data["date"] + "):\n\n" + "".join(f"    {c}\n" for c in data["commands"]),
        f"A batch of {data['data']['train']} HH pairs, beta {data['args']['beta']}. rlhfkit: the functions its "
        "`dpo()` loop runs (reference from the one cached pass, policy log-probs from one forward over the "
        "batch in the loop's layout, the loop's loss terms); TRL: its trainer's `compute_loss` on its first "
        "batch. Step 0: policy = reference = SmolLM2. Trained: the accuracy job's model as policy, SmolLM2 as "
        "reference (TRL: `ref_model=`), each side with its own forward and loss code. Both sides tokenized the batch "
        f"identically: {'yes' if data['same_tokens'] else 'NO'}.\n",
        markdown_table(["setting", "variant", "rlhfkit", f"TRL {theirs['version']}", "abs diff", "<= 1e-5"], rows),
        "TRL counterparts: DPOTrainer loss_type sigmoid / hinge / ipo / robust (label_smoothing 0.1); cdpo: "
        'DPOTrainer "aot" (cDPO after sorting the batch\'s log-ratios, the identity on one pair) computed '
        "pair by pair (the newest DPOTrainer has no plain cDPO); simpo: CPOTrainer loss_type=simpo, cpo_alpha=0, "
        "simpo_gamma 0.5; orpo: ORPOTrainer. ORPO's total differs by design: its NLL term is, in rlhfkit, the mean "
        "NLL of each chosen response's tokens (Hong et al. 2024, eq. 2), in TRL the token mean over the prompt "
        'AND chosen tokens of the whole batch (TRL: "orpo chosen nll loss is computed over the full prompt and '
        'response"). The odds-ratio term (total minus NLL term; TRL: loss - nll_loss) is compared alone.\n',
    ]


def accuracy_section(data: dict[str, Any]) -> list[str]:
    res, a = data["result"], data["args"]
    rows = [
        [
            str(e["step"]),
            f"{e['eval/reward_accuracy']:.3f}",
            f"{e['eval/loss']:.4f}",
            f"{e['eval/reward_margin']:.4f}",
            f"{e.get('eval/kl', float('nan')):.3f}",
        ]
        for e in res["eval"]
    ]
    best = max(e["eval/reward_accuracy"] for e in res["eval"])
    return [
        "## Held-out implicit-reward accuracy (rlhfkit)\n",
        "Commands (" + data["date"] + "):\n\n" + "".join(f"    {c}\n" for c in data["commands"]),
        f"{a['steps']} steps of {a['batch_size']} pairs ({data['data']['train']} training pairs), lr {a['lr']}, "
        f"beta {a['beta']}, loss {a['loss']}, full fine-tuning; {data['data']['eval']} held-out HH pairs (split by "
        f"prompt). Accuracy counts a pair when the chosen response's implicit reward is strictly higher (0 at step 0, "
        f"where every reward is 0). KL: k3 estimate summed over 8 responses sampled on held-out prompts.\n",
        markdown_table(["step", "eval reward accuracy", "eval loss", "eval reward margin", "KL to reference"], rows),
        f"Target: accuracy above 0.5 within the budget: {'met' if best > 0.5 else 'NOT met'} (best {best:.3f}; "
        f"whole job {data['run']['wall_s']:.0f} s wall).\n",
    ]


def render(jobs: dict[str, dict[str, Any]]) -> str:
    import torch

    lines = [
        "# DPO: rlhfkit vs TRL DPOTrainer\n",
        f"Machine: {cpu_name()}, {os.cpu_count()} cores, torch {torch.__version__}; model SmolLM2-135M-Instruct "
        "(both sides from rlhfkit's cached safetensors directory, fp32 weights); data: HH-RLHF harmless dev.\n",
    ]
    for name, section in (
        ("throughput", throughput_section),
        ("losses", losses_section),
        ("accuracy", accuracy_section),
    ):
        if name in jobs:
            lines += section(jobs[name])
    return "\n".join(lines) + "\n"


def main(argv: list[str]) -> None:
    args = parse_args(argv)
    args.work_dir.mkdir(parents=True, exist_ok=True)
    if args.job == "report":
        text = render(
            {
                j: read_json(args.work_dir / f"{j}.json")
                for j in ("throughput", "accuracy", "losses")
                if (args.work_dir / f"{j}.json").exists()
            }
        )
        args.out.parent.mkdir(parents=True, exist_ok=True)
        args.out.write_text(text)
        print(text)
        return
    from rlhfkit.models.loading import ensure_bundled

    model_dir = ensure_bundled("smollm2")
    trl_python = args.trl_venv / "bin" / "python"
    if args.job != "accuracy" and not trl_python.exists():
        raise SystemExit(f"{trl_python} is missing: run bench/setup_trl.sh first")
    jobs = {
        "throughput": lambda: throughput(args, model_dir, trl_python),
        "accuracy": lambda: accuracy(args, model_dir),
        "losses": lambda: losses(args, model_dir, trl_python),
    }
    result = json.loads(json.dumps(jobs[args.job](), default=str))
    result["commands"] = [f".venv/bin/python bench/dpo_vs_trl.py {shlex.join(argv)}"]
    result["date"] = time.strftime("%Y-%m-%d %H:%M")
    path = args.work_dir / f"{args.job}.json"
    if args.job == "throughput" and args.append and path.exists():
        result = merge_throughput(read_json(path), result)
    write_json(path, result)
    print(
        json.dumps(
            {k: v for k, v in result.items() if k not in ("results", "result", "rlhfkit", "trl")}, indent=1, default=str
        )
    )


if __name__ == "__main__":
    main(sys.argv[1:])
