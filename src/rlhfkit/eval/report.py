"""The run report: one self-contained HTML file (inline SVG plots, inline CSS, no external assets).

:func:`write_report` reads what a run directory holds and renders whatever subset exists:

* ``metrics.jsonl``: ``{"step": int, "<namespace>/<name>": number, ...}`` per line. Reward-like
  metrics (``*/score``, ``*/reward``, ``gold/*``) and KL metrics (``*/kl``) get their own prominent
  panels; every namespace gets one panel of small multiples for the rest.
* ``samples.jsonl``: ``{"step", "prompt", "response", "score"?, "gold"?}``: responses to the same
  prompts at the first and the last step, side by side.
* ``eval.json``: ``{"win_rate", "leaderboard", "hacking", "agreement"}`` (see the package docs of
  :mod:`rlhfkit.eval`), each optional.

Plots come from :mod:`rlhfkit.eval.plots`; the page is ``templates/report.html`` rendered by jinja2
with autoescape on, so prompts and responses (model output, arbitrary text) are always escaped.
"""

from __future__ import annotations

import json
import math
import re
from collections import defaultdict
from collections.abc import Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import jinja2

from rlhfkit.config import Config, require
from rlhfkit.data.records import prompt_text
from rlhfkit.eval import plots
from rlhfkit.eval.hacking import describe_fit, gao_fit
from rlhfkit.files import write_text_atomic

REPORT_NAME = "report.html"
MAX_EXAMPLES = 8
"""Prompts shown in the before/after table."""

HALF = plots.HALF_WIDTH

_REWARD = re.compile(r"(^|[_/])(reward|rewards|score|scores)(_mean)?$|^gold/")
_KL = re.compile(r"(^|[_/])kl$")


@dataclass
class Panel:
    """One plot of the page."""

    key: str
    """Stable id (also the SVG id salt), e.g. ``"metrics-ppo"``."""
    title: str
    """Heading shown above the plot."""
    svg: str
    """The ``<svg>`` element produced by :mod:`rlhfkit.eval.plots` (trusted markup)."""
    wide: bool = True
    """Full page width; narrow panels share a row with their neighbour on wide screens."""


@dataclass
class Section:
    """A titled group of panels and tables."""

    title: str
    """Section heading."""
    panels: list[Panel] = field(default_factory=list)
    """Plots, in order."""


def read_jsonl(path: Path) -> list[dict[str, Any]]:
    """JSON objects, one per line. A final line without newline that does not parse is dropped
    (a run killed mid-write); any other bad line is an error naming ``path:line``."""
    text = path.read_text(encoding="utf-8")
    lines = text.split("\n")
    rows: list[dict[str, Any]] = []
    for number, line in enumerate(lines, start=1):
        if not line.strip():
            continue
        try:
            row = json.loads(line)
        except json.JSONDecodeError as err:
            if number == len(lines) and not text.endswith("\n"):
                break
            raise ValueError(f"{path}:{number}: not JSON: {err}") from err
        if not isinstance(row, dict):
            raise ValueError(f"{path}:{number}: expected a JSON object")
        rows.append(row)
    return rows


def metric_series(rows: list[dict[str, Any]]) -> dict[str, tuple[list[int], list[float]]]:
    """``{metric: (steps, values)}`` from metrics rows; non-numeric and non-finite values skipped."""
    series: dict[str, tuple[list[int], list[float]]] = defaultdict(lambda: ([], []))
    for index, row in enumerate(rows):
        step = row.get("step", index)
        for key, value in row.items():
            if key == "step" or isinstance(value, bool) or not isinstance(value, int | float):
                continue
            if math.isfinite(value):
                series[key][0].append(int(step))
                series[key][1].append(float(value))
    return dict(series)


def _namespace(key: str) -> str:
    return key.split("/", 1)[0] if "/" in key else "other"


def training_panels(series: Mapping[str, tuple[list[int], list[float]]]) -> list[Panel]:
    """Reward panel, KL panel, then one small-multiples panel per namespace of the other metrics."""
    reward = {k: v for k, v in series.items() if _REWARD.search(k)}
    kl = {k: v for k, v in series.items() if _KL.search(k) and k not in reward}
    panels = []
    if reward:
        svg = plots.line_panel("Reward", reward, ylabel="score", salt="reward-curve", width=HALF)
        panels.append(Panel("reward-curve", "Reward over steps", svg, wide=False))
    if kl:
        svg = plots.line_panel("KL(policy || reference)", kl, ylabel="nats", salt="kl-curve", width=HALF)
        panels.append(Panel("kl-curve", "KL over steps", svg, wide=False))
    groups: dict[str, dict[str, tuple[list[int], list[float]]]] = defaultdict(dict)
    for key, value in series.items():
        if key not in reward and key not in kl:
            groups[_namespace(key)][key] = value
    for name in sorted(groups):
        key = f"metrics-{re.sub(r'[^A-Za-z0-9_-]', '_', name)}"
        wide = len(groups[name]) > 1  # a lone metric does not need the whole row
        svg = plots.small_multiples(groups[name], salt=key, width=plots.WIDTH if wide else HALF)
        panels.append(Panel(key, f"{name} metrics", svg, wide=wide))
    return panels


