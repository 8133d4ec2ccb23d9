"""Pure helpers of bench/common.py: ratios, targets, steady-state rates, MFU, Markdown tables."""

from __future__ import annotations

import importlib.util
import random
import sys
from pathlib import Path

import pytest

_PATH = Path(__file__).resolve().parents[2] / "bench" / "common.py"
_spec = importlib.util.spec_from_file_location("rlhfkit_bench_common", _PATH)
common = importlib.util.module_from_spec(_spec)
sys.modules[_spec.name] = common  # dataclasses look their module up by name
_spec.loader.exec_module(common)


def test_ratio_hand_values() -> None:
    assert common.ratio(3.0, 2.0) == 1.5
    assert common.ratio(0.0, 4.0) == 0.0
    # No meaningful ratio: a missing side, a zero denominator, a NaN.
    assert common.ratio(None, 2.0) is None
    assert common.ratio(2.0, None) is None
    assert common.ratio(2.0, 0.0) is None
    assert common.ratio(float("nan"), 1.0) is None


def test_meets_target_in_both_directions() -> None:
    faster = common.Metric("tps", "tokens/s", target=1.5)
    smaller = common.Metric("rss", "RSS", higher_is_better=False, target=1.0)
    info = common.Metric("x", "x")
    assert common.meets_target(faster, 1.5) is True  # the boundary meets the target
    assert common.meets_target(faster, 1.49) is False
    assert common.meets_target(smaller, 0.9) is True
    assert common.meets_target(smaller, 1.01) is False
    assert common.meets_target(info, 2.0) is None
    assert common.meets_target(faster, None) is None


def test_metric_rejects_non_positive_target() -> None:
    with pytest.raises(ValueError, match="target"):
        common.Metric("x", "x", target=0.0)


def test_steady_rate_hand_value() -> None:
    # Steps end at t = 10, 12, 13, 15 and process 100, 40, 20, 60 tokens. Skipping step 0, the window
    # runs from t=10 to t=15 (5 s) and holds 40 + 20 + 60 = 120 tokens: 24 tokens/s.
    assert common.steady_rate([10.0, 12.0, 13.0, 15.0], [100, 40, 20, 60]) == pytest.approx(24.0)
    # Skipping two steps: from t=12 to t=15 (3 s), 20 + 60 = 80 tokens.
    assert common.steady_rate([10.0, 12.0, 13.0, 15.0], [100, 40, 20, 60], skip=2) == pytest.approx(80 / 3)


def _naive_steady_rate(times: list[float], counts: list[float], skip: int) -> float:
    seconds, tokens = 0.0, 0.0
    for i in range(skip, len(times)):
        seconds += times[i] - times[i - 1]  # duration of step i
        tokens += counts[i]
    return tokens / seconds


def test_steady_rate_matches_naive_loop() -> None:
    rng = random.Random(0)
    for _ in range(50):
        n = rng.randint(2, 12)
        times, t = [], rng.uniform(0, 100)
        for _ in range(n):
            t += rng.uniform(0.1, 5.0)
            times.append(t)
        counts = [rng.randint(1, 5000) for _ in range(n)]
        skip = rng.randint(1, n - 1)
        assert common.steady_rate(times, counts, skip) == pytest.approx(_naive_steady_rate(times, counts, skip))


@pytest.mark.parametrize(
    ("times", "counts", "skip", "message"),
    [
        ([1.0, 2.0], [1, 2], 0, "skip"),
        ([1.0], [1], 1, "more than"),
        ([1.0, 2.0], [1], 1, "length"),
        ([2.0, 2.0], [1, 1], 1, "increase"),
    ],
)
def test_steady_rate_rejects_bad_input(times: list[float], counts: list[int], skip: int, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        common.steady_rate(times, counts, skip)


def test_mfu_hand_value() -> None:
    # 6 FLOPs per parameter per token: 6 * 1e6 params * 50 tokens/s = 3e8 FLOP/s; of a 3 GFLOP/s peak: 0.1.
    assert common.mfu(1_000_000, 50.0, 3.0) == pytest.approx(0.1)
    with pytest.raises(ValueError):
        common.mfu(1, 1.0, 0.0)


def test_markdown_table_layout_and_escaping() -> None:
    text = common.markdown_table(["a", "b"], [["1", "x|y"], ["2", ""]])
    assert text == "| a | b |\n|---|---|\n| 1 | x\\|y |\n| 2 |  |\n"
    with pytest.raises(ValueError, match="cells"):
        common.markdown_table(["a", "b"], [["only one"]])


def test_comparison_table_rows() -> None:
    metrics = [
        common.Metric("tps", "tokens/s", "{:,.0f}", True, 1.5),
        common.Metric("rss", "RSS (MiB)", "{:,.0f}", False, 1.0),
        common.Metric("loss", "eval loss", "{:.2f}", False),
    ]
    ours = {"tps": 3000.0, "rss": 1100.0, "loss": 1.25}
    theirs = {"tps": 1500.0, "rss": 1000.0}
    text = common.comparison_table(metrics, ours, theirs, names=("A", "B"))
    # 3000 / 1500 = 2.00x (meets >= 1.5); 1100 / 1000 = 1.10x (misses <= 1.0); B has no loss: n/a.
    assert text == (
        "| metric | A | B | A / B | target | met |\n"
        "|---|---|---|---|---|---|\n"
        "| tokens/s | 3,000 | 1,500 | 2.00x | >= 1.50x | yes |\n"
        "| RSS (MiB) | 1,100 | 1,000 | 1.10x | <= 1.00x | NO |\n"
        "| eval loss | 1.25 | n/a | n/a |  |  |\n"
    )


def _run(other_cores: float) -> object:
    return common.ChildRun(
        returncode=0,
        wall_s=10.0,
        peak_rss_mb=1.0,
        max_rss_mb=1.0,
        cpu_s=15.0,
        other_cpu_cores=other_cores,
        loadavg_before=(3.0, 2.0, 1.0),
    )


def test_busy_warning_names_only_busy_runs() -> None:
    assert common.busy_warning({"a": _run(0.1), "b": _run(0.2)}, cores=2) is None
    text = common.busy_warning({"a": _run(0.1), "b": _run(1.5)}, cores=2)
    assert text is not None and "b: 1.50 of 2 cores" in text and "a:" not in text
