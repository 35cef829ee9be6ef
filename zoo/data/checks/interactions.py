"""Checks of interaction logs for recommenders: users and items met only in test (cold), repeated (user, item)
pairs within and across splits, and whether test interactions come after the training ones."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.data.checks.findings import Finding


def _rows(dm: Any, split: str, mask: np.ndarray) -> list[int]:
    rows = getattr(dm, "part_rows", {}).get(split)
    return [] if rows is None else [int(r) for r in rows[mask]]


def cold(dm: Any) -> list[Finding]:
    """Test (and val) interactions of users / items with no training interaction: a model can only guess there."""
    users, items, _ = dm.parts["train"]
    seen_u = np.zeros(dm.num_users, dtype=bool)
    seen_u[users] = True
    seen_i = np.zeros(dm.num_items + 1, dtype=bool)
    seen_i[items] = True
    found = []
    for split in ("val", "test"):
        u, i, _ = dm.parts[split]
        if not len(u):
            continue
        for what, mask, ids in (("users", ~seen_u[u], [dm.user_ids[x] for x in u]),
                                ("items", ~seen_i[i], [dm.item_ids[x] for x in i])):
            if mask.any():
                names = sorted({ids[k] for k in np.flatnonzero(mask)}, key=str)
                rows = _rows(dm, split, mask)
                found.append(Finding(
                    f"cold_{what}", "warning",
                    f"{len(names)} {what} of the {split} split never occur in train ({int(mask.sum())} of {len(u)} "
                    f"{split} interactions, e.g. {what[:-1]} {names[0]!r}): no model can rank them from history",
                    len(names), [{"id": str(n)} for n in names], {"split": split, "interactions": int(mask.sum()),
                                                                   "data_rows": rows[:200]}))
    return found


def repeated_pairs(dm: Any) -> list[Finding]:
    """(user, item) pairs that occur more than once (``data.duplicates: keep``), in one split or across two."""
    width = dm.num_items + 1
    keys = {s: dm.parts[s][0].astype(np.int64) * width + dm.parts[s][1] for s in ("train", "val", "test")}
    found = []
    for split, k in keys.items():
        _, first, counts = np.unique(k, return_index=True, return_counts=True)
        extra = int((counts - 1).sum())
        if extra:
            mask = np.ones(len(k), dtype=bool)
            mask[first] = False
            found.append(Finding("duplicate_interactions", "warning",
                                 f"{extra} {split} interactions repeat a (user, item) pair of the same split",
                                 extra, [], {"split": split, "data_rows": _rows(dm, split, mask)[:200]}))
    for earlier, later in (("train", "val"), ("train", "test"), ("val", "test")):
        mask = np.isin(keys[later], keys[earlier])
        if mask.any():
            found.append(Finding(
                "duplicates_across", "warning",
                f"{int(mask.sum())} {later} interactions repeat a (user, item) pair of {earlier}: the seen-item mask "
                f"hides them from ranking, so they count as misses", int(mask.sum()), [],
                {"split": later, "against": earlier, "data_rows": _rows(dm, later, mask)[:200]}))
    return found


def time_order(dm: Any) -> tuple[dict[str, Any], list[Finding]]:
    """Share of test interactions older than the same user's newest training one, and than the newest training
    interaction of anyone (order by timestamp, file order without one)."""
    users, _, key = dm.parts["train"]
    newest = np.full(dm.num_users, -1, dtype=np.int64)
    np.maximum.at(newest, users, key)
    figures: dict[str, Any] = {"ordered_by": "timestamp" if getattr(dm, "has_timestamps", False) else "file order",
                               "split": getattr(dm, "split", None)}
    found = []
    for split in ("val", "test"):
        u, _, k = dm.parts[split]
        if not len(u):
            continue
        before_user = k < newest[u]
        before_any = k < key.max()
        figures[split] = {"before_users_last_train": round(float(before_user.mean()), 4),
                          "before_last_train": round(float(before_any.mean()), 4)}
        if before_user.any():
            found.append(Finding(
                "time_order", "warning" if figures["split"] in ("temporal", "loo") else "info",
                f"{before_user.mean():.1%} of {split} interactions are older than the same user's newest training "
                f"interaction (ordered by {figures['ordered_by']}, split {figures['split']!r}): the model trains on "
                "the future of what it is tested on; data.split: temporal avoids it",
                int(before_user.sum()), [], {"split": split, "data_rows": _rows(dm, split, before_user)[:200]}))
    return figures, found


def check_interactions(dm: Any) -> tuple[dict[str, Any], list[Finding]]:
    found = cold(dm) + repeated_pairs(dm)
    order, order_found = time_order(dm)
    found += order_found
    figures = {"rows": {s: int(len(p[0])) for s, p in dm.parts.items()}, "users": dm.num_users,
               "items": dm.num_items, "time_order": order}
    return figures, found


__all__ = ["check_interactions", "cold", "repeated_pairs", "time_order"]