def _text(prompt: Any) -> str:
    return prompt_text(prompt) if isinstance(prompt, str | list) else json.dumps(prompt)


def examples(samples: list[dict[str, Any]], limit: int = MAX_EXAMPLES) -> dict[str, Any] | None:
    """Before/after rows: the first and last step's responses to the same prompts (by position if
    the two steps share no prompt)."""
    by_step: dict[int, list[dict[str, Any]]] = defaultdict(list)
    for s in samples:
        by_step[int(s.get("step", 0))].append(s)
    if not by_step:
        return None
    first, last = min(by_step), max(by_step)
    before = by_step[first]
    after = {_text(s.get("prompt", "")): s for s in by_step[last]}
    pairs = [(b, after[key]) for b in before if (key := _text(b.get("prompt", ""))) in after]
    if not pairs:
        pairs = list(zip(before, by_step[last], strict=False))  # by position, as many as both steps have
    rows = [
        {"prompt": _text(b.get("prompt", "")), "before": b, "after": a if last != first else None}
        for b, a in pairs[:limit]
    ]
    return {"first": first, "last": last if last != first else None, "rows": rows}


def _win_rate_entries(data: Any) -> list[tuple[str, dict[str, Any]]]:
    """Accept one WinRate dict, ``{label: WinRate dict}`` or a list of dicts with a "label"."""
    if isinstance(data, Mapping) and "win_rate" in data:
        return [(str(data.get("label", "policy vs baseline")), dict(data))]
    if isinstance(data, Mapping):
        return [(str(k), dict(v)) for k, v in data.items()]
    return [(str(d.get("label", d.get("judge", f"#{i + 1}"))), dict(d)) for i, d in enumerate(data)]


def empty_tables() -> dict[str, Any]:
    """Every table the template may show, empty (the template runs with StrictUndefined)."""
    return {
        "win_rates": [],
        "leaderboard": [],
        "warnings": [],
        "gao_fit": None,
        "best": None,
        "agreement": None,
    }


def _win_rate_panel(win_rates: list[Any], tables: dict[str, Any]) -> Panel:
    entries = _win_rate_entries(win_rates)
    tables["win_rates"] = entries
    svg = plots.interval_panel(
        "Win rate against the baseline (95% CI)",
        [label for label, _ in entries],
        [w["win_rate"] for _, w in entries],
        [w["ci_low"] for _, w in entries],
        [w["ci_high"] for _, w in entries],
        xlabel="win rate (ties count half)",
        reference=0.5,
        salt="win-rate",
        width=HALF,
    )
    return Panel("win-rate", "Win rate", svg, wide=False)


def _leaderboard_panel(leaderboard: list[Mapping[str, Any]], tables: dict[str, Any]) -> Panel:
    rows = sorted(leaderboard, key=lambda r: -r["rating"])
    tables["leaderboard"] = rows
    svg = plots.interval_panel(
        "Bradley-Terry ratings (bootstrap 95% CI)",
        [r["name"] for r in rows],
        [r["rating"] for r in rows],
        [r["ci_low"] for r in rows],
        [r["ci_high"] for r in rows],
        xlabel="rating (Elo scale)",
        salt="leaderboard",
        width=HALF,
    )
    return Panel("leaderboard", "Leaderboard", svg, wide=False)


