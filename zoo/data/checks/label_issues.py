"""Suspect labels: rows whose given label a model's out-of-sample, calibrated probabilities doubt, ranked with
cleanlab's confident learning (Northcutt et al., 2021), a library made for this, rather than a rule of our own.

Validation and test rows are out of sample for a model trained on train, so their probabilities qualify as they
are; train rows need K-fold probabilities (``zoo inspect --cross-validate K``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import numpy as np


def rank_label_issues(labels: Sequence[int], probs: np.ndarray, ids: Sequence[str], class_names: Sequence[str],
                      splits: Sequence[str] | None = None) -> tuple[list[dict[str, Any]], int]:
    """(the rows cleanlab flags, most suspect first, each with row, split, given and suggested label and score;
    cleanlab's estimate of how many labels are wrong). ``score`` is cleanlab's label quality (self-confidence):
    the probability the model gives the given label, low for a likely error."""
    from cleanlab.count import num_label_issues
    from cleanlab.filter import find_label_issues
    from cleanlab.rank import get_label_quality_scores

    y = np.asarray(labels, dtype=np.int64)
    p = np.asarray(probs, dtype=np.float64)
    p = p / p.sum(1, keepdims=True)
    if len(y) < 2 * p.shape[1] or len(np.unique(y)) < 2:
        return [], 0
    quality = get_label_quality_scores(y, p)
    # n_jobs=1: cleanlab forks a multiprocessing pool otherwise, and a fork of a process that holds torch's
    # threads can deadlock (it did, in a zoo test run)
    flagged = find_label_issues(y, p, return_indices_ranked_by="self_confidence", n_jobs=1)
    estimate = int(num_label_issues(y, p))
    rows = []
    for k in flagged:
        rows.append({"row": str(ids[k]), "split": splits[k] if splits is not None else "",
                     "given_label": class_names[y[k]], "suggested_label": class_names[int(p[k].argmax())],
                     "score": round(float(quality[k]), 4)})
    return rows, estimate


def precision_at(ranked_ids: Sequence[str], wrong: set[str], n: int) -> float:
    """Share of the first ``n`` ranked rows that are truly mislabelled."""
    top = list(ranked_ids)[:n]
    return sum(r in wrong for r in top) / max(len(top), 1)


__all__ = ["precision_at", "rank_label_issues"]
