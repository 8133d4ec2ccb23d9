#!/usr/bin/env bash
# A few steps of every trainer, and `rlhfkit generate`, on one GPU with the bundled model; prints
# tokens/s (examples/s where a method counts examples), peak GPU memory and MFU, checks each result,
# and writes the table to bench/results/gpu.md. Needs only PyTorch, transformers, accelerate and peft
# (and rlhfkit's own dependencies); no network. Under 8 minutes: each command has 90 s.
#
#   bash bench/gpu_check.sh                       # the bundled smollm2 (its safetensors cache must exist:
#                                                 # ~/.cache/rlhfkit/models/smollm2, built on first use)
#   MODEL=/path/to/model bash bench/gpu_check.sh  # any local causal LM directory
#
# Self-checking: it stops with a message (exit 1) when there is no GPU, when `dtype=auto` would not
# pick bf16 on a GPU that computes it natively, when attention is not SDPA, when a command fails, a
# metric is NaN, SFT's loss does not fall, or peak memory was not measured on the GPU.
# GPU_CHECK_DRY_RUN=1 MODEL=tiny runs the same commands and checks on the CPU (no GPU checks, no gpu.md).
set -euo pipefail
cd "$(dirname "$0")/.."
PY="${PYTHON:-.venv/bin/python}"
[ -x "$PY" ] || PY=python3
MODEL="${MODEL:-smollm2}"
OUT="${OUT_DIR:-$(mktemp -d)}"
FIX=src/rlhfkit/data/fixtures
export PYTHONPATH=src HF_HUB_OFFLINE=1 TRANSFORMERS_OFFLINE=1 MODEL OUT
mkdir -p "$OUT"
echo "gpu_check: model $MODEL, runs in $OUT"

[ "${GPU_CHECK_DRY_RUN:-0}" = 1 ] && echo "gpu_check: DRY RUN on CPU (checks the script, not a GPU)" || "$PY" - <<'EOF'
import os, torch
assert torch.cuda.is_available(), "gpu_check: no CUDA device is visible"
from rlhfkit.models.dtype import cuda_has_bf16, resolve_dtype
from rlhfkit.models.loading import load_model
want = torch.bfloat16 if cuda_has_bf16() else torch.float32
got = resolve_dtype("auto", "cuda")
assert got == want, f"gpu_check: dtype=auto chose {got} on {torch.cuda.get_device_name()}, expected {want}"
model = load_model(os.environ["MODEL"], dtype="auto", device="cuda").model
assert model.config._attn_implementation == "sdpa", f"attention is {model.config._attn_implementation}, not sdpa"
print(f"gpu_check: {torch.cuda.get_device_name()}, dtype=auto -> {got}, attention sdpa, torch {torch.__version__}")
EOF

run() {
  local name=$1
  shift
  local start=$SECONDS
  if ! timeout 90 "$PY" -m rlhfkit.cli "$@" >"$OUT/$name.log" 2>&1; then
    tail -30 "$OUT/$name.log"
    echo "gpu_check: $name FAILED (log: $OUT/$name.log)"
    exit 1
  fi
  echo "gpu_check: $name done in $((SECONDS - start)) s"
}

printf 'def count_e(prompts, responses):\n    return [r.count("e") for r in responses]\n' >"$OUT/reward_fn.py"
run sft sft --model "$MODEL" --data $FIX/demos_small.jsonl --output "$OUT/sft" \
  max_steps=20 batch_size=8 lr=5e-5 warmup_steps=2 save_every=0 eval_fraction=0 progress=false
run reward reward train --model "$MODEL" --data $FIX/pairs_small.jsonl --output "$OUT/reward" \
  max_steps=10 batch_size=8 normalize=false save_every=0 progress=false
run dpo dpo --model "$MODEL" --data $FIX/pairs_small.jsonl --output "$OUT/dpo" \
  max_steps=10 batch_size=4 save_every=0 kl_prompts=2 kl_max_new_tokens=8 progress=false
run ppo ppo --policy "$MODEL" --reward "python:$OUT/reward_fn.py:count_e" --prompts $FIX/sentiment_prompts.jsonl \
  --output "$OUT/ppo" max_steps=4 rollout_batch_size=16 batch_size=8 sampling.max_new_tokens=24 save_every=0 progress=false
run generate generate --model "$MODEL" --prompts $FIX/sentiment_prompts.jsonl --output "$OUT/generate.jsonl" \
  n=2 limit=16 progress=false

"$PY" - <<'EOF'
import json, math, os
from pathlib import Path
import torch
from safetensors import safe_open

out = Path(os.environ["OUT"])
name = torch.cuda.get_device_name() if torch.cuda.is_available() else "CPU (dry run)"
# Dense bf16 peak of the card (vendor datasheets, no sparsity); MFU is left out for other cards.
PEAKS = {"H100": 989e12, "H200": 989e12, "A100": 312e12, "L40S": 362e12, "L4": 121e12, "A10": 125e12}
peak = next((v for k, v in PEAKS.items() if k in name), None)


def rows(run):
    return [json.loads(line) for line in (out / run / "metrics.jsonl").read_text().splitlines()]


def mean_after(run, key, skip=2):
    values = [r[key] for r in rows(run) if key in r and r["step"] > skip]
    return sum(values) / len(values) if values else None


for run in ("sft", "reward", "dpo", "ppo"):
    for r in rows(run):
        bad = [k for k, v in r.items() if not math.isfinite(v)]
        assert not bad, f"gpu_check: {run} step {r['step']}: {bad} not finite"
losses = [r["train/loss"] for r in rows("sft") if "train/loss" in r]
assert losses[-1] < losses[0], f"gpu_check: SFT loss did not fall ({losses[0]:.4f} -> {losses[-1]:.4f})"
generated = [json.loads(line) for line in (out / "generate.jsonl").read_text().splitlines()]
assert len(generated) == 16 and all(len(g["candidates"]) == 2 for g in generated), "gpu_check: generate"

with safe_open(str(out / "sft" / "model.safetensors"), "pt") as f:
    params = sum(math.prod(f.get_slice(k).get_shape()) for k in f.keys())
table = ["| run | tokens/s | examples/s | peak GPU MiB | MFU |", "|---|---|---|---|---|"]
for run in ("sft", "reward", "dpo", "ppo"):
    tok, ex = mean_after(run, "perf/tokens_per_s"), mean_after(run, "perf/examples_per_s")
    mem = max(r.get("perf/peak_mem_mb", 0.0) for r in rows(run))
    assert mem > 0, f"gpu_check: {run}: no peak memory logged"
    # 6 N FLOPs per trained token (forward + backward; Kaplan et al. 2020), for SFT whose tokens all train.
    mfu = f"{6 * params * tok / peak:.1%}" if run == "sft" and tok and peak else "-"
    cells = [run, f"{tok:,.0f}" if tok else "-", f"{ex:,.1f}" if ex else "-", f"{mem:,.0f}", mfu]
    table.append("| " + " | ".join(cells) + " |")
text = "\n".join([
    f"# bench/gpu_check.sh on {name}",
    "",
    f"Model {os.environ['MODEL']} ({params / 1e6:.0f}M parameters), dtype=auto (bf16 where native), SDPA attention;",
    "rates are means over the logged steps after the second. PPO's tokens are response tokens.",
    "",
    *table,
    "",
])
print(text)
if torch.cuda.is_available():
    Path("bench/results/gpu.md").write_text(text)
(out / "gpu.md").write_text(text)
EOF
echo "gpu_check: all checks passed"
