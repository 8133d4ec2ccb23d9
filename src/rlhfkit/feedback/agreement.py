"""Agreement statistics: Krippendorff's alpha, and agreement with the majority and with gold.

Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"; 2019,
*Content Analysis*, ch. 12) for reliability data with any number of coders and missing values::

    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o_ck d2_ck / sum_ck n_c n_k d2_ck

with the coincidence matrix ``o_ck = sum_u (pairs of values c, k in unit u) / (m_u - 1)`` over units
holding ``m_u >= 2`` values, ``n_c = sum_k o_ck`` and ``n = sum_c n_c``. The difference function
``d2`` encodes the level of measurement. The `krippendorff` package computes it (checked against the
hand-written implementation it replaced, in tests/reference/).
"""

from __future__ import annotations

import math
import statistics
from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Literal, get_args

import krippendorff
import numpy as np

AlphaMetric = Literal["nominal", "ordinal", "interval", "ratio"]
"""Levels of measurement Krippendorff's alpha is computed at (the `krippendorff` package's names)."""

ALPHA_METRICS: tuple[AlphaMetric, ...] = get_args(AlphaMetric)


def _sort_key(value: Hashable) -> tuple[int, float | str]:
    # Numbers in numeric order; anything else (nominal labels) after them, by text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def value_counts(units: Sequence[Sequence[Hashable]]) -> tuple[list[Hashable], np.ndarray]:
    """(sorted distinct pairable values (V,), counts (U, V): how often each unit got each value).

    Each unit lists the values coders gave it (missing values simply absent); units with fewer than
    two values are unpairable and left out. Alpha depends on units only through these counts (the
    coincidence matrix is built from them), so who gave which value is not needed.
    """
    pairable = [u for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u}, key=_sort_key)
    index = {v: i for i, v in enumerate(values)}
    counts = np.zeros((len(pairable), len(values)))
    for row, unit in enumerate(pairable):
        for v in unit:
            counts[row, index[v]] += 1
    return values, counts


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], metric: str = "nominal") -> float | None:
    """Krippendorff's alpha of reliability data given unit by unit, computed by the `krippendorff`
    package (Castro 2017) from the units' value counts.

    Returns None when alpha is undefined: no pairable unit, or no expected disagreement (every
    pairable value is the same, so agreement cannot be told apart from chance).
    """
    level = next((m for m in ALPHA_METRICS if m == metric), None)
    if level is None:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(ALPHA_METRICS)}")
    values, counts = value_counts(units)
    if len(values) < 2:
        return None
    numeric = all(isinstance(v, (int, float)) and not isinstance(v, bool) for v in values)
    if metric != "nominal" and not numeric:
        raise ValueError(f"{metric} alpha needs numeric values")
    # Nominal labels need not be numbers: the package reads them by position in the value domain.
    domain = [float(v) for v in values] if metric != "nominal" else list(range(len(values)))  # type: ignore[arg-type]
    with np.errstate(invalid="ignore", divide="ignore"):
        alpha = float(krippendorff.alpha(value_counts=counts, value_domain=domain, level_of_measurement=level))
    return None if math.isnan(alpha) else alpha


def strict_majority(values: Sequence[Hashable]) -> Hashable | None:
    """The most frequent value when it is unique (None on an empty list or a tie for first)."""
    if not values:
        return None
    ranked = Counter(values).most_common(2)
    if len(ranked) == 2 and ranked[0][1] == ranked[1][1]:
        return None
    return ranked[0][0]


def unit_agrees(value: Hashable, others: Sequence[Hashable], tolerance: float | None) -> bool | None:
    """Does `value` agree with the other annotators on one unit? None: no reference to compare with.

    Nominal units (tolerance None) agree with the strict majority of the others; numeric units agree
    when within `tolerance` of the others' median (a Likert 5 against others' 4 and 6 agrees).
    """
    if tolerance is None:
        majority = strict_majority(others)
        return None if majority is None else value == majority
    if not others:
        return None
    return abs(float(value) - statistics.median(float(v) for v in others)) <= tolerance  # type: ignore[arg-type]


def units_agree(value: Hashable, reference: Hashable, tolerance: float | None) -> bool:
    """Agreement of one unit with a known (gold) answer."""
    if tolerance is None:
        return value == reference
    return abs(float(value) - float(reference)) <= tolerance  # type: ignore[arg-type]
