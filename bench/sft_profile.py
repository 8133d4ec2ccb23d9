"""Where an SFT step's time goes: forward+backward of the bundled model at one fixed shape.

    .venv/bin/python bench/sft_profile.py                  # fp32 weights, bf16 autocast (what SFT does now)
    .venv/bin/python bench/sft_profile.py --bf16           # bf16 weights, no autocast
    .venv/bin/python bench/sft_profile.py --bf16 --compile # and torch.compile per decoder layer
    .venv/bin/python bench/sft_profile.py --prof           # and the torch.profiler op table

Measured on the 2-core AMD EPYC (B=4, T=160, 100 labelled positions per row), tokens/s of forward+backward:

    autocast (now) 195 | autocast + compile 216 | bf16 weights 214 | bf16 weights + compile 279

In the profile of the autocast step, aten::mm is 34% of the time and aten::copy_ 26%. The copy_ share is the
dtype casts that autocast makes, and the fp32 gradients that come back from them. bf16 weights need fp32 master
weights in the optimizer if small updates are not to round away.
"""

from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

from common import bench_lock

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "src"))
from rlhfkit.models.adapters import decoder_layers
from rlhfkit.models.lm import token_nll_sum
from rlhfkit.models.loading import load_model


def main() -> None:
    p = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    p.add_argument("--bf16", action="store_true", help="bf16 weights and no autocast")
    p.add_argument("--compile", action="store_true", help="torch.compile each decoder layer")
    p.add_argument("--prof", action="store_true", help="print the profiler's op table of one step")
    p.add_argument("--batch", type=int, default=4)
    p.add_argument("--length", type=int, default=160)
    args = p.parse_args()

    torch.manual_seed(0)
    model = load_model("smollm2", dtype="bf16" if args.bf16 else "fp32").model
    model.config.use_cache = False
    model.train()
    if args.compile:
        for layer in decoder_layers(model):
            layer.compile()
    ids = torch.randint(0, model.config.vocab_size, (args.batch, args.length))
    labels = ids.clone()
    labels[:, : args.length * 3 // 8] = -100  # the prompt carries no loss
    batch = {"input_ids": ids, "attention_mask": torch.ones_like(ids), "labels": labels}

    def step() -> None:
        with torch.autocast("cpu", dtype=torch.bfloat16, enabled=not args.bf16):
            nll, n = token_nll_sum(model, batch)
        (nll / n).backward()

    with bench_lock():  # timings are only worth reading with no other bench running
        for _ in range(2):  # warm-up (and compilation)
            step()
        start, n = time.perf_counter(), 3
        for _ in range(n):
            step()
        dt = (time.perf_counter() - start) / n
        print(f"forward+backward {dt:.3f} s, {args.batch * args.length / dt:.0f} tokens/s")
        if args.prof:
            from torch.profiler import profile

            with profile() as prof:
                step()
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))


if __name__ == "__main__":
    main()
