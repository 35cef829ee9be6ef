"""``InteractionDataModule``: reads, processes and splits an interaction log, and yields the batches a
recommender trains and is evaluated on (formats and splits: :mod:`zoo.data.recsys`)."""

from __future__ import annotations

import logging
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import pandas as pd
import torch
from torch.utils.data import DataLoader

from zoo.data.distributed import eval_sampler
from zoo.data.files import read_text
from zoo.data.loaders import train_loader
from zoo.data.recsys.batches import (
    EVAL_BLOCK_CELLS,
    BatchCache,
    BatchSpec,
    EvalBatches,
    EvalView,
    PairBatches,
    SequenceBatches,
    UserBatches,
)
from zoo.data.recsys.csr import CSR, concat_csr
from zoo.data.recsys.processing import SPLITS, STAGE_INDEX, assign_split
from zoo.data.recsys.readers import (
    RecsysDataError,
    RecsysFileError,
    UnknownUserError,
    item_text_summary,
    iter_table,
    read_table,
    standardise_items,
)
from zoo.data.recsys.streaming import EncodedLog, drop_duplicates, encode_log, k_core_mask
from zoo.registry import DATAMODULES, DATASETS

log = logging.getLogger("zoo.data.recsys")


@DATAMODULES.register("interactions", tags=("recsys",),
                      summary="interaction logs: CSV/Parquet, MovieLens, RecBole atomic; seeded splits")
