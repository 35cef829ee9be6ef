"""``InteractionDataModule``: user-item interaction logs for recommenders.

Sources (exactly one of ``path`` or ``dataset``):

* a CSV / TSV / Parquet file with configurable ``user_column`` / ``item_column`` / ``rating_column`` /
  ``time_column`` (common MovieLens names such as ``userId`` / ``movieId`` are recognised automatically);
* MovieLens ``u.data`` (tab separated, no header: user, item, rating, timestamp) and ml-latest ``ratings.csv``;
* RecBole atomic files (``.inter``; the ``name:type`` header suffixes are stripped);
* a built-in dataset (``ml-100k`` from the installed ``recbole`` package, ``synthetic_interactions``).

Item descriptions (for the text-aware model) come from ``items_path``: a RecBole ``.item`` file, an ml-latest
``movies.csv`` (``title`` + ``genres``) or any CSV with the item column and text columns.

Processing, in order: value checks (NaN / non-numeric ratings and duplicate rows stop with a
:class:`RecsysDataError` naming file and row), implicit threshold, k-core filtering, id maps, seeded split.
Item indices start at 1; index 0 is padding (SASRec) and is never recommended.

Splits (per user, as RecBole's ``group_by: user``):

* ``random``: random order, then ratio split (``split_ratios``, RecBole's 8:1:1 default and its rounding);
* ``temporal``: chronological order, then the same ratio split (the newest interactions are held out);
* ``loo``: leave-one-out by time: the last interaction is the test item, the one before it the validation item;
* ``column``: a ``split`` column with values train / val / test decides (used to share a split with RecBole).

A user left without a validation or test item (too few interactions) is, with ``empty_split: skip`` (default),
simply not evaluated on that split, as RecBole does; ``empty_split: error`` stops and names the user.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader, Dataset, IterableDataset

from zoo.data.distributed import eval_sampler
from zoo.errors import ZooError
from zoo.registry import DATAMODULES, DATASETS

SPLITS = ("random", "temporal", "loo", "column")
STAGE_INDEX = {"train": 0, "val": 1, "test": 2}
USER_ALIASES = ("user_id", "userId", "user", "uid", "UserID")
ITEM_ALIASES = ("item_id", "movieId", "item", "iid", "ItemID", "MovieID")
RATING_ALIASES = ("rating", "score", "Rating")
TIME_ALIASES = ("timestamp", "time", "Timestamp", "ts")


class RecsysDataError(ZooError, ValueError):
    """Bad interaction data or options: the message names the file, row or flag and what was expected."""


class UnknownUserError(RecsysDataError):
    """``predict`` was asked about a user the model was not trained on."""


# -- reading ----------------------------------------------------------------------------------------------
def _strip_atomic(df: pd.DataFrame) -> pd.DataFrame:
    return df.rename(columns={c: str(c).split(":", 1)[0] for c in df.columns})


def read_table(path: str | Path, fmt: str = "auto", sep: str | None = None) -> tuple[pd.DataFrame, str]:
    """Read an interactions or items table as strings; returns (frame, detected format)."""
    path = Path(path)
    if not path.exists():
        raise RecsysDataError(f"file not found: {path}")
    if fmt == "auto":
        if path.suffix in (".inter", ".item", ".user"):
            fmt = "atomic"
        elif path.name == "u.data":
            fmt = "udata"
        elif path.suffix == ".parquet":
            fmt = "parquet"
        elif path.suffix in (".tsv", ".tab"):
            fmt, sep = "csv", sep or "\t"
        else:
            fmt = "csv"
    if fmt == "atomic":
        df = _strip_atomic(pd.read_csv(path, sep=sep or "\t", dtype=str, keep_default_na=False, na_values=[""],
                                       quoting=3, encoding="utf-8", encoding_errors="replace"))
    elif fmt == "udata":
        df = pd.read_csv(path, sep=sep or "\t", header=None, dtype=str, names=["user_id", "item_id", "rating", "timestamp"])
    elif fmt == "parquet":
        df = pd.read_parquet(path).astype(str)
    elif fmt == "csv":
        df = pd.read_csv(path, sep=sep or ",", dtype=str, keep_default_na=False, na_values=[""],
                         encoding="utf-8", encoding_errors="replace")
    else:
        raise RecsysDataError(f"data.format must be one of auto, csv, parquet, udata, atomic; got {fmt!r}")
    return df, fmt


def _pick_column(df: pd.DataFrame, wanted: str | None, aliases: Sequence[str], what: str, source: str,
                 required: bool) -> str | None:
    if wanted and wanted in df.columns:
        return wanted
    for alias in aliases:
        if alias in df.columns:
            return alias
    if required or wanted:
        raise RecsysDataError(f"{source}: no {what} column {wanted!r} (columns: {', '.join(map(str, df.columns))}); "
                              f"set data.{what}_column")
    return None


def standardise_interactions(raw: pd.DataFrame, source: str, user_column: str | None = None,
                             item_column: str | None = None, rating_column: str | None = None,
                             time_column: str | None = None) -> pd.DataFrame:
    """Columns ``user``, ``item`` (str), ``rating``, ``timestamp`` (float, NaN when absent) and ``row`` (the
    1-based data row in the source file, for error messages). NaN or non-numeric values stop with an error."""
    u = _pick_column(raw, user_column, USER_ALIASES, "user", source, True)
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    r = _pick_column(raw, rating_column, RATING_ALIASES, "rating", source, False)
    t = _pick_column(raw, time_column, TIME_ALIASES, "time", source, False)
    df = pd.DataFrame({"user": raw[u].astype(str).str.strip(), "item": raw[i].astype(str).str.strip()})
    missing_id = raw[u].isna() | raw[i].isna() | (df["user"] == "") | (df["item"] == "")
    if missing_id.any():
        row = int(np.flatnonzero(missing_id.to_numpy())[0]) + 1
        raise RecsysDataError(f"{source}: data row {row} has an empty user or item id")
    for name, col in (("rating", r), ("timestamp", t)):
        if col is None:
            df[name] = np.nan
            continue
        values = pd.to_numeric(raw[col], errors="coerce")
        bad = values.isna() | ~np.isfinite(values.to_numpy(dtype=float, na_value=np.nan))
        if bad.any():
            row = int(np.flatnonzero(bad.to_numpy())[0])
            raise RecsysDataError(f"{source}: data row {row + 1} has {name} {raw[col].iloc[row]!r} in column {col!r}; "
                                  f"expected a finite number ({int(bad.sum())} such rows)")
        df[name] = values.to_numpy(dtype=float)
    df["row"] = np.arange(1, len(df) + 1)
    return df


def standardise_items(raw: pd.DataFrame, source: str, item_column: str | None = None,
                      text_columns: Sequence[str] | None = None) -> pd.DataFrame:
    """Columns ``item`` (str) and ``text``: the text columns joined as ``col: value`` lines; genre lists
    (``|``-separated in ml-latest) are comma-separated."""
    i = _pick_column(raw, item_column, ITEM_ALIASES, "item", source, True)
    if text_columns:
        missing = [c for c in text_columns if c not in raw.columns]
        if missing:
            raise RecsysDataError(f"{source}: no text column(s) {missing} (columns: {', '.join(map(str, raw.columns))}); "
                                  "set data.item_text_columns")
        cols = list(text_columns)
    else:
        preferred = [c for c in ("movie_title", "title", "release_year", "year", "class", "genres", "genre", "description")
                     if c in raw.columns]
        cols = preferred or [c for c in raw.columns if c != i]
    text = pd.Series([""] * len(raw), index=raw.index)
    for c in cols:
        values = raw[c].fillna("").astype(str).str.replace("|", ", ", regex=False)
        label = {"movie_title": "title", "release_year": "year", "class": "genres"}.get(c, c)
        text = text + np.where(values != "", label + ": " + values + ". ", "")
    items = pd.DataFrame({"item": raw[i].astype(str).str.strip(), "text": text.str.strip()})
    return items.drop_duplicates("item", keep="first")


# -- built-in datasets --------------------------------------------------------------------------------------
def recbole_dataset_dir(name: str = "ml-100k") -> Path:
    import importlib.util

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise RecsysDataError("the built-in ml-100k comes from the `recbole` package; install it (`make venv` does, "
                              "with --no-deps)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / name
    if not (folder / f"{name}.inter").exists():
        raise RecsysDataError(f"{folder / (name + '.inter')} not found in the installed recbole package")
    return folder


@DATASETS.register("ml-100k", tags=("recsys",), summary="MovieLens 100k (943 users, 1,682 movies; RecBole atomic files)")
def ml_100k() -> dict[str, Any]:
    folder = recbole_dataset_dir("ml-100k")
    return {"path": str(folder / "ml-100k.inter"), "items_path": str(folder / "ml-100k.item")}


def synthetic_log(num_users: int = 50, num_items: int = 80, per_user: int = 12, seed: int = 0,
                  num_clusters: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small log with structure a model can learn: users and items fall in clusters, users mostly pick items
    of their cluster; item text names the cluster. Returns (interactions, items) frames."""
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(num_items) % num_clusters
    rows = []
    for u in range(num_users):
        c = u % num_clusters
        own = np.flatnonzero(item_cluster == c)
        other = np.flatnonzero(item_cluster != c)
        n_own = int(round(per_user * 0.8))
        picks = np.concatenate([rng.choice(own, min(n_own, len(own)), replace=False),
                                rng.choice(other, per_user - min(n_own, len(own)), replace=False)])
        for t, it in enumerate(rng.permutation(picks)):
            rows.append((f"u{u}", f"i{it}", float(rng.integers(1, 6)), float(1_000_000 + 1000 * u + t)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    names = ["red", "green", "blue", "yellow", "black", "white", "purple", "orange"]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "title": [f"{names[item_cluster[i] % len(names)]} thing {i}" for i in range(num_items)],
                          "genres": [f"{names[item_cluster[i] % len(names)]}|group{item_cluster[i]}" for i in range(num_items)]})
    return inter, items


