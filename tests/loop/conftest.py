"""The tiny demo, run once per session: the demo's code path with tiny models and a tiny budget."""

from __future__ import annotations

from pathlib import Path

import pytest

TINY_BUDGET = (
    "model=tiny",
    "sft.max_steps=2",
    "sft.batch_size=4",
    "sft.max_length=64",
    "loop.candidates.prompts_per_round=8",
    "loop.candidates.sampling.max_new_tokens=12",
    "loop.policy.max_steps=3",
    "loop.policy.rollout_batch_size=8",
    "loop.policy.batch_size=8",
    "loop.policy.sampling.max_new_tokens=12",
    "loop.reward.max_steps=10",
    "loop.reward.normalize_prompts=4",
    "loop.eval.samples_per_prompt=2",
    "loop.eval.sampling.max_new_tokens=12",
    "loop.progress=false",
)
"""Overrides that turn `rlhfkit demo` into a test-sized run (the same stages and code)."""


@pytest.fixture(scope="session")
def tiny_demo(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The output directory of a finished tiny demo."""
    from rlhfkit.config import build_config
    from rlhfkit.loop.demo import DemoConfig, demo

    out = tmp_path_factory.mktemp("demo") / "run"
    demo(build_config(DemoConfig, values={"output": str(out)}, overrides=list(TINY_BUDGET)))
    return out
