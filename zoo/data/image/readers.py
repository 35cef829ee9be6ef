"""Finding and decoding images: an ImageFolder tree, a CSV of ``path,label`` rows, a built-in array dataset.

Indexing is cheap (file lists or arrays); images from files are decoded one at a time by the dataset.
"""

from __future__ import annotations

import csv
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data.files import DataFileError, decoding, require_file
from zoo.registry import DATASETS

IMAGE_SUFFIXES = {".png", ".jpg", ".jpeg", ".bmp", ".gif", ".tif", ".tiff", ".webp"}


class ImageDataError(DataFileError):
    """Bad image input: the message names the file, row or option and what was expected."""


@dataclass
class ImageIndex:
    """Every sample of a source: ``source`` is a uint8 tensor ``[N, C, H, W]`` or a list of file paths."""

    source: torch.Tensor | list[str]
    labels: np.ndarray
    ids: list[str]
    class_names: list[str]
    in_channels: int
    #: indices of the test split when the source fixes one (a published split or a test CSV), else None
    test_index: np.ndarray | None = None


def load_image_file(path: str | Path, in_channels: int) -> torch.Tensor:
    """A uint8 ``[C, H, W]`` tensor, converted to grey (1 channel) or RGB (3)."""
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


def image_files(folder: Path) -> list[str]:
    """Image files anywhere under ``folder``, in path order (sorted as paths, not strings: splits depend on it)."""
    return [str(p) for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)]


def index_builtin(name: str, kwargs: dict[str, Any]) -> ImageIndex:
    data = DATASETS.create(name, **kwargs)
    images = torch.from_numpy(np.ascontiguousarray(data.images))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    return ImageIndex(images, data.labels, [f"{name}:{i}" for i in range(len(data.labels))], list(data.class_names),
                      images.shape[1], data.test_index)


def index_folder(root: Path, in_channels: int) -> ImageIndex:
    """ImageFolder layout: ``root/<class>/<image files>``; classes in sorted order."""
    if not root.is_dir():
        raise ImageDataError(f"data.folder {root} is not a directory; expected folder/<class>/<image files>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageDataError(f"data.folder {root} has no class sub-folders; expected folder/<class>/<image files>")
    paths, labels = [], []
    for k, name in enumerate(classes):
        files = image_files(root / name)
        paths += files
        labels += [k] * len(files)
    if not paths:
        raise ImageDataError(f"data.folder {root} has class folders ({', '.join(classes[:5])}) but no images "
                             f"with suffix {', '.join(sorted(IMAGE_SUFFIXES))}")
    empty = [c for k, c in enumerate(classes) if k not in set(labels)]
    if empty:
        raise ImageDataError(f"data.folder {root}: class folder(s) {', '.join(empty)} hold no images")
    return ImageIndex(paths, np.asarray(labels, dtype=np.int64), paths, classes, in_channels)


def read_image_csv(path: Path, path_column: str, label_column: str, class_names: list[str] | None,
                   require_labels: bool = True) -> tuple[list[str], list[str]]:
    """(image paths, labels) of a CSV; relative paths are resolved against the CSV's folder."""
    require_file(path, ImageDataError, "CSV file")
    expected = f"a CSV with {path_column!r} and {label_column!r} columns"
    with decoding(path, "utf-8", ImageDataError, expected, setting=None), open(path, newline="", encoding="utf-8") as fh:
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        needed = [path_column] + ([label_column] if require_labels else [])
        missing = [c for c in needed if c not in header]
        if missing:
            raise ImageDataError(f"{path}: missing column(s) {', '.join(missing)}; found {', '.join(header) or 'no header'}"
                                 f" (set data.path_column / data.label_column)")
        paths, labels = [], []
        for row_no, row in enumerate(reader, start=2):
            rel = (row.get(path_column) or "").strip()
            if not rel:
                raise ImageDataError(f"{path} row {row_no}: empty {path_column!r}")
            file = Path(rel) if Path(rel).is_absolute() else path.parent / rel
            if not file.exists():
                raise ImageDataError(f"{path} row {row_no}: image file not found: {file}")
            label = (row.get(label_column) or "").strip() if require_labels else ""
            if require_labels and not label:
                raise ImageDataError(f"{path} row {row_no}: empty {label_column!r}")
            if class_names is not None and require_labels and label not in class_names:
                raise ImageDataError(f"{path} row {row_no}: unknown label {label!r}; the training data has "
                                     f"{', '.join(class_names[:20])}")
            paths.append(str(file))
            labels.append(label)
    if not paths:
        raise ImageDataError(f"{path} has a header but no rows")
    return paths, labels


def index_csv(path: Path, test_csv: Path | None, path_column: str, label_column: str, in_channels: int) -> ImageIndex:
    """The rows of ``path``, then those of ``test_csv`` (the fixed test split; its labels must occur in ``path``)."""
    paths, labels = read_image_csv(path, path_column, label_column, None)
    classes = sorted(set(labels))
    if test_csv:
        test_paths, test_labels = read_image_csv(test_csv, path_column, label_column, classes)
    else:
        test_paths, test_labels = [], []
    lookup = {c: k for k, c in enumerate(classes)}
    every = paths + test_paths
    return ImageIndex(every, np.asarray([lookup[x] for x in labels + test_labels], dtype=np.int64), every, classes,
                      in_channels, np.arange(len(paths), len(every)) if test_csv else None)


__all__ = ["IMAGE_SUFFIXES", "ImageDataError", "ImageIndex", "image_files", "index_builtin", "index_csv",
           "index_folder", "load_image_file", "read_image_csv"]