@DATASETS.register("synthetic_interactions", tags=("recsys",), summary="generated clustered log (50 users x 80 items) for tests")
def synthetic_interactions(**kwargs: Any) -> dict[str, Any]:
    inter, items = synthetic_log(**kwargs)
    return {"interactions": inter, "items": items}


# -- processing ---------------------------------------------------------------------------------------------
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
                              "data.duplicates to 'first', 'last' or 'keep' (repeat interactions)")
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


@dataclass
class CSR:
    """Per-user item lists: ``items[indptr[u]:indptr[u+1]]`` (chronological where time is known)."""

    indptr: torch.Tensor
    items: torch.Tensor

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, order_key: np.ndarray, num_users: int) -> CSR:
        order = np.lexsort((order_key, users))
        counts = np.bincount(users, minlength=num_users)
        indptr = np.r_[0, np.cumsum(counts)]
        return cls(torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(items[order].astype(np.int64)))

    def lengths(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        d = self.indptr[1:] - self.indptr[:-1]
        return d if rows is None else d[rows]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row position in ``rows``, item) pairs for the given users, vectorised."""
        rows = rows.cpu()
        counts = self.indptr[rows + 1] - self.indptr[rows]
        owner = torch.repeat_interleave(torch.arange(len(rows)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        idx = torch.repeat_interleave(self.indptr[rows], counts) + offsets
        return owner, self.items[idx]

    def dense(self, rows: torch.Tensor, num_cols: int, device: Any = None) -> torch.Tensor:
        owner, items = self.gather(rows)
        out = torch.zeros(len(rows), num_cols, dtype=torch.bool)
        out[owner, items] = True
        return out.to(device) if device is not None else out

    def last(self, rows: torch.Tensor, length: int) -> torch.Tensor:
        """The last ``length`` items of each row, left-padded with 0: [B, length]."""
        owner, items = self.gather(rows)
        counts = self.lengths(rows.cpu())
        pos_from_end = torch.repeat_interleave(counts, counts) - 1 - (
            torch.arange(len(items)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts))
        keep = pos_from_end < length
        out = torch.zeros(len(rows), length, dtype=torch.long)
        out[owner[keep], length - 1 - pos_from_end[keep]] = items[keep]
        return out


def concat_csr(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_users: int) -> CSR:
    users = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    keys = np.concatenate([p[2] for p in parts])
    return CSR.build(users, items, keys, num_users)


# -- datasets yielding whole batches (no per-sample Python work) ------------------------------------------
def rank_shard(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under DDP every rank builds the same shuffled global batch (same seed and epoch) and keeps its own
    strided share, so the ranks together see each global batch once and DDP's gradient average is the
    full-batch gradient; a single process keeps the whole batch."""
    if not (torch.distributed.is_available() and torch.distributed.is_initialized()):
        return batch
    rank, world = torch.distributed.get_rank(), torch.distributed.get_world_size()
    return {k: v[rank::world] for k, v in batch.items()}


