"""Plot helpers for the HTML report: each returns one figure as an inline ``<svg>`` string.

Figures are built as ``matplotlib.figure.Figure`` objects and rendered by the SVG canvas, never
through pyplot, so no GUI backend, global figure list or display is involved (safe in a server or a
training process). Text stays text (``svg.fonttype = none``): smaller files, selectable labels.
"""

from __future__ import annotations

import io
import math
from collections.abc import Mapping, Sequence
from typing import Any, TypeAlias

import matplotlib
import numpy as np
from matplotlib.figure import Figure

from rlhfkit.eval.hacking import GaoFit

Series: TypeAlias = tuple[Sequence[float], Sequence[float]]
"""``(x, y)`` of one line."""

WIDTH = 7.5
"""Figure width in inches of a full-width panel (the SVG scales to the page width)."""

HALF_WIDTH = 5.0
"""Figure width of a half-width panel: narrower figure, so its text stays readable when scaled."""

COLORS = ("#1f77b4", "#d62728", "#2ca02c", "#ff7f0e", "#9467bd", "#8c564b", "#e377c2", "#17becf")


def _label(text: str) -> str:
    """Escape ``$`` so that metric names are never parsed as mathtext."""
    return text.replace("$", r"\$")


def figure_svg(fig: Figure, salt: str) -> str:
    """The figure as an ``<svg>`` element (XML prolog and DOCTYPE stripped).

    ``salt`` seeds matplotlib's element ids: one distinct salt per figure keeps ids unique within
    the page (several SVGs share one DOM) and the output deterministic.
    """
    buf = io.StringIO()
    with matplotlib.rc_context({"svg.fonttype": "none", "svg.hashsalt": salt}):
        fig.savefig(buf, format="svg", bbox_inches="tight")
    text = buf.getvalue()
    return text[text.index("<svg") :]


def _axes_grid(n: int, ncols: int, row_height: float, width: float = WIDTH) -> tuple[Figure, list[Any]]:
    cols = max(1, min(ncols, n))
    rows = math.ceil(n / cols)
    fig = Figure(figsize=(width, row_height * rows), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False).ravel().tolist()
    for ax in axes[n:]:
        ax.set_visible(False)
    return fig, axes[:n]