def _hacking_panels(hacking: Mapping[str, Any], tables: dict[str, Any]) -> list[Panel]:
    """Proxy vs gold (with the Gao et al. fit, the warnings and the best step), and drift."""
    points = sorted(hacking.get("points") or [], key=lambda p: p["step"])
    tables["warnings"] = list(hacking.get("warnings") or [])
    if not points:
        return []
    gold = [p for p in points if p.get("gold") is not None]
    fit = gao_fit([p["kl"] for p in gold], [p["gold"] for p in gold]) if len(gold) >= 3 else None
    tables["gao_fit"], tables["best"] = fit, hacking.get("best")
    tables["gao_text"] = describe_fit(fit, max(p["kl"] for p in gold)) if fit is not None else None
    svg = plots.proxy_gold_panel(
        points,
        warning_steps=[w["step"] for w in tables["warnings"]],
        fit=fit,
        best_step=(hacking.get("best") or {}).get("step"),
        salt="proxy-gold",
    )
    panels = [Panel("proxy-gold", "Over-optimization: proxy vs gold", svg)]
    drift = {}
    for name in ("length", "distinct2", "ensemble_std"):
        known = [p for p in points if p.get(name) is not None]
        if known:
            drift[name] = ([p["step"] for p in known], [p[name] for p in known])
    if drift:
        panels.append(Panel("drift", "Drift and disagreement", plots.small_multiples(drift, salt="drift")))
    return panels


def _agreement_panels(agreement: Mapping[str, Any], tables: dict[str, Any]) -> list[Panel]:
    per = agreement.get("per_annotator") or {}
    tables["agreement"] = {
        "alpha": agreement.get("alpha"),
        "alpha_without_ai": agreement.get("alpha_without_ai"),
        "per_annotator": per,
    }
    if not per:
        return []
    groups = {
        "with majority": {name: v.get("majority") for name, v in per.items()},
        "with gold": {name: v.get("gold") for name, v in per.items()},
    }
    groups = {k: v for k, v in groups.items() if any(x is not None for x in v.values())}
    svg = plots.bar_panel("Annotator agreement", groups, ylabel="agreement rate", salt="agreement", width=HALF)
    return [Panel("agreement", "Annotator agreement", svg, wide=False)]


def evaluation_section(data: Mapping[str, Any]) -> tuple[Section, dict[str, Any]]:
    """Panels and table data from ``eval.json``."""
    section = Section("Evaluation")
    tables = empty_tables()
    if data.get("win_rate"):
        section.panels.append(_win_rate_panel(data["win_rate"], tables))
    if data.get("leaderboard"):
        section.panels.append(_leaderboard_panel(data["leaderboard"], tables))
    section.panels.extend(_hacking_panels(data.get("hacking") or {}, tables))
    if data.get("agreement"):
        section.panels.extend(_agreement_panels(data["agreement"], tables))
    return section, tables


def _environment() -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.PackageLoader("rlhfkit.eval", "templates"),
        autoescape=True,
        undefined=jinja2.StrictUndefined,
        trim_blocks=True,
        lstrip_blocks=True,
    )


def render_report(run_dir: Path, *, title: str | None = None) -> str:
    """The report's HTML for a run directory (see the module docstring for the files read)."""
    run_dir = Path(run_dir)
    if not run_dir.is_dir():
        raise ValueError(f"run directory {run_dir} does not exist")
    sections: list[Section] = []
    metrics_path = run_dir / "metrics.jsonl"
    if metrics_path.exists():
        panels = training_panels(metric_series(read_jsonl(metrics_path)))
        if panels:
            sections.append(Section("Training", panels))
    tables = empty_tables()
    eval_path = run_dir / "eval.json"
    if eval_path.exists():
        try:
            data = json.loads(eval_path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as err:
            raise ValueError(f"{eval_path}: not JSON: {err}") from err
        section, tables = evaluation_section(data)
        if section.panels:
            sections.append(section)
    samples_path = run_dir / "samples.jsonl"
    example_data = examples(read_jsonl(samples_path)) if samples_path.exists() else None
    files = sorted(p.name for p in run_dir.iterdir() if p.is_file() and p.name != REPORT_NAME)
    return (
        _environment()
        .get_template("report.html")
        .render(
            title=title or run_dir.name,
            run_dir=str(run_dir),
            files=files,
            sections=sections,
            tables=tables,
            examples=example_data,
        )
    )


@dataclass(frozen=True)
class ReportConfig(Config):
    """`rlhfkit report RUN_DIR`: (re)write the HTML report of a run directory."""

    run_dir: str = ""
    """Run directory (metrics.jsonl, samples.jsonl, eval.json); report.html is written into it."""

    def __post_init__(self) -> None:
        super().__post_init__()
        require(bool(self.run_dir), "run_dir is required (a run directory)")


def write_report(run_dir: Path, *, title: str | None = None) -> Path:
    """Write ``run_dir/report.html`` and return its path."""
    html = render_report(Path(run_dir), title=title)
    out = Path(run_dir) / REPORT_NAME
    write_text_atomic(out, html)
    return out
