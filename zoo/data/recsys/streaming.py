"""An interaction log read in chunks and held as integer codes: the original ids are kept once each (in the
vocabularies), never once per interaction, and every processing step (duplicates, implicit threshold, k-core,
id maps) works on arrays of codes. Gives the same id maps and splits as processing a whole-log DataFrame
(``tests/tasks/test_recsys_scale.py`` checks it against :func:`~zoo.data.recsys.processing.handle_duplicates` and
:func:`~zoo.data.recsys.processing.k_core` on the frame).
"""

from __future__ import annotations

from collections.abc import Iterable
from dataclasses import dataclass

import numpy as np
import pandas as pd

from zoo.data.recsys.readers import RecsysDataError, standardise_interactions

SPLIT_LABELS = {"train": 0, "val": 1, "valid": 1, "test": 2}


class Vocabulary:
    """Original ids -> provisional codes in order of first appearance, grown chunk by chunk."""

    def __init__(self) -> None:
        self.index: dict[str, int] = {}

    def encode(self, values: np.ndarray) -> np.ndarray:
        uniq, inverse = np.unique(values, return_inverse=True)  # one dict lookup per distinct id of the chunk
        codes = np.fromiter((self.index.setdefault(v, len(self.index)) for v in uniq), np.int64, len(uniq))
        return codes[inverse.reshape(-1)]

    def sorted(self) -> tuple[np.ndarray, np.ndarray]:
        """(ids in sorted order, rank of each provisional code in that order)."""
        ids = np.array(list(self.index), dtype=object)
        order = np.argsort(ids, kind="stable")
        rank = np.empty(len(ids), dtype=np.int64)
        rank[order] = np.arange(len(ids))
        return ids[order], rank


@dataclass
class EncodedLog:
    """The log as arrays, one entry per interaction, in file order. ``users`` / ``items`` index ``user_ids`` /
    ``item_ids`` (sorted original ids); ``rating`` / ``timestamp`` are None when the file has no such column;
    ``split`` holds 0 / 1 / 2 (train / val / test, -1 for anything else) with ``split: column``."""

    users: np.ndarray
    items: np.ndarray
    rating: np.ndarray | None
    timestamp: np.ndarray | None
    row: np.ndarray
    split: np.ndarray | None
    user_ids: np.ndarray
    item_ids: np.ndarray

    def __len__(self) -> int:
        return len(self.users)

    def select(self, keep: np.ndarray) -> EncodedLog:
        pick = (lambda a: None if a is None else a[keep])  # noqa: E731
        return EncodedLog(self.users[keep], self.items[keep], pick(self.rating), pick(self.timestamp), self.row[keep],
                          pick(self.split), self.user_ids, self.item_ids)

    def compact(self) -> EncodedLog:
        """Drop ids no interaction uses any more (after filtering), keeping the sorted order."""
        used_u, users = np.unique(self.users, return_inverse=True)
        used_i, items = np.unique(self.items, return_inverse=True)
        return EncodedLog(users.reshape(-1), items.reshape(-1), self.rating, self.timestamp, self.row, self.split,
                          self.user_ids[used_u], self.item_ids[used_i])


def encode_log(chunks: Iterable[pd.DataFrame], source: str, columns: dict[str, str | None],
               with_split: bool = False) -> EncodedLog:
    """Standardise (value checks, with file row numbers) and encode each chunk, then concatenate the codes."""
    users_v, items_v = Vocabulary(), Vocabulary()
    parts: dict[str, list[np.ndarray]] = {k: [] for k in ("users", "items", "rating", "timestamp", "split")}
    has = {"rating": False, "timestamp": False}
    first_row = 1
    for raw in chunks:
        df = standardise_interactions(raw, source, first_row=first_row, **columns)
        parts["users"].append(users_v.encode(df["user"].to_numpy(object)))
        parts["items"].append(items_v.encode(df["item"].to_numpy(object)))
        for name in ("rating", "timestamp"):
            values = df[name].to_numpy(float)
            has[name] = has[name] or not np.isnan(values).all()
            parts[name].append(values)
        if with_split:
            if "split" not in raw.columns:
                raise RecsysDataError(f"{source}: --data.init_args.split 'column' needs a 'split' column with "
                                      "train/val/test")
            labels = raw["split"].astype(str).str.lower().map(SPLIT_LABELS).fillna(-1)
            parts["split"].append(labels.to_numpy(np.int8))
        first_row += len(df)
    if not parts["users"]:
        raise RecsysDataError(f"{source}: no interactions")
    user_ids, user_rank = users_v.sorted()
    item_ids, item_rank = items_v.sorted()
    cat = np.concatenate
    return EncodedLog(user_rank[cat(parts["users"])], item_rank[cat(parts["items"])],
                      cat(parts["rating"]) if has["rating"] else None,
                      cat(parts["timestamp"]) if has["timestamp"] else None,
                      np.arange(1, first_row, dtype=np.int64), cat(parts["split"]) if with_split else None,
                      user_ids, item_ids)


def drop_duplicates(log: EncodedLog, policy: str, source: str) -> EncodedLog:
    """The codes' version of :func:`~zoo.data.recsys.processing.handle_duplicates` (same policies, same message)."""
    if policy == "keep":
        return log
    keys = log.users * (len(log.item_ids) + 1) + log.items
    if policy == "last":
        _, first_from_end = np.unique(keys[::-1], return_index=True)
        keep_idx = len(keys) - 1 - first_from_end
    else:
        _, keep_idx = np.unique(keys, return_index=True)
    if len(keep_idx) == len(keys):
        return log
    keep = np.zeros(len(keys), dtype=bool)
    keep[keep_idx] = True
    if policy == "error":
        dup = int(np.flatnonzero(~keep)[0])
        rows = log.row[keys == keys[dup]].tolist()
        raise RecsysDataError(f"{source}: user {log.user_ids[log.users[dup]]!r} and item "
                              f"{log.item_ids[log.items[dup]]!r} occur more than once (data rows {rows[:5]}; "
                              f"{int((~keep).sum())} duplicate rows in all); set --data.init_args.duplicates to "
                              "'first', "
                              "'last' or 'keep' (repeat interactions)")
    return log.select(keep)


def k_core_mask(users: np.ndarray, items: np.ndarray, user_min: int, item_min: int) -> np.ndarray:
    """The codes' version of :func:`~zoo.data.recsys.processing.k_core`: rows kept by iterative filtering."""
    keep = np.ones(len(users), dtype=bool)
    if user_min <= 1 and item_min <= 1:
        return keep
    while True:
        ucount = np.bincount(users[keep], minlength=int(users.max()) + 1)
        icount = np.bincount(items[keep], minlength=int(items.max()) + 1)
        ok = keep & (ucount[users] >= user_min) & (icount[items] >= item_min)
        if (ok == keep).all():
            return keep
        keep = ok
