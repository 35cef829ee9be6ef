"""Know the data before trusting a score: checks of a datamodule's train / val / test splits, one plain function
per family, run by ``zoo inspect`` and at the start of ``zoo fit`` (docs/data-checks.md).

:func:`inspect_datamodule` sets the datamodule up, runs its family's checks and returns the report: ``family``,
``figures`` (rows, label / length / script mix per split, ...), ``findings`` (each names its rows) and ``seconds``.
:func:`summary_lines` gives one console line per finding.
"""

from __future__ import annotations

import time
from typing import Any

from zoo.data.checks.findings import Finding

#: the families that have checks
FAMILIES = ("text_classification", "token_classification", "image_classification", "recommendation")


def family_of(dm: Any) -> str | None:
    """The ``data_family`` a datamodule class names (``text_classification``, ``token_classification``,
    ``image_classification``, ``recommendation``), or None. Read from the class, not by ``isinstance``: the
    datamodules import this package (``data.dedupe``), so it must not import them."""
    family = getattr(type(dm), "data_family", None)
    return family if family in FAMILIES else None


def inspect_datamodule(dm: Any) -> dict[str, Any]:
    """The data report of a datamodule (set up here if it is not yet)."""
    family = family_of(dm)
    if family is None:
        return {"family": None, "figures": {}, "findings": [], "seconds": 0.0,
                "note": f"no data checks for {type(dm).__name__}"}
    dm.setup("fit")
    start = time.perf_counter()
    if family == "text_classification":
        from zoo.data.checks.text import check_text_classification as check
    elif family == "token_classification":
        from zoo.data.checks.tokens import check_token_classification as check
    elif family == "image_classification":
        from zoo.data.checks.images import check_images as check
    else:
        from zoo.data.checks.interactions import check_interactions as check
    figures, found = check(dm)
    return {"family": family, "figures": figures, "findings": [f.as_dict() for f in found],
            "leaked_rows": _leaked(found), "seconds": round(time.perf_counter() - start, 3),
            "settings": row_filters(dm)}


def _leaked(found: list[Finding]) -> dict[str, list[str]]:
    """Every row of each split that is an exact or near copy of an earlier split's row (the findings' own row
    lists are cut at MAX_ROWS for the report; this one is whole, for the de-duplicated score)."""
    out: dict[str, set[str]] = {}
    for f in found:
        if f.kind in ("duplicates_across", "near_duplicates_across") and "split" in f.figures:
            for row in f.rows:
                ids = row["ids"] if isinstance(row, dict) else row
                if ids:
                    out.setdefault(f.figures["split"], set()).add(str(ids[0]))
    return {s: sorted(ids) for s, ids in out.items()}


def row_filters(dm: Any) -> dict[str, Any]:
    """``data.dedupe`` / ``data.exclude_rows`` of the datamodule and what they dropped."""
    return {"dedupe": getattr(dm, "dedupe", "none"), "exclude_rows": getattr(dm, "exclude_rows", None),
            "dropped": dict(getattr(dm, "dropped_rows", {}) or {})}


def leaked_ids(report: dict[str, Any], split: str = "test") -> set[str]:
    """Ids of ``split`` rows that are exact or near copies of an earlier split's rows."""
    return set(report.get("leaked_rows", {}).get(split, []))


def summary_lines(report: dict[str, Any]) -> list[str]:
    """One line per finding (``data: ...``), or one line saying the checks found nothing."""
    found = report.get("findings", [])
    if not report.get("family"):
        return [f"data checks: {report.get('note', 'none for this data')}"]
    if not found:
        return [f"data checks: no finding ({report['family']}: duplicates, near-duplicates, conflicting labels, "
                f"shift between splits) in {report['seconds']:.1f} s"]
    return [f"data: {f['message']}" for f in found]


__all__ = ["FAMILIES", "Finding", "family_of", "inspect_datamodule", "leaked_ids", "row_filters", "summary_lines"]