class InteractionDataModule(pl.LightningDataModule):
    """Interaction data for recommenders (formats and splits: :mod:`zoo.data.recsys`).

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
        chunk_rows: interactions read at a time from a file (CSV chunks, Parquet record batches); the log is
            then held as integer codes, never as one string per id (:mod:`zoo.data.recsys.streaming`).
    """

    #: which checks zoo inspect runs on it (zoo.data.checks)
    data_family = "recommendation"

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
        chunk_rows: int = 1_000_000,
    ) -> None:
        super().__init__()
        given = [n for n, v in (("path", path), ("dataset", dataset)) if v]
        if len(given) != 1:
            raise RecsysDataError("give exactly one of --data.init_args.path or --data.init_args.dataset (got "
                                  f"{given or 'none'})")
        if split not in SPLITS:
            raise RecsysDataError(f"--data.init_args.split must be one of {', '.join(SPLITS)}; got {split!r}")
        if duplicates not in ("error", "first", "last", "keep"):
            raise RecsysDataError(f"--data.init_args.duplicates must be error, first, last or keep; got {duplicates!r}")
        if empty_split not in ("skip", "error"):
            raise RecsysDataError(f"--data.init_args.empty_split must be skip or error; got {empty_split!r}")
        if unknown_users not in ("error", "popular"):
            raise RecsysDataError(f"--data.init_args.unknown_users must be error or popular; got {unknown_users!r}")
        if len(split_ratios) != 3 or min(split_ratios) < 0 or split_ratios[0] <= 0:
            raise RecsysDataError("--data.init_args.split_ratios must be three non-negative numbers with train > 0; "
                                  f"got {split_ratios}")
        if chunk_rows < 1:
            raise RecsysDataError(f"--data.init_args.chunk_rows must be >= 1; got {chunk_rows}")
        if batch_size < 1 or eval_batch_size < 1:
            raise RecsysDataError("--data.init_args.batch_size and --data.init_args.eval_batch_size must be >= 1")
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
        self.chunk_rows = chunk_rows
        self._prepared = False
        self._views: dict[str, EvalView] = {}
        self._spec: BatchSpec | None = None
        self._cache = BatchCache()
        if dataset:
            DATASETS.entry(dataset)

    # -- loading and processing ---------------------------------------------------------------------
    def _load(self) -> tuple[EncodedLog, pd.DataFrame | None, str, str]:
        """The log encoded chunk by chunk (:mod:`zoo.data.recsys.streaming`) and the items table."""
        items_raw, items_source = None, ""
        with_split = self.split == "column"
        if self.dataset:
            spec = DATASETS.create(self.dataset, **self.dataset_kwargs)
            if "interactions" in spec:
                source = f"dataset {self.dataset}"
                log = encode_log([spec["interactions"]], source, self.columns, with_split)
                items_raw, items_source = spec.get("items"), f"dataset {self.dataset} items"
            else:
                source = spec["path"]
                log = encode_log(iter_table(source, "auto", None, self.chunk_rows)[0], source, self.columns, with_split)
                if spec.get("items_path") and not self.items_path:
                    items_raw, _ = read_table(spec["items_path"], "auto")
                    items_source = spec["items_path"]
        else:
            source = str(self.path)
            chunks, _ = iter_table(self.path, self.format, self.sep, self.chunk_rows)
            log = encode_log(chunks, source, self.columns, with_split)
        if self.items_path:
            items_raw, _ = read_table(self.items_path, "auto")
            items_source = str(self.items_path)
        items = None
        if items_raw is not None:
            items = standardise_items(items_raw, items_source, None, self.item_text_columns)
        return log, items, source, items_source

    def prepare(self) -> None:
        if self._prepared:
            return
        log, items, source, items_source = self._load()
        log = drop_duplicates(log, self.duplicates, source)
        if self.implicit_threshold is not None:
            if log.rating is None:
                raise RecsysDataError(f"{source}: --data.init_args.implicit_threshold needs a rating column")
            log = log.select(log.rating >= self.implicit_threshold)
        if self.user_core > 1 or self.item_core > 1:
            log = log.select(k_core_mask(log.users, log.items, self.user_core, self.item_core))
        if len(log) == 0:
            raise RecsysDataError(f"{source}: no interactions left after implicit_threshold / k-core filtering")
        log = log.compact()
        self.user_ids = log.user_ids.tolist()
        self.item_ids = ["[PAD]"] + log.item_ids.tolist()
        users, items_idx = log.users, log.items + 1
        rows = log.row
        order_key = log.timestamp if log.timestamp is not None else rows.astype(float)
        # ties in time keep file order
        order_key = np.lexsort((rows, order_key)).argsort().astype(np.int64)
        if self.split == "column":
            part = log.split
            if (part < 0).any():
                row = int(rows[part < 0][0])
                raise RecsysDataError(f"{source}: data row {row}: split must be train, val or test")
        elif self.split == "random":
            rng = np.random.default_rng(self.seed)
            part = assign_split(users, rng.permutation(len(users)), "random", self.split_ratios)
        else:
            part = assign_split(users, order_key, self.split, self.split_ratios)
        self.num_users, self.num_items = len(self.user_ids), len(self.item_ids) - 1
        n = self.num_users
        self.parts = {s: (users[part == k], items_idx[part == k], order_key[part == k]) for s, k in STAGE_INDEX.items()}
        # for the data checks (zoo.data.checks.interactions): each interaction's data row, and what orders them
        self.part_rows = {s: rows[part == k] for s, k in STAGE_INDEX.items()}
        self.has_timestamps = log.timestamp is not None
        for stage in ("val", "test"):
            count = np.bincount(self.parts[stage][0], minlength=n)
            if self.empty_split == "error" and (count == 0).any():
                u = int(np.flatnonzero(count == 0)[0])
                raise RecsysDataError(
                    f"{source}: split {self.split!r} leaves user {self.user_ids[u]!r} with no {stage} item "
                    f"({int(np.bincount(users, minlength=n)[u])} interactions; {int((count == 0).sum())} such users); "
                    "filter with --data.init_args.user_core or set --data.init_args.empty_split skip")
        if len(self.parts["train"][0]) == 0:
            raise RecsysDataError(f"{source}: the split leaves no training interactions")
        self.item_train_counts = torch.from_numpy(np.bincount(self.parts["train"][1], minlength=self.num_items + 1))
        self.item_texts: list[str] | None = None
        self.item_names: list[str] | None = None
        if items is not None:
            text = dict(zip(items["item"], items["text"]))
            missing = [it for it in self.item_ids[1:] if it not in text]
            if missing:
                raise RecsysDataError(f"{items_source}: {len(missing)} item id(s) used in {source} are missing, e.g. "
                                      f"{missing[:5]}; every item of the log needs a row in the items file")
            self.item_texts = [""] + [text[it] for it in self.item_ids[1:]]
            name = dict(zip(items["item"], items["name"]))
            self.item_names = [""] + [name[it] for it in self.item_ids[1:]]
            self._report_item_text(items.attrs.get("text_columns", []), items_source)
        self._csr: dict[str, CSR] = {s: CSR.build(*p, n) for s, p in self.parts.items()}
        self._prepared = True

    def setup(self, stage: str | None = None) -> None:
        self.prepare()

    def _report_item_text(self, columns: list[str], source: str) -> None:
        from lightning.pytorch.utilities import rank_zero_info
        from lightning.pytorch.utilities.rank_zero import rank_zero_only

        if self.dataset:  # a built-in dataset's file sits deep in site-packages: its name is enough
            source = Path(source).name
        lines, warning = item_text_summary(self.item_ids[1:], self.item_texts[1:], columns, source)
        rank_zero_info("zoo: " + "\n".join(lines))
        if warning and rank_zero_only.rank == 0:
            log.warning("zoo: %s", warning)  # zoo's one line, as the text data modules warn

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
    def transfer_batch_to_device(self, batch: Any, device: torch.device, dataloader_idx: int) -> Any:
        # batches are flat dicts of tensors (and id lists); Lightning's generic collection walk costs more than the
        # whole BPR step on CPU. Defined here, where the batches are made, not on the recommender: Lightning warns
        # at every run when the model overrides this hook and a datamodule is passed
        if isinstance(batch, dict):
            return {k: v.to(device, non_blocking=True) if isinstance(v, torch.Tensor) else v for k, v in batch.items()}
        return super().transfer_batch_to_device(batch, device, dataloader_idx)

    def use_batch_spec(self, spec: BatchSpec) -> None:
        """What the model trains on (and whether evaluation batches carry histories); the model states it once,
        when it is bound to this datamodule (``RecommenderTask.configure_from_data``)."""
        if not isinstance(spec, BatchSpec):
            raise TypeError(f"use_batch_spec expects a zoo.data.recsys.BatchSpec, got {type(spec).__name__}")
        if spec != self._spec:
            self._cache.clear()
        self._spec = spec

    @property
    def batch_spec(self) -> BatchSpec:
        if self._spec is None:
            raise RecsysDataError("InteractionDataModule: no batch spec yet, so it cannot tell what to yield; bind a "
                                  "recommender to it first (model.bind_data(datamodule), which Trainer.fit / test / "
                                  "predict and the CLI do) or call datamodule.use_batch_spec(BatchSpec(...))")
        return self._spec

    def train_dataloader(self) -> DataLoader:
        spec = self.batch_spec
        self.prepare()
        if spec.kind == "sequence":
            ds: Any = SequenceBatches(self._csr["train"], self.batch_size, spec.max_len, self.seed)
        else:
            u, i = self.train_pairs()
            ds = PairBatches(u, i, self.num_items, self.batch_size, spec.num_negatives, self.seed)
        return train_loader(ds, batch_size=None)  # resumable: the sampler's epoch and the position in it

    def _eval_loader(self, stage: str) -> DataLoader:
        spec = self.batch_spec
        view = self.eval_view(stage)
        if len(view.users) == 0:
            raise RecsysDataError(f"no user has a {stage} item with split {self.split!r} "
                                  f"and ratios {self.split_ratios}")
        return self._user_loader(stage, UserBatches(view.users), spec)

    def _user_loader(self, stage: str, ds: UserBatches, spec: BatchSpec) -> DataLoader:
        collate = EvalBatches(stage, self.eval_view(stage), self.num_items, spec.history_len, self._cache)
        return DataLoader(ds, batch_size=self.eval_block_size(), shuffle=False, sampler=eval_sampler(ds),
                          collate_fn=collate)

    def eval_block_size(self) -> int:
        """Users per evaluation / predict batch: ``eval_batch_size``, lowered so that one batch's dense masks and
        scores stay within ``EVAL_BLOCK_CELLS`` users x items, whatever the catalogue size."""
        self.prepare()
        return max(1, min(self.eval_batch_size, EVAL_BLOCK_CELLS // (self.num_items + 1)))

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
            text = read_text(wanted, "utf-8", RecsysFileError, "one user id per line",
                             what="--data.init_args.predict_users file", setting=None)
            wanted = [line.strip() for line in text.splitlines() if line.strip()]
        index = {u: k for k, u in enumerate(self.user_ids)}
        ids = [str(u) for u in wanted]
        unknown = [u for u in ids if u not in index]
        if unknown and self.unknown_users == "error":
            raise UnknownUserError(f"predict: {len(unknown)} user id(s) not in the training data, e.g. {unknown[:5]}; "
                                   "set --data.init_args.unknown_users popular to recommend popular items to them")
        return torch.tensor([index.get(u, -1) for u in ids], dtype=torch.long), ids

    def predict_dataloader(self) -> DataLoader:
        spec = self.batch_spec
        users, ids = self.resolve_predict_users()
        return self._user_loader("predict", UserBatches(users, ids), spec)
