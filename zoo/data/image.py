"""``ImageDataModule``: images from an ImageFolder directory, a CSV of ``path,label``, or a built-in dataset.

Splits are deterministic for a seed and stratified by class. Images reach the model as float tensors in
[0, 1] (the model normalises), after optional torchvision v2 augmentations configured by name in YAML::

    augment:
      - RandomHorizontalFlip
      - RandAugment: {num_ops: 2, magnitude: 9}
      - RandomErasing: {p: 0.25}
"""

from __future__ import annotations

import csv
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset

from zoo.errors import ZooError
from zoo.registry import DATAMODULES, DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}
# augmentations that need float input (applied after conversion to [0, 1])
_FLOAT_ONLY = {"RandomErasing", "GaussianNoise", "Normalize"}


class ImageDataError(ZooError, ValueError):
    """Bad image input: the message names the file, row or option and what was expected."""


AugmentSpec = str | dict[str, dict[str, Any] | None]


def build_augmentations(specs: Sequence[AugmentSpec] | None) -> tuple[list[Callable], list[Callable]]:
    """Turn ``["RandomHorizontalFlip", {"RandAugment": {"num_ops": 2}}]`` into torchvision v2 transforms,
    split into those applied on uint8 images and those needing float images."""
    from torchvision.transforms import v2

    before, after = [], []
    for i, spec in enumerate(specs or []):
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1:
            name, kwargs = next(iter(spec.items()))
            kwargs = dict(kwargs or {})
        else:
            raise ImageDataError(f"augment[{i}] must be a transform name or {{Name: {{args}}}}, got {spec!r}")
        cls = getattr(v2, name, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            known = sorted(n for n in dir(v2) if n[0].isupper() and n.startswith(("Random", "Rand", "Trivial", "Auto", "Color", "Gaussian", "Center", "Resize")))
            raise ImageDataError(f"augment[{i}]: torchvision.transforms.v2 has no transform {name!r}; e.g. {', '.join(known)}")
        try:
            transform = cls(**kwargs)
        except TypeError as err:
            raise ImageDataError(f"augment[{i}] {name}: {err}") from None
        (after if name in _FLOAT_ONLY else before).append(transform)
    return before, after


class ImageSet(Dataset):
    """Items ``{"image": float [C,H,W] in [0,1], "label": int, "id": str}`` from arrays or files."""

    def __init__(self, source: Any, labels: np.ndarray | None, ids: list[str], in_channels: int,
                 transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.source = source  # uint8 tensor [N, C, H, W] or list of file paths
        self.labels = labels
        self.ids = ids
        self.in_channels = in_channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, i: int) -> torch.Tensor:
        if isinstance(self.source, torch.Tensor):
            return self.source[i]
        return load_image_file(self.source[i], self.in_channels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.transform(self._load(i)), "id": self.ids[i]}
        item["label"] = int(self.labels[i]) if self.labels is not None else -1
        return item


def load_image_file(path: str | Path, in_channels: int) -> torch.Tensor:
    from PIL import Image, UnidentifiedImageError

    path = Path(path)
    if not path.exists():
        raise ImageDataError(f"image file not found: {path}")
    try:
        with Image.open(path) as img:
            img = img.convert("L" if in_channels == 1 else "RGB")
            array = np.asarray(img, dtype=np.uint8).copy()
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError) as err:
        raise ImageDataError(f"cannot decode image {path}: {err}; expected a valid PNG/JPEG/... file") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