class PairBatches(IterableDataset):
    """Each epoch: shuffle the training interactions, draw negatives for all of them at once (vectorised
    rejection sampling against the user's training items), and yield ``{"user", "pos", "neg"}`` batches;
    ``neg`` is [B] for one negative per positive, else [B, n]."""

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, batch_size: int,
                 num_negatives: int, seed: int) -> None:
        self.users, self.items = users.astype(np.int64), items.astype(np.int64)
        self.num_items, self.batch_size = num_items, batch_size
        self.num_negatives, self.seed, self.epoch = num_negatives, seed, 0
        # membership test for rejection sampling on the key user * (num_items + 1) + item: a flat bit array when
        # it is small (one gather per round), else sorted keys + searchsorted
        self.stride = num_items + 1
        keys = self.users * self.stride + self.items
        if (int(self.users.max()) + 1) * self.stride <= 50_000_000:
            self.seen_flat: np.ndarray | None = np.zeros((int(self.users.max()) + 1) * self.stride, dtype=bool)
            self.seen_flat[keys] = True
        else:
            self.seen_flat = None
            self.seen_keys = np.unique(keys)

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def sample_negatives(self, users: np.ndarray, rng: np.random.Generator, num: int) -> np.ndarray:
        neg = rng.integers(1, self.num_items + 1, size=len(users) * num)
        base = np.repeat(users * self.stride, num) if num > 1 else users * self.stride
        todo = np.arange(len(neg))
        for _ in range(100):  # each round redraws only the draws that hit a training item of their user
            keys = base[todo] + neg[todo]
            if self.seen_flat is not None:
                hit = self.seen_flat[keys]
            else:
                pos = np.searchsorted(self.seen_keys, keys).clip(max=len(self.seen_keys) - 1)
                hit = self.seen_keys[pos] == keys
            todo = todo[hit]
            if not len(todo):
                break
            neg[todo] = rng.integers(1, self.num_items + 1, size=len(todo))
        return neg.reshape(len(users), num)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        perm = rng.permutation(len(self.users))
        users, pos = self.users[perm], self.items[perm]
        neg = self.sample_negatives(users, rng, self.num_negatives)
        if self.num_negatives == 1:
            neg = neg[:, 0]
        users_t, pos_t, neg_t = torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg)
        for s in range(0, len(users), self.batch_size):
            e = s + self.batch_size
            yield rank_shard({"user": users_t[s:e], "pos": pos_t[s:e], "neg": neg_t[s:e]})


