"""Image folders as users lay them out: separate train / val / test folders, and a corrupt file in the test folder
that stops `zoo fit` before any training."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest
from PIL import Image

from zoo.cli import main
from zoo.data.image import ImageDataError, ImageDataModule

ROOT = Path(__file__).resolve().parents[2]


def _images(root: Path, classes=("cat", "dog"), per_class=4) -> None:
    rng = np.random.default_rng(0)
    for k, name in enumerate(classes):
        (root / name).mkdir(parents=True, exist_ok=True)
        for i in range(per_class):
            Image.fromarray((rng.random((8, 8, 3)) * 60 + 150 * k).astype(np.uint8)).save(root / name / f"{i}.png")


def test_train_val_test_folders(tmp_path):
    for split, n in (("train", 6), ("val", 2), ("test", 3)):
        _images(tmp_path / split, per_class=n)
    dm = ImageDataModule(folder=str(tmp_path / "train"), val_folder=str(tmp_path / "val"),
                         test_folder=str(tmp_path / "test"), batch_size=4)
    dm.setup("fit")
    assert dm.class_names == ["cat", "dog"]
    assert {k: len(v) for k, v in dm.splits.items()} == {"train": 12, "val": 4, "test": 6}
    assert all("/test/" in i for i in dm.splits["test"].ids) and all("/val/" in i for i in dm.splits["val"].ids)
    only_test = ImageDataModule(folder=str(tmp_path / "train"), test_folder=str(tmp_path / "test"), val_fraction=0.25)
    sizes = {k: len(v) for k, v in only_test.split_indices().items()}
    assert sizes == {"train": 9, "val": 3, "test": 6}
    _images(tmp_path / "test", classes=("bird",), per_class=1)
    with pytest.raises(ImageDataError, match=r"data\.init_args\.test_folder .*test: class folder\(s\) bird do "
                                              "not occur"):
        _ = ImageDataModule(folder=str(tmp_path / "train"), test_folder=str(tmp_path / "test")).class_names


def test_corrupt_image_in_the_test_split_stops_fit_before_training(tmp_path, capsys):
    _images(tmp_path / "train", per_class=6)
    _images(tmp_path / "test", per_class=2)
    bad = tmp_path / "test" / "dog" / "broken.png"
    bad.write_bytes(Image.open(tmp_path / "test" / "dog" / "0.png").tobytes()[:40])
    rc = main(["fit", "--config", str(ROOT / "recipes/vision/digits.yaml"), "--data.init_args.dataset", "null",
               "--data.init_args.folder", str(tmp_path / "train"), "--data.init_args.test_folder",
               str(tmp_path / "test"), "--data.init_args.image_size", "8", "--trainer.default_root_dir", "runs",
               "--trainer.enable_progress_bar", "false"])
    err = capsys.readouterr().err
    assert rc == 2 and str(bad) in err
    assert ("zoo: error: --data.init_args.folder + --data.init_args.test_folder: 1 of 17 image file(s) cannot be "
            "read: ") in err
    assert not list(Path("runs").rglob("*.ckpt"))
