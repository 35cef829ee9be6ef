"""Finding and decoding images: an ImageFolder tree, a CSV of ``path,label`` rows, a built-in array dataset.

Indexing is cheap (file lists or arrays); images from files are decoded one at a time by the dataset.
"""

from __future__ import annotations

import csv
import os
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.data.files import DataFileError, decoding, duplicate_columns, require_file
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
    #: indices of the validation split when the source fixes one (``val_folder``), else None
    val_index: np.ndarray | None = None


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
    except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
        raise ImageDataError(f"cannot decode image {path}: {err}; expected a valid PNG/JPEG/... file") from None
    if array.ndim == 2:
        array = array[:, :, None]
    return torch.from_numpy(array).permute(2, 0, 1).contiguous()


#: (path, mtime in ns, size) of files that decoded once in this process: a later set-up skips them
_CHECKED: set[tuple[str, int, int]] = set()


def check_image_files(paths: list[str], what: str) -> None:
    """Open every image and verify its headers and structure (PIL's ``verify``: no pixel decoding), so a corrupt
    file in any split stops the run at set-up, before training, instead of the first epoch that reads it. Files
    already checked in this process with the same modification time and size are skipped."""
    from PIL import Image, UnidentifiedImageError

    bad: list[str] = []
    for path in paths:
        try:
            st = os.stat(path)
        except OSError:
            bad.append(f"{path} (not found)")
            continue
        key = (path, st.st_mtime_ns, st.st_size)
        if key in _CHECKED:
            continue
        try:
            with Image.open(path) as img:
                img.verify()
        except (UnidentifiedImageError, OSError, SyntaxError, ValueError, Image.DecompressionBombError) as err:
            bad.append(f"{path} ({err})")
            continue
        _CHECKED.add(key)
    if bad:
        more = f" and {len(bad) - 3} more" if len(bad) > 3 else ""
        raise ImageDataError(f"{what}: {len(bad)} of {len(paths)} image file(s) cannot be read: {'; '.join(bad[:3])}"
                             f"{more}; expected valid PNG/JPEG/... files (remove or replace them)")


def image_files(folder: Path) -> list[str]:
    """Image files anywhere under ``folder``, in path order (sorted as paths, not strings: splits depend on it)."""
    return [str(p) for p in sorted(p for p in folder.rglob("*") if p.suffix.lower() in IMAGE_SUFFIXES)]


def index_builtin(name: str, kwargs: dict[str, Any]) -> ImageIndex:
    data = DATASETS.create(name, **kwargs)
    images = torch.from_numpy(np.ascontiguousarray(data.images))
    images = images.unsqueeze(1) if images.ndim == 3 else images.permute(0, 3, 1, 2).contiguous()
    return ImageIndex(images, data.labels, [f"{name}:{i}" for i in range(len(data.labels))], list(data.class_names),
                      images.shape[1], data.test_index)


def _class_folders(root: Path, option: str) -> list[str]:
    if not root.is_dir():
        raise ImageDataError(f"--data.init_args.{option} {root} is not a directory; expected "
                             f"{option}/<class>/<image files>")
    classes = sorted(p.name for p in root.iterdir() if p.is_dir() and not p.name.startswith("."))
    if not classes:
        raise ImageDataError(f"--data.init_args.{option} {root} has no class sub-folders; expected "
                             f"{option}/<class>/<image files>")
    return classes


def _folder_images(root: Path, classes: list[str], option: str) -> tuple[list[str], list[int]]:
    paths, labels = [], []
    for k, name in enumerate(classes):
        if (root / name).is_dir():
            files = image_files(root / name)
            paths += files
            labels += [k] * len(files)
    if not paths:
        raise ImageDataError(f"--data.init_args.{option} {root} has class folders ({', '.join(classes[:5])}) but "
                             "no images "
                             f"with suffix {', '.join(sorted(IMAGE_SUFFIXES))}")
    return paths, labels


def index_folder(root: Path, in_channels: int, test_root: Path | None = None,
                 val_root: Path | None = None) -> ImageIndex:
    """ImageFolder layout: ``root/<class>/<image files>``; classes in sorted order. ``test_root`` / ``val_root``
    (the same layout, e.g. ``train/`` + ``val/`` + ``test/``) fix those splits; their class folders must occur
    in ``root``."""
    classes = _class_folders(root, "folder")
    paths, labels = _folder_images(root, classes, "folder")
    empty = [c for k, c in enumerate(classes) if k not in set(labels)]
    if empty:
        raise ImageDataError(f"--data.init_args.folder {root}: class folder(s) {', '.join(empty)} hold no images")
    fixed: dict[str, np.ndarray] = {}
    for option, extra in (("val_folder", val_root), ("test_folder", test_root)):
        if extra is None:
            continue
        unknown = sorted(set(_class_folders(extra, option)) - set(classes))
        if unknown:
            raise ImageDataError(f"--data.init_args.{option} {extra}: class folder(s) {', '.join(unknown[:5])} "
                                 "do not occur in "
                                 f"--data.init_args.folder {root} ({', '.join(classes[:10])})")
        more, more_labels = _folder_images(extra, classes, option)
        fixed[option] = np.arange(len(paths), len(paths) + len(more))
        paths, labels = paths + more, labels + more_labels
    return ImageIndex(paths, np.asarray(labels, dtype=np.int64), paths, classes, in_channels,
                      fixed.get("test_folder"), fixed.get("val_folder"))


def read_image_csv(path: Path, path_column: str, label_column: str, class_names: list[str] | None,
                   require_labels: bool = True) -> tuple[list[str], list[str]]:
    """(image paths, labels) of a CSV; relative paths are resolved against the CSV's folder."""
    require_file(path, ImageDataError, "CSV file")
    expected = f"a CSV with {path_column!r} and {label_column!r} columns"
    with (decoding(path, "utf-8", ImageDataError, expected, setting=None),
          open(path, newline="", encoding="utf-8") as fh):
        reader = csv.DictReader(fh)
        header = reader.fieldnames or []
        if duplicate_columns(header):
            raise ImageDataError(f"{path}: the header names column(s) "
                                 f"{', '.join(map(repr, duplicate_columns(header)))} "
                                 "more than once; rename them so each column has its own name")
        needed = [path_column] + ([label_column] if require_labels else [])
        missing = [c for c in needed if c not in header]
        if missing:
            raise ImageDataError(f"{path}: missing column(s) {', '.join(missing)}; "
                                 f"found {', '.join(header) or 'no header'}"
                                 f" (set --data.init_args.path_column / --data.init_args.label_column)")
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


__all__ = ["IMAGE_SUFFIXES", "ImageDataError", "ImageIndex", "check_image_files", "image_files", "index_builtin",
           "index_csv", "index_folder", "load_image_file", "read_image_csv"]
