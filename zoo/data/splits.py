"""Deterministic train / val / test splits and ``max_samples`` subsets, shared by every DataModule.

Split results are part of zoo's reproducibility promise (a seed names a split: docs figures and tests depend on
it), so the recipe below is fixed: the test part is cut first with ``seed``, the val part from the rest with
``seed + 1``, each cut stratified by label whenever scikit-learn can stratify it, and every part sorted.
"""

from __future__ import annotations

from collections.abc import Sequence
from math import ceil
from typing import Any, TypeVar

import numpy as np

T = TypeVar("T")


def _can_stratify(labels: np.ndarray, size: float) -> bool:
    """Whether ``train_test_split(..., test_size=size, stratify=labels)`` succeeds: every class has two samples
    and both sides of the cut (sizes computed as scikit-learn does) can hold one sample of every class."""
    _, counts = np.unique(labels, return_counts=True)
    n_test = ceil(size * len(labels))
    return counts.min() >= 2 and min(n_test, len(labels) - n_test) >= len(counts)


def _cut(idx: np.ndarray, labels: np.ndarray | None, size: float, seed: int) -> tuple[np.ndarray, np.ndarray]:
    from sklearn.model_selection import train_test_split

    strat = labels[idx] if labels is not None and _can_stratify(labels[idx], size) else None
    return train_test_split(idx, test_size=size, random_state=seed, stratify=strat)


def split_indices(labels: Sequence[Any] | np.ndarray | int, val_fraction: float, test_fraction: float, seed: int,
                  test_index: Sequence[int] | np.ndarray | None = None) -> dict[str, np.ndarray]:
    """Sorted ``{"train", "val", "test"}`` index arrays over ``len(labels)`` samples.

    ``labels``: one hashable label per sample to stratify by, or just the sample count (unstratified: multi-label
    and token data). ``test_index``: a fixed test part (a published test split, a test file appended to the
    samples, or ``[]`` when the test data lives elsewhere); then ``test_fraction`` is not cut. ``val_fraction`` is a
    share of all samples, so it is rescaled to the part left after a ``test_fraction`` cut.
    """
    strat = None if isinstance(labels, int) else np.asarray(labels)
    n = labels if isinstance(labels, int) else len(labels)
    everything = np.arange(n)
    empty = np.asarray([], dtype=np.int64)
    if test_index is not None:
        test = np.asarray(test_index, dtype=np.int64)
        rest = np.setdiff1d(everything, test)
        cut_share = 0.0
    elif test_fraction > 0:
        rest, test = _cut(everything, strat, test_fraction, seed)
        cut_share = test_fraction
    else:
        rest, test, cut_share = everything, empty, 0.0
    val = empty
    if val_fraction > 0:
        rest, val = _cut(rest, strat, val_fraction / (1.0 - cut_share), seed + 1)
    return {"train": np.sort(rest), "val": np.sort(val), "test": np.sort(test)}


def subset_indices(n: int, max_samples: int | None, seed: int) -> np.ndarray | None:
    """Sorted indices of a deterministic random subset of ``max_samples`` of ``n`` rows; ``None`` keeps them all."""
    if max_samples is None or n <= max_samples:
        return None
    return np.sort(np.random.default_rng(seed).permutation(n)[:max_samples])


def limit(rows: list[T], max_samples: int | None, seed: int) -> list[T]:
    """``rows`` cut to a deterministic random subset of ``max_samples`` (see :func:`subset_indices`), order kept."""
    keep = subset_indices(len(rows), max_samples, seed)
    return rows if keep is None else [rows[i] for i in keep]


def conflicting_split_options(files: dict[str, str | None], fractions: dict[str, tuple[float, float]],
                              prefix: str = "--data.init_args.") -> str | None:
    """The message for a split given both as a file and by a fraction of the training data, or None.

    ``files``: split -> the option that gives it as a file (``val`` / ``val_folder`` / ``test_csv``) when set;
    ``fractions``: split -> (the fraction given, its default). A file wins and its fraction is not used; a fraction
    left at its default is taken as not given (recipes state the defaults, and a user who swaps the recipe's
    ``dataset`` for files keeps them), any other value is a choice the file would silently override: refused.
    """
    for split, option in files.items():
        value, default = fractions.get(split, (0.0, 0.0))
        if option and value != default:
            return (f"{prefix}{option} and {prefix}{split}_fraction {value:g} both choose the {split} split; give one "
                    f"(with a {split} file the {split}_fraction is not used: drop it or set it back to {default:g})")
    return None


__all__ = ["conflicting_split_options", "limit", "split_indices", "subset_indices"]