class SequenceBatches(IterableDataset):
    """Next-item training for sequential models: per user, the last ``max_len + 1`` training items give
    ``seq`` (input, left-padded with 0) and ``target`` (the next item at each position, 0 = no loss)."""

    def __init__(self, csr: CSR, batch_size: int, max_len: int, seed: int) -> None:
        users = torch.nonzero(csr.lengths() >= 2).flatten()
        window = csr.last(users, max_len + 1)
        self.users, self.seq, self.target = users, window[:, :-1], window[:, 1:]
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        self.epoch += 1
        perm = torch.randperm(len(self.users), generator=g)
        for s in range(0, len(perm), self.batch_size):
            idx = perm[s:s + self.batch_size]
            yield rank_shard({"user": self.users[idx], "seq": self.seq[idx], "target": self.target[idx]})


class UserBatches(Dataset):
    """Evaluation / prediction users, one sample per user (the loader batches them): a sampler can then shard
    users over DDP ranks without padding (:func:`zoo.data.distributed.eval_sampler`), and the prediction writer
    can put each user's rows back in dataset order."""

    def __init__(self, users: torch.Tensor, user_ids: list[str] | None = None) -> None:
        self.users, self.user_ids = users, user_ids

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"user": self.users[i]}
        if self.user_ids is not None:
            sample["user_id"] = self.user_ids[i]
        return sample


@dataclass
class EvalView:
    """What a model needs to evaluate one stage: candidate exclusions, held-out targets, histories."""

    users: torch.Tensor          # users evaluated (at least one target)
    exclude: CSR                 # items never recommended to the user (seen before this stage)
    targets: CSR | None          # held-out items of this stage (None for predict)
    history: CSR                 # chronological items known before this stage (sequential models)


