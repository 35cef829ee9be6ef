"""What every check returns: a :class:`Finding` (a kind, one summary line, a count and the rows that show it) and
what every family hands the generic checks: a :class:`SplitView` per split (row ids, a hashable key of each input,
labels)."""

from __future__ import annotations

from collections.abc import Hashable
from dataclasses import asdict, dataclass, field
from typing import Any

#: rows listed per finding in data_report.json (the count is always the full one)
MAX_ROWS = 200
#: the splits in the order they are compared: val and test against train, test against val
SPLIT_ORDER = ("train", "val", "test")


@dataclass
class SplitView:
    """One split as the checks see it. ``keys`` identify an input exactly (a text, an image's bytes digest); the
    ``labels`` are hashable (a class name, a tuple of names or of tags) or None for unlabelled data."""

    ids: list[str]
    keys: list[Hashable]
    labels: list[Hashable] | None = None

    def __len__(self) -> int:
        return len(self.ids)


@dataclass
class Finding:
    """``kind``: a stable name (``duplicates_across``, ``label_shift``, ...); ``severity``: ``warning`` (it can
    distort a score) or ``info``; ``count``: rows (or groups) concerned; ``rows``: examples, each a list of row ids
    (or a dict with ids and figures)."""

    kind: str
    severity: str
    message: str
    count: int
    rows: list[Any] = field(default_factory=list)
    figures: dict[str, Any] = field(default_factory=dict)

    def as_dict(self) -> dict[str, Any]:
        out = asdict(self)
        out["rows"] = out["rows"][:MAX_ROWS]
        return out


def splits_in_order(views: dict[str, Any]) -> list[str]:
    return [s for s in SPLIT_ORDER if s in views and len(views[s])] + [s for s in views if s not in SPLIT_ORDER]


def later_pairs(views: dict[str, Any]) -> list[tuple[str, str]]:
    """(earlier, later) split pairs to compare: (train, val), (train, test), (val, test)."""
    names = splits_in_order(views)
    return [(a, b) for i, a in enumerate(names) for b in names[i + 1:]]


__all__ = ["MAX_ROWS", "SPLIT_ORDER", "Finding", "SplitView", "later_pairs", "splits_in_order"]
