"""Every built-in dataset loads and is non-empty; Fashion-MNIST's IDX reader is checked on generated files."""

import gzip
import struct

import numpy as np
import pytest

from zoo.data.builtin_images import DatasetUnavailableError, fashion_mnist
from zoo.registry import DATASETS


@pytest.mark.parametrize("name", DATASETS.list())
def test_every_builtin_dataset_loads(name):
    try:
        data = DATASETS.create(name)
    except DatasetUnavailableError as err:
        pytest.skip(reason=f"{name} is not installed on this machine: {err}")
    assert len(data) > 0


def _write_idx(path, array):
    header = struct.pack(">BBBB", 0, 0, 0x08, array.ndim) + b"".join(struct.pack(">I", d) for d in array.shape)
    with gzip.open(path, "wb") as fh:
        fh.write(header + array.astype(np.uint8).tobytes())


def test_fashion_mnist_reader_on_generated_idx_files(tmp_path):
    rng = np.random.default_rng(0)
    train_x, test_x = rng.integers(0, 256, (6, 28, 28)), rng.integers(0, 256, (4, 28, 28))
    train_y, test_y = np.array([0, 1, 2, 3, 4, 9]), np.array([5, 6, 7, 8])
    for name, arr in [("train-images-idx3-ubyte.gz", train_x), ("train-labels-idx1-ubyte.gz", train_y),
                      ("t10k-images-idx3-ubyte.gz", test_x), ("t10k-labels-idx1-ubyte.gz", test_y)]:
        _write_idx(tmp_path / name, arr)
    data = fashion_mnist(root=str(tmp_path))
    assert data.images.shape == (10, 28, 28)
    assert np.array_equal(data.images[:6], train_x) and np.array_equal(data.labels[6:], test_y)
    assert data.test_index.tolist() == [6, 7, 8, 9]
    assert data.class_names[9] == "ankle-boot"


def test_fashion_mnist_missing_files_says_how_to_install(tmp_path):
    with pytest.raises(DatasetUnavailableError, match="make data-fashion"):
        fashion_mnist(root=str(tmp_path))
