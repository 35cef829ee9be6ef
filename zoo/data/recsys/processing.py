"""Interaction processing: duplicate policy, k-core filtering and the per-user splits (RecBole's rounding)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from zoo.data.recsys.readers import RecsysDataError

SPLITS = ("random", "temporal", "loo", "column")
STAGE_INDEX = {"train": 0, "val": 1, "test": 2}


def handle_duplicates(df: pd.DataFrame, policy: str, source: str) -> pd.DataFrame:
    if policy == "keep":
        return df
    dup = df.duplicated(["user", "item"], keep="first" if policy != "last" else "last")
    if not dup.any():
        return df
    if policy == "error":
        first = df[dup].iloc[0]
        earlier = df[(df["user"] == first["user"]) & (df["item"] == first["item"])]["row"].tolist()
        raise RecsysDataError(f"{source}: user {first['user']!r} and item {first['item']!r} occur more than once "
                              f"(data rows {earlier[:5]}; {int(dup.sum())} duplicate rows in all); set "
                              "--data.init_args.duplicates to 'first', 'last' or 'keep' (repeat interactions)")
    return df[~dup]


def k_core(df: pd.DataFrame, user_min: int, item_min: int) -> pd.DataFrame:
    """Repeatedly drop users with < user_min and items with < item_min interactions until stable."""
    if user_min <= 1 and item_min <= 1:
        return df
    while True:
        ucount = df.groupby("user")["item"].transform("size")
        icount = df.groupby("item")["user"].transform("size")
        keep = (ucount >= user_min) & (icount >= item_min)
        if keep.all():
            return df
        df = df[keep]


def ratio_split_counts(total: np.ndarray, ratios: Sequence[float]) -> np.ndarray:
    """RecBole's ``_calcu_split_ids`` for every user at once: [U, parts] counts."""
    total = np.asarray(total, dtype=np.int64)
    cnt = np.stack([(r * total.astype(float)).astype(np.int64) for r in ratios], axis=1)
    cnt[:, 0] = total - cnt[:, 1:].sum(1)
    for i in range(1, len(ratios)):
        active = cnt[:, 0] > 1
        frac = ratios[-i] * total.astype(float)
        bump = active & (frac > 0) & (frac < 1)
        cnt[bump, -i] += 1
        cnt[bump, 0] -= 1
        # RecBole stops at the first part for a user once cnt[0] <= 1: later parts see `active` false
    return cnt


def assign_split(users: np.ndarray, order_key: np.ndarray, method: str, ratios: Sequence[float]) -> np.ndarray:
    """0 train / 1 val / 2 test per row. ``users`` int codes, ``order_key`` the within-user order."""
    order = np.lexsort((order_key, users))
    su = users[order]
    starts = np.flatnonzero(np.r_[True, su[1:] != su[:-1]])
    sizes = np.diff(np.r_[starts, len(su)])
    pos = np.arange(len(su)) - np.repeat(starts, sizes)
    if method == "loo":
        from_end = np.repeat(sizes, sizes) - 1 - pos
        part = np.where(from_end == 0, 2, np.where(from_end == 1, 1, 0))
        part = np.where(np.repeat(sizes, sizes) == 1, 0, part)  # a single interaction stays in train
        part = np.where((np.repeat(sizes, sizes) == 2) & (part == 1), 0, part)
    else:
        cnt = ratio_split_counts(sizes, ratios)
        bounds = np.cumsum(cnt, axis=1)
        b0, b1 = np.repeat(bounds[:, 0], sizes), np.repeat(bounds[:, 1], sizes)
        part = np.where(pos < b0, 0, np.where(pos < b1, 1, 2))
    out = np.empty(len(users), dtype=np.int8)
    out[order] = part
    return out
