"""Every built-in dataset loads and is non-empty; Fashion-MNIST's IDX reader is checked on generated files; the
shared data pieces (seeded splits, ``max_samples`` subsets, user-file errors) behave as documented."""

import gzip
import struct

import numpy as np
import pytest

from zoo.data.files import DataFileError, read_table, read_text
from zoo.data.image.builtin import DatasetUnavailableError, fashion_mnist
from zoo.data.splits import limit, split_indices, subset_indices
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


# -- splits and subsets (zoo.data.splits) -----------------------------------------------------------------
def test_split_indices_are_pinned_for_a_seed():
    # the split a seed names is part of zoo's reproducibility promise: this is what text and image data got
    # before zoo.data.splits existed
    split = split_indices([("a", "b", "c")[i % 3] for i in range(30)], 0.1, 0.2, seed=42)
    assert split["test"].tolist() == [5, 7, 9, 14, 18, 19]
    assert split["val"].tolist() == [11, 13, 21]
    assert len(split["train"]) == 21 and not set(split["train"].tolist()) & {5, 7, 9, 11, 13, 14, 18, 19, 21}


def test_split_is_stratified_and_a_fixed_test_part_is_kept():
    labels = np.arange(100) % 4
    split = split_indices(labels, 0.2, 0.2, seed=0)
    assert np.bincount(labels[split["test"]]).tolist() == [5, 5, 5, 5]
    fixed = split_indices(labels, 0.2, 0.5, seed=0, test_index=np.arange(90, 100))
    assert fixed["test"].tolist() == list(range(90, 100)) and len(fixed["val"]) == 18
    assert split_indices(10, 0.2, 0.3, seed=0, test_index=[])["test"].size == 0


def test_split_too_small_to_stratify_falls_back_to_random():
    # 3 of 3 classes cannot all reach a 1-sample test part: stratifying would fail, so the cut is plain random
    split = split_indices(["a", "a", "b", "b", "c", "c", "a", "b"], 0.0, 0.1, seed=0)
    assert len(split["test"]) == 1 and len(split["train"]) == 7


def test_max_samples_subset_is_seeded_sorted_and_a_no_op_when_small():
    keep = subset_indices(100, 10, seed=3)
    assert keep.tolist() == sorted(keep.tolist()) and len(set(keep.tolist())) == 10
    assert np.array_equal(keep, subset_indices(100, 10, seed=3))
    assert subset_indices(5, 10, seed=3) is None and subset_indices(5, None, seed=3) is None
    assert limit(list("abcdef"), 3, seed=3) == [list("abcdef")[i] for i in subset_indices(6, 3, seed=3)]


# -- user files (zoo.data.files) --------------------------------------------------------------------------
def test_undecodable_file_names_line_byte_and_what_was_expected(tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\nok,pos\ncaf\xe9,neg\n".encode("latin-1"))
    with pytest.raises(DataFileError, match=r"latin\.csv is not valid utf-8 text \(line 3, byte 21: .*\); "
                                            r"expected a CSV table; re-save it as UTF-8 or set "
                                            r"--data\.init_args\.encoding"):
        read_table(path)
    assert read_table(path, encoding="latin-1")["text"].tolist() == ["ok", "caf\xe9"]
    with pytest.raises(DataFileError, match=r"data file not found: .*missing\.txt"):
        read_text(tmp_path / "missing.txt")


def test_image_csv_that_is_not_utf8_gets_an_image_data_error(tmp_path):
    from zoo.data.image import ImageDataError, ImageDataModule

    path = tmp_path / "images.csv"
    path.write_bytes("path,label\n\xe9.png,a\n".encode("latin-1"))
    with pytest.raises(ImageDataError, match=r"images\.csv is not valid utf-8 text \(line 2, byte 11"):
        ImageDataModule(csv=str(path)).setup("fit")
