"""The HTML run report: panels, escaping, warnings, partial run directories."""

from __future__ import annotations

import json
import re
from pathlib import Path

import pytest
from markupsafe import escape

from rlhfkit.eval.report import metric_series, read_jsonl, render_report, write_report


def _figures(page: str) -> dict[str, str]:
    """``{panel id: figure markup}`` for every plot panel of the page."""
    bodies = re.findall(r'<figure class="panel[^"]*" id="[^"]+".*?</figure>', page, flags=re.S)
    return {re.search(r'id="([^"]+)"', body).group(1): body for body in bodies}  # type: ignore[union-attr]


def test_full_run_report_has_one_svg_per_panel(full_run: Path, full_page: str) -> None:
    figures = _figures(full_page)
    assert set(figures) == {
        "reward-curve",
        "kl-curve",
        "metrics-train",
        "metrics-eval",
        "metrics-ppo",
        "metrics-reward",
        "win-rate",
        "leaderboard",
        "proxy-gold",
        "drift",
        "agreement",
    }
    for name, body in figures.items():
        assert body.count("<svg") == 1, name
    # Reward and KL panels hold the right series; the ppo namespace panel keeps the rest.
    assert "ppo/score" in figures["reward-curve"] and "gold/mean" in figures["reward-curve"]
    assert "ppo/kl" in figures["kl-curve"] and "ppo/entropy" in figures["metrics-ppo"]
    assert "ppo/score" not in figures["metrics-ppo"]
    assert "reward/accuracy" in figures["metrics-reward"]


def test_examples_are_escaped_and_side_by_side(full_page: str, nasty: str) -> None:
    assert nasty not in full_page and "<script" not in full_page
    assert str(escape(nasty)) in full_page
    assert "<i>mallory</i>" not in full_page and "&lt;i&gt;mallory&lt;/i&gt;" in full_page
    examples = full_page[full_page.index('id="examples"') :]
    assert "step 0" in examples and "step 40" in examples
    assert examples.count('<tr class="example">') == 3
    assert "great great great great" in examples and "before 1: it was fine." in examples


def test_warnings_are_highlighted(full_run: Path, full_page: str) -> None:
    evaluation = json.loads((full_run / "eval.json").read_text())
    start = full_page.index('id="warnings"')
    box = full_page[start : full_page.index("</section>", start)]
    assert evaluation["hacking"]["warnings"]
    for warning in evaluation["hacking"]["warnings"]:
        assert warning["kind"] in box and f"step {warning['step']}" in box
    assert "proxy_up_gold_down" in box


def test_tables(full_page: str) -> None:
    assert 'id="win-rate-table"' in full_page and 'id="leaderboard-table"' in full_page
    assert "Krippendorff" in full_page and "0.620" in full_page
    assert "Gao et al. 2022 RL fit" in full_page and "Best checkpoint" in full_page


def test_self_contained(full_page: str) -> None:
    assert not re.search(r'(src|href)="(https?:)?//', full_page)
    assert "<link" not in full_page and "@import" not in full_page


def test_metrics_only_run(sft_run: Path) -> None:
    page = write_report(sft_run, title="SFT <baseline>").read_text(encoding="utf-8")
    figures = _figures(page)
    assert set(figures) == {"metrics-train", "metrics-eval"}
    assert all(body.count("<svg") == 1 for body in figures.values())
    assert "SFT &lt;baseline&gt;" in page
    assert 'id="warnings"' not in page and 'id="examples"' not in page and "Evaluation" not in page


def test_empty_run_dir(tmp_path: Path) -> None:
    page = render_report(tmp_path)
    assert "<svg" not in page and "holds no metrics" in page
    with pytest.raises(ValueError):
        render_report(tmp_path / "missing")


def test_read_jsonl_tolerates_only_a_truncated_last_line(tmp_path: Path) -> None:
    path = tmp_path / "metrics.jsonl"
    path.write_text('{"step": 0, "a/x": 1}\n{"step": 1, "a/x": 2}\n{"step": 2, "a/', encoding="utf-8")
    assert [r["step"] for r in read_jsonl(path)] == [0, 1]
    path.write_text('{"step": 0}\nnot json\n{"step": 2}\n', encoding="utf-8")
    with pytest.raises(ValueError, match=r"metrics.jsonl:2"):
        read_jsonl(path)


def test_metric_series_skips_non_numbers() -> None:
    rows = [
        {"step": 0, "a/x": 1.0, "a/flag": True, "a/name": "x", "a/bad": float("nan")},
        {"step": 5, "a/x": 2},
    ]
    assert metric_series(rows) == {"a/x": ([0, 5], [1.0, 2.0])}


def test_partial_eval_and_single_step_samples(tmp_path: Path) -> None:
    row = {"win_rate": 0.7, "wins": 7, "losses": 3, "ties": 0, "n": 10, "ci_low": 0.4, "ci_high": 0.9}
    (tmp_path / "eval.json").write_text(json.dumps({"win_rate": {"gold": row, "reward model": row}}))
    conversation = [{"role": "user", "content": "Hi <there>"}]
    (tmp_path / "samples.jsonl").write_text(
        json.dumps({"step": 3, "prompt": conversation, "response": "Hello!"}) + "\n"
    )
    page = render_report(tmp_path)
    assert set(_figures(page)) == {"win-rate"}
    assert "reward model" in page and "user: Hi &lt;there&gt;" in page
    examples = page[page.index('id="examples"') :]
    assert "step 3" in examples and "before and after" not in examples
