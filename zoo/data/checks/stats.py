"""Shift between two splits: the population stability index (PSI) beside a chi-square test of the same counts.

PSI says how large the shift is (under 0.1 small, 0.1-0.25 moderate, over 0.25 large, the credit-scoring rule of
thumb); the test says whether a split this size could show it by chance. A finding needs both, so a tiny test split
with a noisy mix and a huge one with a negligible but significant drift both stay quiet.
"""

from __future__ import annotations

from collections import Counter
from collections.abc import Hashable, Sequence
from typing import Any

import numpy as np

#: PSI at or above this, with p below MAX_P, is a shift worth a finding
MIN_PSI = 0.1
MAX_P = 0.01
#: shares are floored at this before the logarithm (a category absent from one split)
_FLOOR = 1e-4


def psi(expected: Sequence[float], actual: Sequence[float]) -> float:
    """Population stability index of two count (or share) vectors over the same categories."""
    e = np.asarray(expected, dtype=float)
    a = np.asarray(actual, dtype=float)
    e = np.maximum(e / max(e.sum(), 1e-12), _FLOOR)
    a = np.maximum(a / max(a.sum(), 1e-12), _FLOOR)
    return float(np.sum((a - e) * np.log(a / e)))


def chi_square_p(first: Sequence[float], second: Sequence[float]) -> float:
    """p-value of scipy's chi-square test of homogeneity on a 2 x K table (empty columns dropped)."""
    from scipy.stats import chi2_contingency

    table = np.asarray([first, second], dtype=float)
    table = table[:, table.sum(0) > 0]
    if table.shape[1] < 2 or (table.sum(1) == 0).any():
        return 1.0
    return float(chi2_contingency(table)[1])


def categorical_shift(reference: Sequence[Hashable], other: Sequence[Hashable]) -> dict[str, Any]:
    """Shares of each category in both samples, their PSI and chi-square p-value."""
    ref, oth = Counter(reference), Counter(other)
    cats = sorted(set(ref) | set(oth), key=lambda c: (-ref[c], str(c)))
    r = [ref[c] for c in cats]
    o = [oth[c] for c in cats]
    return {"categories": [str(c) for c in cats], "reference": r, "other": o,
            "psi": round(psi(r, o), 4), "p_value": float(f"{chi_square_p(r, o):.3g}")}


def numeric_shift(reference: Sequence[float], other: Sequence[float], bins: int = 10) -> dict[str, Any]:
    """PSI over the reference's deciles and the two-sample Kolmogorov-Smirnov p-value (scipy), with quartiles."""
    from scipy.stats import ks_2samp

    ref = np.asarray(reference, dtype=float)
    oth = np.asarray(other, dtype=float)
    if len(ref) < 2 or len(oth) < 2:
        return {"psi": 0.0, "p_value": 1.0}
    edges = np.unique(np.quantile(ref, np.linspace(0, 1, bins + 1)[1:-1]))
    r = np.bincount(np.searchsorted(edges, ref, side="right"), minlength=len(edges) + 1)
    o = np.bincount(np.searchsorted(edges, oth, side="right"), minlength=len(edges) + 1)
    return {"reference_quartiles": [float(x) for x in np.quantile(ref, [0.25, 0.5, 0.75])],
            "other_quartiles": [float(x) for x in np.quantile(oth, [0.25, 0.5, 0.75])],
            "psi": round(psi(r, o), 4), "p_value": float(f"{ks_2samp(ref, oth).pvalue:.3g}")}


def shifted(figures: dict[str, Any]) -> bool:
    return figures["psi"] >= MIN_PSI and figures["p_value"] < MAX_P


__all__ = ["MAX_P", "MIN_PSI", "categorical_shift", "chi_square_p", "numeric_shift", "psi", "shifted"]
