"""``data.dedupe`` and ``data.exclude_rows``: rows dropped from the splits at set-up, reported.

* ``dedupe: within`` drops a row whose input already occurs earlier in the same split; ``across`` also drops
  val / test rows whose input occurs in an earlier split (train, then val), so no test row was seen in training;
* ``exclude_rows: FILE`` drops the row ids listed in FILE: one id a line, or a CSV with a ``row`` column (the
  ``label_issues.csv`` that ``zoo test`` writes, after removing the rows you keep).
"""

from __future__ import annotations

import csv
import io
from collections.abc import Hashable
from pathlib import Path
from typing import Any

from zoo.data.checks.findings import SplitView, splits_in_order
from zoo.errors import ConfigError

DEDUPE = ("none", "within", "across")


def check_row_options(dedupe: str, exclude_rows: str | None) -> None:
    if dedupe not in DEDUPE:
        raise ConfigError(f"--data.init_args.dedupe must be one of {', '.join(DEDUPE)}; got {dedupe!r}")
    if exclude_rows is not None and not Path(exclude_rows).is_file():
        raise ConfigError(f"--data.init_args.exclude_rows: {exclude_rows} is not a file; expected one row id a "
                          f"line or a CSV "
                          "with a 'row' column (label_issues.csv)")


def read_exclude_rows(path: str) -> set[str]:
    from zoo.data.files import read_text

    text = read_text(path, "utf-8", ConfigError, "one row id a line or a CSV with a 'row' column",
                     what="--data.init_args.exclude_rows file")
    first = text.splitlines()[0] if text.strip() else ""
    if "," in first and "row" in [c.strip() for c in first.split(",")]:
        return {r["row"].strip() for r in csv.DictReader(io.StringIO(text)) if (r.get("row") or "").strip()}
    return {line.strip() for line in text.splitlines() if line.strip() and line.strip() != "row"}


def rows_to_drop(views: dict[str, SplitView], dedupe: str, excluded: set[str]) -> dict[str, set[str]]:
    """Row ids to drop per split."""
    drop: dict[str, set[str]] = {s: {i for i in v.ids if i in excluded} for s, v in views.items()}
    if dedupe == "none":
        return drop
    earlier: set[Hashable] = set()
    for split in splits_in_order(views):
        seen: set[Hashable] = set()
        view = views[split]
        for ident, key in zip(view.ids, view.keys):
            if ident in drop[split]:
                continue
            if key in seen or (dedupe == "across" and key in earlier):
                drop[split].add(ident)
            seen.add(key)
        earlier |= seen
    return drop


def apply_row_filters(dm: Any) -> None:
    """Drop the rows ``dm.dedupe`` / ``dm.exclude_rows`` name from ``dm.splits``; ``dm.dropped_rows`` counts them
    per split (one log line each)."""
    dedupe, exclude = getattr(dm, "dedupe", "none"), getattr(dm, "exclude_rows", None)
    if dedupe == "none" and not exclude:
        return
    from zoo.data.checks import family_of

    excluded = read_exclude_rows(exclude) if exclude else set()
    family = family_of(dm)
    if family == "text_classification":
        from zoo.data.checks.text import classification_views

        views, _ = classification_views(dm)
    elif family == "token_classification":
        from zoo.data.checks.tokens import token_views

        views, _, _ = token_views(dm)
    elif family == "image_classification":
        from zoo.data.checks.images import image_views

        views, _ = image_views(dm)
    else:
        raise ConfigError(f"--data.init_args.dedupe / --data.init_args.exclude_rows work on text, token and "
                          f"image data, not {family}; "
                          "interaction logs have data.duplicates")
    drop = rows_to_drop(views, dedupe, excluded)
    dm.dropped_rows = {s: len(d) for s, d in drop.items() if d}
    for split, ids in drop.items():
        if ids:
            dm.splits[split] = without_rows(dm.splits[split], ids)
            if split in (getattr(dm, "tagged", None) or {}):
                dm.tagged[split] = [t for t in dm.tagged[split] if t[2] not in ids]
            import logging

            logging.getLogger("zoo.data").warning("zoo: %s split: dropped %d rows (data.dedupe: %s%s)", split,
                                                  len(ids), dedupe, ", data.exclude_rows" if excluded else "")


def without_rows(ds: Any, ids: set[str]) -> Any:
    """A copy of a split (a TokenizedSet or an ImageSet) without the rows whose id is in ``ids``."""
    if hasattr(ds, "without"):  # a split that builds its rows lazily (n-gram bags) filters its own table
        return ds.without(ids)
    if hasattr(ds, "rows"):
        return type(ds)([r for r in ds.rows if str(r["id"]) not in ids])
    import numpy as np
    import torch

    keep = [k for k, i in enumerate(ds.ids) if str(i) not in ids]
    source = ds.source[torch.as_tensor(keep, dtype=torch.long)] if isinstance(ds.source, torch.Tensor) \
        else [ds.source[k] for k in keep]
    labels = None if ds.labels is None else np.asarray(ds.labels)[keep]
    return type(ds)(source, labels, [ds.ids[k] for k in keep], ds.in_channels, ds.transform)


__all__ = ["DEDUPE", "apply_row_filters", "check_row_options", "read_exclude_rows", "rows_to_drop",
           "without_rows"]
