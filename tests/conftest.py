"""Shared fixtures: tiny data files and the path of the shared HH-RLHF data."""

from __future__ import annotations

import json
import os
from collections.abc import Iterator
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[1]
HH_DEV = REPO.parent / "shared" / "data" / "hh-rlhf-harmless" / "dev.jsonl"

# Tests never touch the user's cache or a network hub.
os.environ.setdefault("HF_HUB_OFFLINE", "1")
# dtype=auto computes in fp32 in tests whatever this CPU prefers: the tolerances of the reference and
# resume tests are fp32's, and the same numbers must come out on every machine.
os.environ.setdefault("RLHFKIT_CPU_AUTO_DTYPE", "fp32")


@pytest.fixture(autouse=True)
def _isolated_cache(tmp_path_factory: pytest.TempPathFactory, monkeypatch: pytest.MonkeyPatch) -> None:
    if "RLHFKIT_CACHE" not in os.environ:
        monkeypatch.setenv("RLHFKIT_CACHE", str(tmp_path_factory.getbasetemp() / "rlhfkit-cache"))


def write_jsonl(path: Path, rows: list[dict]) -> Path:
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.fixture
def demos_file(tmp_path: Path) -> Path:
    """40 short demonstrations with a learnable pattern."""
    rows = [
        {"prompt": f"Say something about number {i}.", "response": f"Number {i} is a fine number, and I like it."}
        for i in range(40)
    ]
    return write_jsonl(tmp_path / "demos.jsonl", rows)


@pytest.fixture
def fresh_accelerate_state() -> Iterator[None]:
    """Accelerate keeps one process-wide state whose mixed precision cannot change once set; a test that
    computes in another dtype than the suite's (fp32) resets it before and after itself."""
    from accelerate.state import AcceleratorState, GradientState

    AcceleratorState._reset_state(True)
    GradientState._reset_state()
    yield
    AcceleratorState._reset_state(True)
    GradientState._reset_state()