def smoothed(x: Sequence[float], y: Sequence[float], window: int | None = None) -> tuple[list[float], list[float]]:
    """The points sorted by x and a centred moving average of y over `window` neighbours (default: a
    fifth of the points, at least 3), shrinking at the ends. Hand-written (eight lines of numpy): the
    libraries that smooth (statsmodels' LOWESS, scipy's filters) are not worth a dependency here."""
    order = np.argsort(np.asarray(x, dtype=float), kind="stable")
    xs, ys = np.asarray(x, dtype=float)[order], np.asarray(y, dtype=float)[order]
    half = max(3, window or len(xs) // 5) // 2
    sums = np.concatenate([[0.0], np.cumsum(ys)])
    lo = np.clip(np.arange(len(xs)) - half, 0, None)
    hi = np.clip(np.arange(len(xs)) + half + 1, None, len(xs))
    return xs.tolist(), ((sums[hi] - sums[lo]) / (hi - lo)).tolist()


def _single_value(ax: Any, name: str, x: Sequence[float], y: Sequence[float], xlabel: str = "step") -> None:
    """A series of one point is a number, not a plot: the value large, where it was measured small."""
    ax.axis("off")
    ax.text(0.5, 0.55, f"{float(y[0]):.4g}", ha="center", va="center", fontsize=22, transform=ax.transAxes)
    ax.text(0.5, 0.2, f"{xlabel} {x[0]:g}", ha="center", va="center", fontsize=8, color="#666", transform=ax.transAxes)
    ax.set_title(_label(name), fontsize=9)


def line_panel(
    title: str,
    series: Mapping[str, Series],
    *,
    xlabel: str = "step",
    ylabel: str = "",
    salt: str,
    hline: float | None = None,
    width: float = WIDTH,
) -> str:
    """All series on one axes (for quantities on a common scale, e.g. rewards)."""
    if all(len(x) == 1 for x, _ in series.values()):
        return small_multiples(series, salt=salt, width=width)
    fig, (ax,) = _axes_grid(1, 1, 3.0, width)
    for i, (name, (x, y)) in enumerate(series.items()):
        marker = "." if len(x) < 30 else None
        ax.plot(x, y, label=_label(name), color=COLORS[i % len(COLORS)], lw=1.6, marker=marker)
    if hline is not None:
        ax.axhline(hline, color="#888", lw=0.8, ls=":")
    ax.set_title(_label(title))
    ax.set_xlabel(xlabel)
    ax.set_ylabel(_label(ylabel))
    ax.grid(alpha=0.3)
    ax.legend(fontsize=8)  # even for one series: the legend names the metric
    return figure_svg(fig, salt)


def small_multiples(series: Mapping[str, Series], *, salt: str, ncols: int = 3, width: float = WIDTH) -> str:
    """One small axes per series, titled by its name (for metrics with unrelated scales); the
    panel's caption in the page names the group."""
    fig, axes = _axes_grid(len(series), ncols, 2.2, width)
    for i, (ax, (name, (x, y))) in enumerate(zip(axes, series.items(), strict=True)):
        if len(x) == 1:
            _single_value(ax, name, x, y)
            continue
        ax.plot(x, y, color=COLORS[i % len(COLORS)], lw=1.4, marker="." if len(x) < 30 else None)
        ax.set_title(_label(name), fontsize=9)
        ax.tick_params(labelsize=7)
        ax.grid(alpha=0.3)
    return figure_svg(fig, salt)


def proxy_gold_panel(
    points: Sequence[Mapping[str, Any]],
    *,
    warning_steps: Sequence[int] = (),
    fit: GaoFit | None = None,
    best_step: int | None = None,
    salt: str,
) -> str:
    """Proxy and gold against ``sqrt(KL)`` (Gao et al. 2022's x-axis): each evaluation a point, a moving
    average through them (the KL of successive steps need not grow, so joining points in step order
    would draw loops), warnings as vertical lines."""
    fig, (ax,) = _axes_grid(1, 1, 3.4)
    d = [math.sqrt(max(float(p["kl"]), 0.0)) for p in points]
    proxy = [p["proxy"] for p in points]
    ax.scatter(d, proxy, color=COLORS[0], s=14, alpha=0.7, label="proxy (reward model)")
    if len(d) >= 3:
        ax.plot(*smoothed(d, proxy), color=COLORS[0], lw=1.6, label="proxy, moving average")
    gold_idx = [i for i, p in enumerate(points) if p.get("gold") is not None]
    if gold_idx:
        ax2 = ax.twinx()
        gold_d, gold = [d[i] for i in gold_idx], [points[i]["gold"] for i in gold_idx]
        ax2.scatter(gold_d, gold, color=COLORS[1], s=14, alpha=0.7, label="gold")
        if len(gold_d) >= 3:
            ax2.plot(*smoothed(gold_d, gold), color=COLORS[1], lw=1.6, label="gold, moving average")
        if fit is not None:
            grid = [max(d) * j / 100 for j in range(101)]
            fitted = fit.predict([g * g for g in grid])
            ax2.plot(grid, fitted, color=COLORS[1], ls="--", lw=1, label=f"Gao fit ({fit.form})")
        ax2.set_ylabel("gold", color=COLORS[1])
        ax2.legend(loc="lower right", fontsize=8)
    by_step = {int(p["step"]): d[i] for i, p in enumerate(points)}
    for step in warning_steps:
        if step in by_step:
            ax.axvline(by_step[step], color="#e6550d", lw=1.2, ls=":")
    if best_step is not None and best_step in by_step:
        ax.axvline(by_step[best_step], color=COLORS[2], lw=1.2, label="best checkpoint")
    ax.set_xlabel("sqrt(KL(policy || init))")
    ax.set_ylabel("proxy", color=COLORS[0])
    ax.set_title("Proxy vs gold as KL grows (dotted: warnings)")
    ax.grid(alpha=0.3)
    ax.legend(loc="upper left", fontsize=8)
    return figure_svg(fig, salt)


def interval_panel(
    title: str,
    labels: Sequence[str],
    values: Sequence[float],
    lows: Sequence[float],
    highs: Sequence[float],
    *,
    xlabel: str,
    reference: float | None = None,
    salt: str,
    width: float = WIDTH,
) -> str:
    """Points with confidence intervals, one row per label (win rates, leaderboard ratings)."""
    fig, (ax,) = _axes_grid(1, 1, 1.2 + 0.45 * len(labels), width)
    y = list(range(len(labels)))[::-1]
    err = [[v - lo for v, lo in zip(values, lows, strict=True)], [hi - v for v, hi in zip(values, highs, strict=True)]]
    ax.errorbar(values, y, xerr=err, fmt="o", color=COLORS[0], ecolor="#555", capsize=4)
    ax.set_yticks(y, [_label(s) for s in labels])
    if reference is not None:
        ax.axvline(reference, color="#888", ls=":", lw=1)
    ax.set_xlabel(xlabel)
    ax.set_title(_label(title))
    ax.grid(alpha=0.3, axis="x")
    ax.margins(y=0.4 if len(labels) == 1 else 0.15)
    return figure_svg(fig, salt)


def bar_panel(
    title: str,
    groups: Mapping[str, Mapping[str, float | None]],
    *,
    ylabel: str,
    salt: str,
    width: float = WIDTH,
) -> str:
    """Grouped vertical bars: ``groups[series][category]`` (missing values leave a gap)."""
    categories = sorted({c for values in groups.values() for c in values})
    fig, (ax,) = _axes_grid(1, 1, 3.0, width)
    bar = 0.8 / max(1, len(groups))
    for i, (name, values) in enumerate(groups.items()):
        xs = [j + i * bar for j, c in enumerate(categories) if values.get(c) is not None]
        ys = [values[c] for c in categories if values.get(c) is not None]
        ax.bar(xs, ys, width=bar, label=_label(name), color=COLORS[i % len(COLORS)])
    centers = [j + 0.4 - bar / 2 for j in range(len(categories))]
    ax.set_xticks(centers, [_label(c) for c in categories], rotation=30, ha="right")
    ax.set_ylabel(ylabel)
    ax.set_ylim(0, 1.05)
    ax.set_title(_label(title))
    ax.grid(alpha=0.3, axis="y")
    ax.legend(fontsize=8)
    return figure_svg(fig, salt)