@DATAMODULES.register("image", tags=("image",), summary="images from a folder, a CSV or a built-in dataset")
class ImageDataModule(pl.LightningDataModule):
    """Image classification data from exactly one of ``folder``, ``csv`` or ``dataset``.

    Args:
        folder: ImageFolder layout, ``folder/<class>/<image>``.
        csv: a CSV with ``path`` and ``label`` columns (names configurable); relative paths are resolved
            against the CSV's folder.
        test_csv: optional CSV used as the test split (its labels must all occur in ``csv``).
        dataset: a built-in dataset name (``zoo list datasets``).
        dataset_kwargs: extra arguments for the built-in dataset.
        image_size: resize to this square size (None keeps the native size).
        color_mode: ``rgb`` or ``grey``, for file sources (built-ins know their channels).
        val_fraction / test_fraction: stratified random split sizes (test_fraction ignored when the data
            has a published test split or ``test_csv`` is given).
        augment: training augmentations by torchvision v2 name (see module docstring).
        predict_source: a folder or CSV of images to predict; default is the test split.
    """

    def __init__(
        self,
        folder: str | None = None,
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
    ) -> None:
        super().__init__()
        given = [n for n, v in (("folder", folder), ("csv", csv), ("dataset", dataset)) if v]
        if len(given) != 1:
            raise ImageDataError(f"give exactly one of data.folder, data.csv or data.dataset (got {given or 'none'})")
        if color_mode not in ("rgb", "grey"):
            raise ImageDataError(f"data.color_mode must be 'rgb' or 'grey', got {color_mode!r}")
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise ImageDataError(f"data.{name} must be in [0, 1), got {frac}")
        if val_fraction + test_fraction >= 1.0:
            raise ImageDataError("data.val_fraction + data.test_fraction must leave some training data")
        self.save_hyperparameters()
        self.folder, self.csv, self.test_csv, self.dataset = folder, csv, test_csv, dataset
        self.dataset_kwargs = dict(dataset_kwargs or {})
        self.path_column, self.label_column = path_column, label_column
        self.image_size, self._in_channels = image_size, 3 if color_mode == "rgb" else 1
        self.val_fraction, self.test_fraction, self.seed = val_fraction, test_fraction, seed
        self.batch_size, self.eval_batch_size = batch_size, eval_batch_size or batch_size
        self.num_workers = num_workers
        self.augment_before, self.augment_after = build_augmentations(augment)
        self.predict_source = predict_source
        self._index: dict[str, Any] | None = None
        self.splits: dict[str, ImageSet] = {}
        if dataset:
            DATASETS.entry(dataset)  # an unknown name fails now, listing close matches

    # -- what the model needs to know ----------------------------------------------------------------
    @property
    def class_names(self) -> list[str]:
        return self._load_index()["class_names"]

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    @property
    def in_channels(self) -> int:
        return self._load_index()["in_channels"]

    # -- indexing the source (cheap: arrays or file lists, not decoded images) ------------------------
    def _load_index(self) -> dict[str, Any]:
        if self._index is None:
            if self.dataset:
                self._index = self._index_builtin()
            elif self.folder:
                self._index = self._index_folder(Path(self.folder))
            else:
                self._index = self._index_csv(Path(self.csv))
        return self._index

    def _index_builtin(self) -> dict[str, Any]:
        data = DATASETS.create(self.dataset, **self.dataset_kwargs)
        images = torch.from_numpy(np.ascontiguousarray(data.images))
        images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
        return {
            "source": images, "labels": data.labels, "ids": [f"{self.dataset}:{i}" for i in range(len(data.labels))],
            "class_names": list(data.class_names), "in_channels": images.shape[1], "test_index": data.test_index,
        }

    def _index_folder(self, root: Path) -> dict[str, Any]:
        if not root.is_dir():
            raise ImageDataError(f"data.folder {root} is not a directory; expected folder/<class>/<image files>")
        classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
        if not classes:
            raise ImageDataError(f"data.folder {root} has no class sub-folders; expected folder/<class>/<image files>")
        paths, labels = [], []
        for k, name in enumerate(classes):
            files = sorted(p for p in (root / name).rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            paths += [str(p) for p in files]
            labels += [k] * len(files)
        if not paths:
            raise ImageDataError(f"data.folder {root} has class folders ({', '.join(classes[:5])}) but no images "
                                 f"with suffix {', '.join(sorted(IMAGE_SUFFIXES))}")
        empty = [c for k, c in enumerate(classes) if k not in set(labels)]
        if empty:
            raise ImageDataError(f"data.folder {root}: class folder(s) {', '.join(empty)} hold no images")
        return {"source": paths, "labels": np.asarray(labels, dtype=np.int64), "ids": paths, "class_names": classes,
                "in_channels": self._in_channels, "test_index": None}

    def _read_csv(self, path: Path, class_names: list[str] | None, require_labels: bool = True) -> tuple[list[str], list[str]]:
        if not path.is_file():
            raise ImageDataError(f"CSV file not found: {path}")
        with open(path, newline="", encoding="utf-8") as fh:
            reader = csv.DictReader(fh)
            header = reader.fieldnames or []
            needed = [self.path_column] + ([self.label_column] if require_labels else [])
            missing = [c for c in needed if c not in header]
            if missing:
                raise ImageDataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}"
                                     f" (set data.path_column / data.label_column)")
            paths, labels = [], []
            for row_no, row in enumerate(reader, start=2):
                rel = (row.get(self.path_column) or "").strip()
                if not rel:
                    raise ImageDataError(f"{path} row {row_no}: empty {self.path_column!r}")
                file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
                if not file.exists():
                    raise ImageDataError(f"{path} row {row_no}: image file not found: {file}")
                label = (row.get(self.label_column) or "").strip() if require_labels else ""
                if require_labels and not label:
                    raise ImageDataError(f"{path} row {row_no}: empty {self.label_column!r}")
                if class_names is not None and require_labels and label not in class_names:
                    raise ImageDataError(f"{path} row {row_no}: unknown label {label!r}; the training data has "
                                         f"{', '.join(class_names[:20])}")
                paths.append(str(file))
                labels.append(label)
        if not paths:
            raise ImageDataError(f"{path} has a header but no rows")
        return paths, labels

    def _index_csv(self, path: Path) -> dict[str, Any]:
        paths, labels = self._read_csv(path, None)
        classes = sorted(set(labels))
        lookup = {c: k for k, c in enumerate(classes)}
        index: dict[str, Any] = {"source": paths, "labels": np.asarray([lookup[x] for x in labels], dtype=np.int64),
                                 "ids": paths, "class_names": classes, "in_channels": self._in_channels, "test_index": None}
        if self.test_csv:
            tpaths, tlabels = self._read_csv(Path(self.test_csv), classes)
            n = len(paths)
            index["source"] = paths + tpaths
            index["ids"] = paths + tpaths
            index["labels"] = np.concatenate([index["labels"], np.asarray([lookup[x] for x in tlabels], dtype=np.int64)])
            index["test_index"] = np.arange(n, n + len(tpaths))
        return index

    # -- splits ---------------------------------------------------------------------------------------
    def split_indices(self) -> dict[str, np.ndarray]:
        from sklearn.model_selection import train_test_split

        index = self._load_index()
        labels = index["labels"]
        all_idx = np.arange(len(labels))
        rest = all_idx
        if index["test_index"] is not None:
            test = np.asarray(index["test_index"])
            rest = np.setdiff1d(all_idx, test)
        elif self.test_fraction > 0:
            rest, test = train_test_split(all_idx, test_size=self.test_fraction, random_state=self.seed,
                                          stratify=_stratify(labels))
        else:
            test = np.asarray([], dtype=np.int64)
        val_share = self.val_fraction / (1.0 - (self.test_fraction if index["test_index"] is None else 0.0))
        if self.val_fraction > 0:
            train, val = train_test_split(rest, test_size=val_share, random_state=self.seed + 1,
                                          stratify=_stratify(labels[rest]))
        else:
            train, val = rest, np.asarray([], dtype=np.int64)
        return {"train": np.sort(train), "val": np.sort(val), "test": np.sort(test)}

    def _transform(self, train: bool) -> Callable[[torch.Tensor], torch.Tensor]:
        from torchvision.transforms import v2

        steps: list[Any] = [v2.ToImage()]
        if self.image_size:
            steps.append(v2.Resize((self.image_size, self.image_size), antialias=True))
        if train:
            steps += self.augment_before
        steps.append(v2.ToDtype(torch.float32, scale=True))
        if train:
            steps += self.augment_after
        return v2.Compose(steps)

    def _subset(self, idx: np.ndarray, train: bool) -> ImageSet:
        index = self._load_index()
        source = index["source"]
        sub = source[torch.as_tensor(idx, dtype=torch.long)] if isinstance(source, torch.Tensor) else [source[i] for i in idx]
        return ImageSet(sub, index["labels"][idx], [index["ids"][i] for i in idx], index["in_channels"], self._transform(train))

    def setup(self, stage: str | None = None) -> None:
        if self.splits:
            return
        parts = self.split_indices()
        self.splits = {name: self._subset(idx, train=name == "train") for name, idx in parts.items()}
        if stage == "predict" and self.predict_source:
            self.splits["predict"] = self._predict_set(Path(self.predict_source))

    def _predict_set(self, source: Path) -> ImageSet:
        if source.is_dir():
            paths = sorted(str(p) for p in source.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)
            if not paths:
                raise ImageDataError(f"data.predict_source {source} holds no images")
        else:
            paths, _ = self._read_csv(source, None, require_labels=False)
        return ImageSet(paths, None, paths, self.in_channels, self._transform(False))

    def _loader(self, name: str, shuffle: bool) -> DataLoader:
        if name not in self.splits:
            self.setup(name)
        ds = self.splits[name]
        if len(ds) == 0:
            raise ImageDataError(f"the {name} split is empty; raise data.{'val' if name == 'val' else 'test'}_fraction")
        from zoo.data.distributed import eval_sampler

        sampler = None if shuffle else eval_sampler(ds)  # unpadded DDP shards: each sample evaluated once
        return DataLoader(ds, batch_size=self.batch_size if shuffle else self.eval_batch_size, shuffle=shuffle,
                          sampler=sampler, num_workers=self.num_workers, persistent_workers=self.num_workers > 0,
                          drop_last=shuffle and len(ds) > self.batch_size)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", shuffle=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", shuffle=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", shuffle=False)

    def predict_dataloader(self) -> DataLoader:
        if self.predict_source and "predict" not in self.splits:
            self.splits["predict"] = self._predict_set(Path(self.predict_source))
        return self._loader("predict" if self.predict_source else "test", shuffle=False)


def _stratify(labels: np.ndarray) -> np.ndarray | None:
    """Stratify when every class has at least two samples (sklearn's requirement)."""
    _, counts = np.unique(labels, return_counts=True)
    return labels if counts.min() >= 2 else None
