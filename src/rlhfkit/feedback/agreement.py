"""Agreement statistics: Krippendorff's alpha, and agreement with the majority and with gold.

Krippendorff's alpha (Krippendorff 2011, "Computing Krippendorff's Alpha-Reliability"; 2019,
*Content Analysis*, ch. 12) for reliability data with any number of coders and missing values::

    alpha = 1 - D_o / D_e = 1 - (n - 1) * sum_ck o_ck d2_ck / sum_ck n_c n_k d2_ck

with the coincidence matrix ``o_ck = sum_u (pairs of values c, k in unit u) / (m_u - 1)`` over units
holding ``m_u >= 2`` values, ``n_c = sum_k o_ck`` and ``n = sum_c n_c``. The difference function
``d2`` encodes the level of measurement (one function per metric in `DIFFERENCES`).
"""

from __future__ import annotations

import statistics
from collections import Counter
from collections.abc import Callable, Hashable, Sequence

import numpy as np

DifferenceFn = Callable[[np.ndarray, np.ndarray], np.ndarray]
"""(sorted distinct values (V,), their pairable frequencies n_c (V,)) -> squared differences (V, V)."""


def nominal_difference(values: np.ndarray, _counts: np.ndarray) -> np.ndarray:
    """d2_ck = 0 if c == k else 1."""
    size = len(values)
    return 1.0 - np.eye(size)


def interval_difference(values: np.ndarray, _counts: np.ndarray) -> np.ndarray:
    """d2_ck = (c - k)^2."""
    v = values.astype(float)
    return (v[:, None] - v[None, :]) ** 2


def ratio_difference(values: np.ndarray, _counts: np.ndarray) -> np.ndarray:
    """d2_ck = ((c - k) / (c + k))^2 (0 when c = k = 0)."""
    v = values.astype(float)
    total = v[:, None] + v[None, :]
    diff = v[:, None] - v[None, :]
    with np.errstate(invalid="ignore", divide="ignore"):
        out = np.where(total == 0, 0.0, (diff / np.where(total == 0, 1.0, total)) ** 2)
    return out


def ordinal_difference(_values: np.ndarray, counts: np.ndarray) -> np.ndarray:
    """d2_ck = (sum_{g=c..k} n_g - (n_c + n_k) / 2)^2 over values in rank order."""
    cumulative = np.concatenate([[0.0], np.cumsum(counts)])
    size = len(counts)
    c = np.arange(size)[:, None]
    k = np.arange(size)[None, :]
    low, high = np.minimum(c, k), np.maximum(c, k)
    between = cumulative[high + 1] - cumulative[low]
    return (between - (counts[c] + counts[k]) / 2.0) ** 2


DIFFERENCES: dict[str, DifferenceFn] = {
    "nominal": nominal_difference,
    "ordinal": ordinal_difference,
    "interval": interval_difference,
    "ratio": ratio_difference,
}
"""Level of measurement -> difference function."""


def _sort_key(value: Hashable) -> tuple[int, float | str]:
    # Numbers in numeric order; anything else (nominal labels) after them, by text.
    if isinstance(value, (int, float)) and not isinstance(value, bool):
        return (0, float(value))
    return (1, str(value))


def coincidence_matrix(units: Sequence[Sequence[Hashable]]) -> tuple[list[Hashable], np.ndarray]:
    """(sorted distinct pairable values, coincidence matrix o of shape (V, V)).

    Each unit lists the values coders gave it (missing values simply absent); units with fewer than
    two values are unpairable and ignored.
    """
    pairable = [u for u in units if len(u) >= 2]
    values = sorted({v for u in pairable for v in u}, key=_sort_key)
    index = {v: i for i, v in enumerate(values)}
    o = np.zeros((len(values), len(values)))
    for unit in pairable:
        counts = np.zeros(len(values))
        for v in unit:
            counts[index[v]] += 1
        o += (np.outer(counts, counts) - np.diag(counts)) / (len(unit) - 1)
    return values, o


def krippendorff_alpha(units: Sequence[Sequence[Hashable]], metric: str = "nominal") -> float | None:
    """Krippendorff's alpha of reliability data given unit by unit.

    Returns None when alpha is undefined: no pairable unit, or no expected disagreement (every
    pairable value is the same, so agreement cannot be told apart from chance).
    """
    try:
        difference = DIFFERENCES[metric]
    except KeyError:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(DIFFERENCES)}") from None
    values, o = coincidence_matrix(units)
    if len(values) == 0:
        return None
    n_c = o.sum(axis=1)
    n = n_c.sum()
    if metric != "nominal" and not all(isinstance(v, (int, float)) for v in values):
        raise ValueError(f"{metric} alpha needs numeric values")
    d2 = difference(np.asarray(values, dtype=object if metric == "nominal" else float), n_c)
    expected = float((np.outer(n_c, n_c) * d2).sum())
    if expected == 0.0:
        return None
    observed = float((o * d2).sum())
    return float(1.0 - (n - 1.0) * observed / expected)


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