@DATAMODULES.register("interactions", tags=("recsys",), summary="interaction logs: CSV/Parquet, MovieLens, RecBole atomic; seeded splits")
class InteractionDataModule(pl.LightningDataModule):
    """Interaction data for recommenders (see the module docstring for formats and splits).

    Args:
        path: interactions file (CSV, TSV, Parquet, MovieLens ``u.data`` / ``ratings.csv``, RecBole ``.inter``).
        dataset: a built-in dataset (``ml-100k``, ``synthetic_interactions``); ``dataset_kwargs`` are passed on.
        items_path: item descriptions (RecBole ``.item``, ml-latest ``movies.csv``, CSV); every item of the log
            must be in it.
        format: ``auto`` (by file name), ``csv``, ``parquet``, ``udata``, ``atomic``.
        user_column / item_column / rating_column / time_column: column names (common aliases are tried).
        item_text_columns: columns joined into the item text (default: title, release year and genres when present).
        implicit_threshold: keep only interactions with rating >= this (None keeps all as positives).
        user_core / item_core: k-core filtering minimum interactions per user / item.
        duplicates: a (user, item) pair occurring twice: ``error`` (default), ``first``, ``last``, ``keep``.
        split: ``random`` (8:1:1 per user, RecBole's default), ``temporal``, ``loo`` or ``column``.
        split_ratios: train / val / test ratios for ``random`` and ``temporal``.
        empty_split: ``skip`` (users without a val/test item are not evaluated on it) or ``error``.
        batch_size / eval_batch_size: training batch (interactions or sequences) / users per evaluation batch.
        predict_users: user ids (or a file with one per line) to recommend for; None = every user.
        unknown_users: in predict, ``error`` or ``popular`` (recommend the most popular training items).
    """

    def __init__(
        self,
        path: str | None = None,
        dataset: str | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
        items_path: str | None = None,
        format: str = "auto",
        sep: str | None = None,
        user_column: str | None = None,
        item_column: str | None = None,
        rating_column: str | None = None,
        time_column: str | None = None,
        item_text_columns: list[str] | None = None,
        implicit_threshold: float | None = None,
        user_core: int = 0,
        item_core: int = 0,
        duplicates: str = "error",
        split: str = "random",
        split_ratios: tuple[float, float, float] = (0.8, 0.1, 0.1),
        empty_split: str = "skip",
        seed: int = 42,
        batch_size: int = 2048,
        eval_batch_size: int = 4096,
        predict_users: list[str | int] | str | None = None,
        unknown_users: str = "error",
    ) -> None:
        super().__init__()
        given = [n for n, v in (("path", path), ("dataset", dataset)) if v]
        if len(given) != 1:
            raise RecsysDataError(f"give exactly one of data.path or data.dataset (got {given or 'none'})")
        if split not in SPLITS:
            raise RecsysDataError(f"data.split must be one of {', '.join(SPLITS)}; got {split!r}")
        if duplicates not in ("error", "first", "last", "keep"):
            raise RecsysDataError(f"data.duplicates must be error, first, last or keep; got {duplicates!r}")
        if empty_split not in ("skip", "error"):
            raise RecsysDataError(f"data.empty_split must be skip or error; got {empty_split!r}")
        if unknown_users not in ("error", "popular"):
            raise RecsysDataError(f"data.unknown_users must be error or popular; got {unknown_users!r}")
        if len(split_ratios) != 3 or min(split_ratios) < 0 or split_ratios[0] <= 0:
            raise RecsysDataError(f"data.split_ratios must be three non-negative numbers with train > 0; got {split_ratios}")
        if batch_size < 1 or eval_batch_size < 1:
            raise RecsysDataError("data.batch_size and data.eval_batch_size must be >= 1")
        self.save_hyperparameters()
        self.path, self.dataset, self.dataset_kwargs = path, dataset, dict(dataset_kwargs or {})
        self.items_path, self.format, self.sep = items_path, format, sep
        self.columns = dict(user_column=user_column, item_column=item_column, rating_column=rating_column,
                            time_column=time_column)
        self.item_text_columns = item_text_columns
        self.implicit_threshold, self.user_core, self.item_core = implicit_threshold, user_core, item_core
        self.duplicates, self.split, self.split_ratios = duplicates, split, tuple(split_ratios)
        self.empty_split, self.seed = empty_split, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size
        self.predict_users, self.unknown_users = predict_users, unknown_users
        self._prepared = False
        self._views: dict[str, EvalView] = {}
        if dataset:
            DATASETS.entry(dataset)

    # -- loading and processing ---------------------------------------------------------------------
    def _frames(self) -> tuple[pd.DataFrame, pd.DataFrame | None, str, str]:
        items_raw, items_source = None, ""
        if self.dataset:
            spec = DATASETS.create(self.dataset, **self.dataset_kwargs)
            if "interactions" in spec:
                raw, source = spec["interactions"], f"dataset {self.dataset}"
                items_raw, items_source = spec.get("items"), f"dataset {self.dataset} items"
            else:
                raw, _ = read_table(spec["path"], "auto")
                source = spec["path"]
                if spec.get("items_path") and not self.items_path:
                    items_raw, _ = read_table(spec["items_path"], "auto")
                    items_source = spec["items_path"]
        else:
            raw, _ = read_table(self.path, self.format, self.sep)
            source = str(self.path)
        if self.items_path:
            items_raw, _ = read_table(self.items_path, "auto")
            items_source = str(self.items_path)
        inter = standardise_interactions(raw, source, **self.columns)
        items = None
        if items_raw is not None:
            items = standardise_items(items_raw, items_source, None, self.item_text_columns)
        if self.split == "column":
            if "split" not in raw.columns:
                raise RecsysDataError(f"{source}: data.split 'column' needs a 'split' column with train/val/test")
            inter["split"] = raw["split"].astype(str).to_numpy()
        return inter, items, source, items_source

    def prepare(self) -> None:
        if self._prepared:
            return
        inter, items, source, items_source = self._frames()
        inter = handle_duplicates(inter, self.duplicates, source)
        if self.implicit_threshold is not None:
            if inter["rating"].isna().all():
                raise RecsysDataError(f"{source}: data.implicit_threshold needs a rating column")
            inter = inter[inter["rating"] >= self.implicit_threshold]
        inter = k_core(inter, self.user_core, self.item_core)
        if len(inter) == 0:
            raise RecsysDataError(f"{source}: no interactions left after implicit_threshold / k-core filtering")
        self.user_ids = sorted(inter["user"].unique().tolist())
        self.item_ids = ["[PAD]"] + sorted(inter["item"].unique().tolist())
        user_index = {u: k for k, u in enumerate(self.user_ids)}
        item_index = {it: k for k, it in enumerate(self.item_ids)}
        users = inter["user"].map(user_index).to_numpy(np.int64)
        items_idx = inter["item"].map(item_index).to_numpy(np.int64)
        has_time = not inter["timestamp"].isna().all()
        order_key = inter["timestamp"].to_numpy(float) if has_time else inter["row"].to_numpy(float)
        # ties in time keep file order
        order_key = np.lexsort((inter["row"].to_numpy(), order_key)).argsort().astype(np.int64)
        if self.split == "column":
            labels = inter["split"].str.lower().map({"train": 0, "val": 1, "valid": 1, "test": 2})
            if labels.isna().any():
                row = int(inter["row"].to_numpy()[labels.isna().to_numpy()][0])
                raise RecsysDataError(f"{source}: data row {row}: split must be train, val or test")
            part = labels.to_numpy(np.int8)
        elif self.split == "random":
            rng = np.random.default_rng(self.seed)
            part = assign_split(users, rng.permutation(len(users)), "random", self.split_ratios)
        else:
            part = assign_split(users, order_key, self.split, self.split_ratios)
        self.num_users, self.num_items = len(self.user_ids), len(self.item_ids) - 1
        n = self.num_users
        self.parts = {s: (users[part == k], items_idx[part == k], order_key[part == k]) for s, k in STAGE_INDEX.items()}
        for stage in ("val", "test"):
            count = np.bincount(self.parts[stage][0], minlength=n)
            if self.empty_split == "error" and (count == 0).any():
                u = int(np.flatnonzero(count == 0)[0])
                raise RecsysDataError(
                    f"{source}: split {self.split!r} leaves user {self.user_ids[u]!r} with no {stage} item "
                    f"({int(np.bincount(users, minlength=n)[u])} interactions; {int((count == 0).sum())} such users); "
                    "filter with data.user_core or set data.empty_split: skip")
        if len(self.parts["train"][0]) == 0:
            raise RecsysDataError(f"{source}: the split leaves no training interactions")
        self.item_train_counts = torch.from_numpy(np.bincount(self.parts["train"][1], minlength=self.num_items + 1))
        self.item_texts: list[str] | None = None
        if items is not None:
            text = dict(zip(items["item"], items["text"]))
            missing = [it for it in self.item_ids[1:] if it not in text]
            if missing:
                raise RecsysDataError(f"{items_source}: {len(missing)} item id(s) used in {source} are missing, e.g. "
                                      f"{missing[:5]}; every item of the log needs a row in the items file")
            self.item_texts = [""] + [text[it] for it in self.item_ids[1:]]
        self._csr: dict[str, CSR] = {s: CSR.build(*p, n) for s, p in self.parts.items()}
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    # -- what models need ---------------------------------------------------------------------------
    def describe(self) -> dict[str, Any]:
        self.prepare()
        return {"num_users": self.num_users, "num_items": self.num_items,
                **{f"num_{s}": len(p[0]) for s, p in self.parts.items()}}

    def train_csr(self) -> CSR:
        self.prepare()
        return self._csr["train"]

    def train_pairs(self) -> tuple[np.ndarray, np.ndarray]:
        self.prepare()
        return self.parts["train"][0], self.parts["train"][1]

    def eval_view(self, stage: str) -> EvalView:
        """``val``: exclude train items, targets val items. ``test``: exclude train + val, targets test.
        ``predict``: exclude everything known."""
        self.prepare()
        if stage not in self._views:
            n = self.num_users
            if stage == "val":
                known = [self.parts["train"]]
            elif stage == "test":
                known = [self.parts["train"], self.parts["val"]]
            else:
                known = [self.parts["train"], self.parts["val"], self.parts["test"]]
            history = concat_csr(known, n)
            targets = self._csr[stage] if stage in ("val", "test") else None
            users = (torch.nonzero(targets.lengths() > 0).flatten() if targets is not None else torch.arange(n))
            self._views[stage] = EvalView(users=users, exclude=history, targets=targets, history=history)
        return self._views[stage]

    # -- loaders ------------------------------------------------------------------------------------
    def _batch_spec(self) -> dict[str, Any]:
        model = getattr(self.trainer, "lightning_module", None) if self.trainer is not None else None
        spec = model.train_batch_spec() if hasattr(model, "train_batch_spec") else {}
        # the model decides what it trains on (its own num_negatives / max_len), so they are model options
        return {"kind": "pairs", "num_negatives": 1, "max_len": 50, **spec}

    def train_dataloader(self) -> DataLoader:
        self.prepare()
        spec = self._batch_spec()
        if spec["kind"] == "sequence":
            ds: Any = SequenceBatches(self._csr["train"], self.batch_size, spec["max_len"], self.seed)
        else:
            u, i = self.train_pairs()
            ds = PairBatches(u, i, self.num_items, self.batch_size, spec["num_negatives"], self.seed)
        return DataLoader(ds, batch_size=None)

    def _eval_loader(self, stage: str) -> DataLoader:
        view = self.eval_view(stage)
        if len(view.users) == 0:
            raise RecsysDataError(f"no user has a {stage} item with split {self.split!r} and ratios {self.split_ratios}")
        return self._user_loader(UserBatches(view.users))

    def _user_loader(self, ds: UserBatches) -> DataLoader:
        return DataLoader(ds, batch_size=self.eval_batch_size, shuffle=False, sampler=eval_sampler(ds))

    def val_dataloader(self) -> DataLoader:
        return self._eval_loader("val")

    def test_dataloader(self) -> DataLoader:
        return self._eval_loader("test")

    def resolve_predict_users(self) -> tuple[torch.Tensor, list[str]]:
        """Indices (-1 for unknown users, allowed with ``unknown_users: popular``) and original ids."""
        self.prepare()
        wanted = self.predict_users
        if wanted is None:
            return torch.arange(self.num_users), list(self.user_ids)
        if isinstance(wanted, str):
            p = Path(wanted)
            if not p.exists():
                raise RecsysDataError(f"data.predict_users file not found: {p} (expected one user id per line)")
            wanted = [line.strip() for line in p.read_text(encoding="utf-8").splitlines() if line.strip()]
        index = {u: k for k, u in enumerate(self.user_ids)}
        ids = [str(u) for u in wanted]
        unknown = [u for u in ids if u not in index]
        if unknown and self.unknown_users == "error":
            raise UnknownUserError(f"predict: {len(unknown)} user id(s) not in the training data, e.g. {unknown[:5]}; "
                                   "set data.unknown_users: popular to recommend popular items to them")
        return torch.tensor([index.get(u, -1) for u in ids], dtype=torch.long), ids

    def predict_dataloader(self) -> DataLoader:
        users, ids = self.resolve_predict_users()
        return self._user_loader(UserBatches(users, ids))
