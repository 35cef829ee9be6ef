"""``ImageDataModule``: images from an ImageFolder directory, a CSV of ``path,label``, or a built-in dataset.

Splits are deterministic for a seed and stratified by class (:func:`zoo.data.splits.split_indices`).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader

from zoo.data.checks.filtering import apply_row_filters, check_row_options
from zoo.data.distributed import eval_sampler
from zoo.data.image.dataset import ImageSet
from zoo.data.image.readers import (
    ImageDataError,
    ImageIndex,
    check_image_files,
    image_files,
    index_builtin,
    index_csv,
    index_folder,
    read_image_csv,
)
from zoo.data.image.transforms import AugmentSpec, build_augmentations, image_transform
from zoo.data.loaders import SplitLoaders, train_loader
from zoo.data.splits import conflicting_split_options, split_indices
from zoo.registry import DATAMODULES, DATASETS


@DATAMODULES.register("image", tags=("image",), summary="images from a folder, a CSV or a built-in dataset")
class ImageDataModule(SplitLoaders, pl.LightningDataModule):
    """Image classification data from exactly one of ``folder``, ``csv`` or ``dataset``.

    Args:
        folder: ImageFolder layout, ``folder/<class>/<image>``.
        test_folder / val_folder: the same layout for a fixed test / validation split (``folder: train/``,
            ``val_folder: val/``, ``test_folder: test/``); then ``test_fraction`` / ``val_fraction`` is not cut.
        csv: a CSV with ``path`` and ``label`` columns (names configurable); relative paths are resolved
            against the CSV's folder.
        test_csv: optional CSV used as the test split (its labels must all occur in ``csv``).
        dataset: a built-in dataset name (``zoo list datasets``).
        dataset_kwargs: extra arguments for the built-in dataset.
        image_size: resize to this square size (None keeps the native size).
        color_mode: ``rgb`` or ``grey``, for file sources (built-ins know their channels).
        val_fraction / test_fraction: stratified random split sizes (test_fraction ignored when the data
            has a published test split or ``test_csv`` is given).
        augment: training augmentations by torchvision v2 name (see :mod:`zoo.data.image.transforms`).
        predict_source: a folder or CSV of images to predict; default is the test split.
        dedupe: ``none``, ``within`` (drop byte-identical images within a split) or ``across`` (also val / test
            images identical to one of an earlier split); reported (docs/data-checks.md).
        exclude_rows: a file of image ids to drop (one a line, or a CSV with a ``row`` column: label_issues.csv).
    """

    #: which checks zoo inspect runs on it (zoo.data.checks)
    data_family = "image_classification"

    def __init__(
        self,
        folder: str | None = None,
        test_folder: str | None = None,
        val_folder: str | None = None,
        csv: str | None = None,
        test_csv: str | None = None,
        dataset: str | None = None,
        dataset_kwargs: dict[str, Any] | None = None,
        path_column: str = "path",
        label_column: str = "label",
        image_size: int | None = None,
        color_mode: str = "rgb",
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        seed: int = 42,
        batch_size: int = 64,
        eval_batch_size: int | None = None,
        num_workers: int = 0,
        augment: list[AugmentSpec] | None = None,
        predict_source: str | None = None,
        dedupe: str = "none",
        exclude_rows: str | None = None,
    ) -> None:
        super().__init__()
        given = [n for n, v in (("folder", folder), ("csv", csv), ("dataset", dataset)) if v]
        if len(given) != 1:
            raise ImageDataError("give exactly one of --data.init_args.folder, --data.init_args.csv or "
                                 f"--data.init_args.dataset (got {given or 'none'})")
        if (test_folder or val_folder) and not folder:
            raise ImageDataError("--data.init_args.test_folder / --data.init_args.val_folder need "
                                 "--data.init_args.folder (the training images)")
        if color_mode not in ("rgb", "grey"):
            raise ImageDataError(f"--data.init_args.color_mode must be 'rgb' or 'grey', got {color_mode!r}")
        conflict = conflicting_split_options({"val": "val_folder" if val_folder else None,
                                              "test": ("test_folder" if test_folder else "test_csv" if test_csv
                                                       else None)},
                                             {"val": (val_fraction, 0.1), "test": (test_fraction, 0.2)})
        if conflict:
            raise ImageDataError(conflict)
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise ImageDataError(f"--data.init_args.{name} must be in [0, 1), got {frac}")
        if val_fraction + test_fraction >= 1.0:
            raise ImageDataError("--data.init_args.val_fraction + --data.init_args.test_fraction must leave some "
                                 "training data")
        self.save_hyperparameters()
        self.folder, self.csv, self.test_csv, self.dataset = folder, csv, test_csv, dataset
        self.test_folder, self.val_folder = test_folder, val_folder
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.path_column, self.label_column = path_column, label_column
        self.image_size, self._in_channels = image_size, 3 if color_mode == "rgb" else 1
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augment_before, self.augment_after = build_augmentations(augment)
        self.predict_source = predict_source
        check_row_options(dedupe, exclude_rows)
        self.dedupe, self.exclude_rows = dedupe, exclude_rows
        self.dropped_rows: dict[str, int] = {}
        self._index: ImageIndex | None = None
        self.splits: dict[str, ImageSet] = {}
        if dataset:
            DATASETS.entry(dataset)  # an unknown name fails now, listing close matches

    # -- what the model needs to know ----------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return self._load_index().class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self._load_index().in_channels

    # -- indexing the source (cheap: arrays or file lists, not decoded images) ------------------------
    def _load_index(self) -> ImageIndex:
        if self._index is None:
            if self.dataset:
                self._index = index_builtin(self.dataset, self.dataset_kwargs)
            elif self.folder:
                self._index = index_folder(Path(self.folder), self._in_channels,
                                           Path(self.test_folder) if self.test_folder else None,
                                           Path(self.val_folder) if self.val_folder else None)
            else:
                self._index = index_csv(Path(self.csv), Path(self.test_csv) if self.test_csv else None,
                                        self.path_column, self.label_column, self._in_channels)
            if isinstance(self._index.source, list):
                given = [f"--data.init_args.{n}" for n in ("folder", "val_folder", "test_folder", "csv", "test_csv")
                         if getattr(self, n)]
                check_image_files(self._index.source, " + ".join(given))
        return self._index

    # -- splits ---------------------------------------------------------------------------------------
    def split_indices(self) -> dict[str, np.ndarray]:
        index = self._load_index()
        if index.val_index is None:
            return split_indices(index.labels, self.val_fraction, self.test_fraction, self.seed,
                                 test_index=index.test_index)
        # a fixed val split: cut (or take) the test split from the other samples only
        rest = np.setdiff1d(np.arange(len(index.labels)), index.val_index)
        test = None if index.test_index is None else np.searchsorted(rest, index.test_index)
        parts = split_indices(index.labels[rest], 0.0, self.test_fraction, self.seed, test_index=test)
        return {"train": rest[parts["train"]], "val": np.sort(index.val_index), "test": rest[parts["test"]]}

    def _transform(self, train: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        if train:
            return image_transform(self.image_size, self.augment_before, self.augment_after)
        return image_transform(self.image_size)

    def _subset(self, idx: np.ndarray, train: bool) -> ImageSet:
        index = self._load_index()
        source = index.source
        sub = (source[torch.as_tensor(idx, dtype=torch.long)] if isinstance(source, torch.Tensor)
               else [source[i] for i in idx])
        return ImageSet(sub, index.labels[idx], [index.ids[i] for i in idx], index.in_channels, self._transform(train))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        parts = self.split_indices()
        self.splits = {name: self._subset(idx, train=name == "train") for name, idx in parts.items()}
        apply_row_filters(self)
        if stage == "predict" and self.predict_source:
            self.splits["predict"] = self._predict_set(Path(self.predict_source))

    def _predict_set(self, source: Path) -> ImageSet:
        if source.is_dir():
            paths = image_files(source)
            if not paths:
                raise ImageDataError(f"--data.init_args.predict_source {source} holds no images")
        else:
            paths, _ = read_image_csv(source, self.path_column, self.label_column, None, require_labels=False)
        check_image_files(paths, f"--data.init_args.predict_source {source}")
        return ImageSet(paths, None, paths, self.in_channels, self._transform(False))

    def split_loader(self, name: str, train: bool) -> DataLoader:
        if name not in self.splits:
            self.setup(name)
        ds = self.splits[name]
        if len(ds) == 0:
            raise ImageDataError(f"the {name} split is empty; raise "
                                 f"--data.init_args.{'val' if name == 'val' else 'test'}_fraction")
        common = dict(num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        if train:  # resumable: a resumed run continues mid-epoch with the same batches
            return train_loader(ds, batch_size=self.batch_size, shuffle=True, drop_last=len(ds) > self.batch_size,
                                **common)
        # unpadded DDP shards: each sample evaluated once
        return DataLoader(ds, batch_size=self.eval_batch_size, sampler=eval_sampler(ds), **common)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_source and "predict" not in self.splits:
            self.splits["predict"] = self._predict_set(Path(self.predict_source))
        return self.split_loader("predict" if self.predict_source else "test", train=False)


__all__ = ["ImageDataModule"]
