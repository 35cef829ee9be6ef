"""Image data sources and the clear errors bad image input gets."""

import csv
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image

from zoo.data.image import ImageDataError, ImageDataModule, build_augmentations


def write_images(root: Path, classes=("cat", "dog"), per_class=6, size=12) -> list[tuple[str, str]]:
    rows = []
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            array = (rng.random((size, size, 3)) * 60 + 150 * k).astype(np.uint8)
            path = root / name / f"{i}.png"
            Image.fromarray(array).save(path)
            rows.append((f"{name}/{i}.png", name))
    return rows


def write_csv(path: Path, rows, header=("path", "label")) -> Path:
    with open(path, "w", newline="") as fh:
        writer = csv.writer(fh)
        writer.writerow(header)
        writer.writerows(rows)
    return path


def test_folder_source_classes_splits_and_items(tmp_path):
    write_images(tmp_path / "imgs")
    dm = ImageDataModule(folder=str(tmp_path / "imgs"), val_fraction=0.25, test_fraction=0.25, batch_size=4)
    assert dm.class_names == ["cat", "dog"] and dm.in_channels == 3
    dm.setup("fit")
    sizes = {k: len(v) for k, v in dm.splits.items()}
    assert sizes == {"train": 6, "val": 3, "test": 3}
    batch = next(iter(dm.train_dataloader()))
    assert batch["image"].dtype == torch.float32 and batch["image"].shape[1:] == (3, 12, 12)
    assert 0.0 <= batch["image"].min() and batch["image"].max() <= 1.0


def test_splits_are_deterministic_for_a_seed_and_disjoint():
    a = ImageDataModule(dataset="digits", seed=7).split_indices()
    b = ImageDataModule(dataset="digits", seed=7).split_indices()
    c = ImageDataModule(dataset="digits", seed=8).split_indices()
    for k in a:
        assert np.array_equal(a[k], b[k])
    assert not np.array_equal(a["test"], c["test"])
    joined = np.concatenate(list(a.values()))
    assert len(joined) == len(set(joined.tolist())) == 1797


def test_published_test_split_is_kept(monkeypatch):
    from zoo.data.image.builtin import synthetic_shapes
    from zoo.registry import DATASETS

    data = synthetic_shapes(n=30)
    data.test_index = np.arange(24, 30)
    monkeypatch.setattr(DATASETS.entry("synthetic_shapes"), "fn", lambda **_: data)
    split = ImageDataModule(dataset="synthetic_shapes", val_fraction=0.2).split_indices()
    assert split["test"].tolist() == list(range(24, 30))


def test_csv_source_with_relative_paths(tmp_path):
    rows = write_images(tmp_path)
    dm = ImageDataModule(csv=str(write_csv(tmp_path / "train.csv", rows)), color_mode="grey", test_fraction=0.0)
    assert dm.class_names == ["cat", "dog"] and dm.in_channels == 1
    dm.setup("fit")
    assert dm.splits["train"][0]["image"].shape[0] == 1


def test_missing_image_file_names_the_csv_row(tmp_path):
    rows = write_images(tmp_path)
    rows.insert(3, ("cat/nope.png", "cat"))
    dm = ImageDataModule(csv=str(write_csv(tmp_path / "train.csv", rows)))
    with pytest.raises(ImageDataError, match=r"train\.csv row 5: image file not found: .*nope\.png"):
        _ = dm.class_names


def test_corrupt_image_names_the_file(tmp_path):
    write_images(tmp_path / "imgs", per_class=4)
    (tmp_path / "imgs" / "cat" / "broken.png").write_bytes(b"\x89PNG not really")
    dm = ImageDataModule(folder=str(tmp_path / "imgs"), val_fraction=0.0, test_fraction=0.0, batch_size=16)
    with pytest.raises(ImageDataError, match=r"data\.init_args\.folder: 1 of 9 image file\(s\) cannot be read: "
                                              r".*broken\.png"):
        dm.setup("fit")  # every file is checked at set-up, before any batch


def test_unknown_label_in_test_csv_names_the_row(tmp_path):
    rows = write_images(tmp_path)
    write_csv(tmp_path / "test.csv", [("cat/0.png", "cat"), ("dog/1.png", "bird")])
    dm = ImageDataModule(csv=str(write_csv(tmp_path / "train.csv", rows)), test_csv=str(tmp_path / "test.csv"))
    with pytest.raises(ImageDataError, match=r"test\.csv row 3: unknown label 'bird'; the training data has cat, dog"):
        _ = dm.class_names


def test_missing_csv_column_is_named(tmp_path):
    rows = write_images(tmp_path)
    dm = ImageDataModule(csv=str(write_csv(tmp_path / "t.csv", rows, header=("file", "label"))))
    with pytest.raises(ImageDataError, match="missing column\\(s\\) path; found file, label"):
        _ = dm.class_names


def test_empty_folder(tmp_path):
    (tmp_path / "empty").mkdir()
    with pytest.raises(ImageDataError, match="has no class sub-folders"):
        _ = ImageDataModule(folder=str(tmp_path / "empty")).class_names
    (tmp_path / "empty" / "cat").mkdir()
    with pytest.raises(ImageDataError, match="no images"):
        _ = ImageDataModule(folder=str(tmp_path / "empty")).class_names


def test_exactly_one_source_and_unknown_dataset():
    with pytest.raises(ImageDataError, match="exactly one of"):
        ImageDataModule()
    with pytest.raises(KeyError, match="Did you mean: digits"):
        ImageDataModule(dataset="digitz")


def test_augment_specs_from_yaml_shapes():
    before, after = build_augmentations(["RandomHorizontalFlip", {"RandAugment": {"num_ops": 2}},
                                        {"RandomErasing": {"p": 1.0}}, {"TrivialAugmentWide": None}])
    assert [type(t).__name__ for t in before] == ["RandomHorizontalFlip", "RandAugment", "TrivialAugmentWide"]
    assert [type(t).__name__ for t in after] == ["RandomErasing"]
    with pytest.raises(ImageDataError, match="augment\\[0\\].*no transform 'RandomFlipp'"):
        build_augmentations(["RandomFlipp"])
    with pytest.raises(ImageDataError, match="augment\\[0\\] RandomErasing"):
        build_augmentations([{"RandomErasing": {"bogus": 1}}])


def test_augmentations_apply_to_training_only():
    dm = ImageDataModule(dataset="synthetic_shapes", augment=[{"RandomErasing": {"p": 1.0, "value": 0}}], seed=0)
    dm.setup("fit")
    train_img = dm.splits["train"][0]["image"]
    test_item = dm.splits["test"][0]["image"]
    assert (train_img == 0).any()
    assert test_item.shape == train_img.shape
