"""`rlhfkit generate`: sample n responses per prompt from any model and write them as JSONL.

Each output line is ``{"prompt": ..., "candidates": [r1, ..., rn]}``, the form the feedback app
imports to build comparison, ranking and rating tasks.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

from rlhfkit.config import require
from rlhfkit.data.loaders import load_records, write_jsonl
from rlhfkit.rollout.generate import SamplingConfig, sample_texts


@dataclass(frozen=True)
class GenerateConfig:
    """`rlhfkit generate`: candidates for a prompts file."""

    model: str = "smollm2"
    """MODEL to sample from: 'smollm2', a model directory, a finished run, or a hub id."""
    prompts: str = ""
    """Prompts file (any format rlhfkit reads; the prompt of each row is used)."""
    output: Path = Path("")
    """JSONL file to write: one {"prompt", "candidates"} object per prompt."""
    n: int = 2
    """Responses per prompt."""
    sampling: SamplingConfig = SamplingConfig()
    """Sampling settings (sampling.temperature=0.9, sampling.max_new_tokens=96, ...)."""
    dtype: str = "auto"
    """Compute dtype: auto, bf16 or fp32."""
    limit: int = 0
    """Use only the first this many prompts (0 = all)."""
    seed: int = 0
    """Sampling seed."""
    progress: bool = True
    """Show a progress bar."""

    def __post_init__(self) -> None:
        require(bool(self.prompts), "prompts is required (a prompts file)")
        require(str(self.output) not in ("", "."), "output (a JSONL file) is required")
        require(self.n > 0, "n must be positive")
        require(self.limit >= 0, "limit must be >= 0")


def generate(cfg: GenerateConfig) -> Path:
    from tqdm import tqdm

    from rlhfkit.models.dtype import default_device
    from rlhfkit.models.loading import load_model

    prompts = [r.prompt for r in load_records(cfg.prompts, "prompts", limit=cfg.limit or None).records]
    loaded = load_model(cfg.model, dtype=cfg.dtype, device=default_device())
    bar = tqdm(total=len(prompts) * cfg.n, desc="generate", unit="resp", disable=not cfg.progress)
    outs = sample_texts(
        loaded.model, loaded.tokenizer, prompts, cfg.sampling, n=cfg.n, seed=cfg.seed, on_batch=bar.update
    )
    bar.close()
    out = Path(cfg.output)
    out.parent.mkdir(parents=True, exist_ok=True)
    write_jsonl(out, ({"prompt": p, "candidates": c} for p, c in zip(prompts, outs, strict=True)))
    return out
