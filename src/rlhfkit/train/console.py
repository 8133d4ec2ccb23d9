"""What a run shows on the console: one live progress line and a compact table, nothing else.

The line (tqdm, on stderr) carries the step, the elapsed time, the ETA and the few numbers that
matter for the method (its *headline*: SFT's loss, PPO's score and KL ...). Every `every` steps, and
at the last, a row of those numbers is printed above the line, so a finished run leaves a short
table behind. Every other metric goes only to ``metrics.jsonl`` (and TensorBoard / W&B).
"""

from __future__ import annotations

import sys
from collections.abc import Mapping, Sequence
from typing import Any

import torch

Headline = Sequence[tuple[str, str]]
"""``(metric key, column label)`` of the numbers a method shows, e.g. ``("train/loss", "loss")``."""

ROWS_PER_RUN = 10
"""Table rows of a run whose `every` is 0 (automatic)."""


def _fmt(value: float) -> str:
    return f"{value:.4g}" if abs(value) < 1e5 else f"{value:.3e}"


class Console:
    """The progress line and the table of one run (`live=False`, or stderr not a terminal: the table only;
    `show=False`, a process other than the main one: nothing)."""

    def __init__(
        self, name: str, headline: Headline, *, total: int, initial: int, every: int, live: bool, show: bool = True
    ) -> None:
        from tqdm import tqdm

        self.show = show
        self.headline = list(headline)
        self.total = total
        self.every = every or max(1, total // ROWS_PER_RUN)
        self.latest: dict[str, float] = {}
        self._header_done = False
        self._unshown: int | None = None  # a step whose numbers changed after its row was printed
        # disable=None: tqdm draws the line only on a terminal; a log file gets the table rows alone.
        self.bar = tqdm(
            total=total,
            initial=initial,
            desc=name,
            disable=None if live else True,
            dynamic_ncols=True,
            unit="step",
            file=sys.stderr,
        )

    def update(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Take a finished step's metrics: refresh the line, and print a table row when one is due."""
        self.note(step, metrics)
        self.bar.set_postfix_str(self._postfix(), refresh=False)
        self.bar.update(1)
        if step % self.every == 0 or step == self.total:
            self._row(step)

    def note(self, step: int, metrics: Mapping[str, Any]) -> None:
        """Take metrics logged outside a step (a final evaluation): shown in a last row at `close`."""
        for key, _ in self.headline:
            if key in metrics:
                value = metrics[key]
                self.latest[key] = float(value.item() if torch.is_tensor(value) else value)
                self._unshown = step

    def _postfix(self) -> str:
        return "  ".join(f"{label} {_fmt(self.latest[key])}" for key, label in self.headline if key in self.latest)

    def _row(self, step: int) -> None:
        widths = [max(10, len(label)) for _, label in self.headline]
        if not self._header_done:
            self.write(
                f"{'step':>7}  "
                + "  ".join(f"{label:>{w}}" for (_, label), w in zip(self.headline, widths, strict=True))
            )
            self._header_done = True
        cells = [_fmt(self.latest[key]) if key in self.latest else "-" for key, _ in self.headline]
        self.write(f"{step:>7}  " + "  ".join(f"{c:>{w}}" for c, w in zip(cells, widths, strict=True)))
        self._unshown = None

    def write(self, text: str) -> None:
        """A line above the progress line."""
        if self.show:
            self.bar.write(text, file=sys.stderr)

    def close(self) -> None:
        if self._unshown is not None and self._unshown > 0:
            self._row(self._unshown)
        self.bar.close()
