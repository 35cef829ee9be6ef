"""A split given both as a file and by a fraction of the training data is refused with one line naming both
flags (issue 25: ngram_text took train/val/test files and fractions without saying which won); fractions left at
their defaults are taken as not given, so a recipe's stated defaults stay usable with files."""

from __future__ import annotations

import csv

import pytest

from zoo.cli import main
from zoo.data.image.readers import ImageDataError
from zoo.data.splits import conflicting_split_options
from zoo.data.text import NgramTextDataModule, TextDataModule, TokenDataModule
from zoo.data.text.readers import TextDataError
from zoo.errors import ZooError


def _csv(path):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text", "label"], *[[f"word{i} text", "a" if i % 2 else "b"] for i in range(8)]])
    return str(path)


def test_the_rule():
    assert conflicting_split_options({"val": "val"}, {"val": (0.1, 0.1)}) is None
    assert conflicting_split_options({"val": None}, {"val": (0.3, 0.1)}) is None
    line = conflicting_split_options({"val": None, "test": "test"}, {"val": (0.1, 0.1), "test": (0.3, 0.2)})
    assert line == ("--data.init_args.test and --data.init_args.test_fraction 0.3 both choose the test split; give one "
                    "(with a test file the test_fraction is not used: drop it or set it back to 0.2)")


@pytest.mark.parametrize("cls, extra", [(TextDataModule, {}), (NgramTextDataModule, {"features": "tfidf"}),
                                        (TokenDataModule, {})])
def test_text_datamodules_refuse_a_file_and_a_fraction_for_one_split(tmp_path, cls, extra):
    f = _csv(tmp_path / "t.csv")
    with pytest.raises(TextDataError, match=r"--data.init_args.val and --data.init_args.val_fraction 0.25 both"):
        cls(train=f, val=f, val_fraction=0.25, **extra)
    assert issubclass(TextDataError, ZooError)
    cls(train=f, val=f, test=f, val_fraction=0.1, test_fraction=0.2, **extra)  # the defaults: the files win


def test_image_folders_refuse_it_too(tmp_path):
    from zoo.data.image.datamodule import ImageDataModule

    with pytest.raises(ImageDataError, match=r"--data.init_args.test_folder and --data.init_args.test_fraction 0"):
        ImageDataModule(folder=str(tmp_path), test_folder=str(tmp_path), test_fraction=0.0)


def test_the_cli_exits_2_with_one_line(tmp_path, capsys):
    f = _csv(tmp_path / "t.csv")
    rc = main(["fit", "--model", "tfidf", "--data", "ngram_text", "--data.init_args.train", f,
               "--data.init_args.val", f, "--data.init_args.features", "tfidf", "--data.init_args.val_fraction", "0.3",
               "--trainer.default_root_dir", str(tmp_path / "runs")])
    err = capsys.readouterr().err
    assert rc == 2 and "zoo: error: --data.init_args.val and --data.init_args.val_fraction 0.3 both" in err
    assert "Traceback" not in err and not (tmp_path / "runs").exists()
