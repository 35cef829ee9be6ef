"""The lines that close a fit and a test, as pure helpers: the kept checkpoint, what calibration did (or why it
was not applied, a temperature at its bound), no best.ckpt and why (instead of Lightning's raw warning), and
model-card names that never leak the file system."""

from __future__ import annotations

import re
import warnings
from pathlib import Path
from types import SimpleNamespace

import pytest
import torch
from lightning.pytorch.callbacks import ModelCheckpoint

from zoo.callbacks.card import no_best_line
from zoo.callbacks.trust import calibration_lines, kept_line
from zoo.cli.quiet import silence_noise
from zoo.reporting.calibration import fit_temperature, temperature_at_bound
from zoo.reporting.card import _dataset, metadata, render


def test_kept_line_names_epoch_metric_and_the_last_epochs_score():
    line = kept_line({"path": "runs/x/version_0/checkpoints/best.ckpt", "epoch": 0, "monitor": "val/f1_macro",
                      "value": 0.7008, "last_epoch": 9, "last_value": 0.685})
    assert line == ("kept runs/x/version_0/checkpoints/best.ckpt: epoch 0, val/f1_macro 0.7008 (the last epoch, 9, "
                    "scored 0.6850)")


def test_calibration_that_does_not_lower_nll_is_not_applied_and_says_so():
    note = {"fitted": [1.495], "nll_before": 0.80, "nll_after": 0.81, "applied": False, "at_bound": False}
    (line,) = calibration_lines(note, "best.ckpt")
    assert line.startswith("calibration not applied to best.ckpt: temperature 1.495") and "temperature 1" in line


def test_a_temperature_at_its_bound_is_a_warning():
    # confidently wrong everywhere (class 0 is never right) -> the NLL wants T as large as it may be
    fitted = fit_temperature(torch.tensor([[5.0, 0.0, 0.0]]).repeat(400, 1), torch.tensor([1, 2] * 200))
    assert temperature_at_bound(fitted)
    lines = calibration_lines({"fitted": fitted.tolist(), "nll_before": 2.0, "nll_after": 1.1, "applied": True,
                               "at_bound": True}, "best.ckpt")
    assert lines[0].startswith("warning: best.ckpt's fitted temperature 100.000 is at the search bound")
    assert lines[1].startswith("calibrated best.ckpt: temperature 100.000")
    assert not temperature_at_bound(torch.tensor([1.3]))


def test_no_best_checkpoint_is_said_with_its_reason_and_lightnings_warning_is_dropped():
    checkpoint = ModelCheckpoint(monitor="val/acc", filename="best")
    trainer = SimpleNamespace(callbacks=[checkpoint], callback_metrics={}, limit_val_batches=0, num_val_batches=[])
    line = no_best_line(trainer)
    assert line.startswith("no best.ckpt was written: val/acc was never measured, as no validation ran")
    checkpoint.best_model_path = "best.ckpt"
    assert no_best_line(trainer) is None
    silence_noise()
    with warnings.catch_warnings(record=True) as seen:
        warnings.simplefilter("default")
        silence_noise()
        warnings.warn("`ModelCheckpoint(monitor='val/acc')` could not find the monitored key in the returned "
                      "metrics: ['train/loss', 'epoch', 'step']. HINT: Did you call `log('val/acc', value)`?",
                      stacklevel=1)
    assert not seen


@pytest.mark.parametrize("data, expected", [
    ({"train": "/home/someone/private/corpus/train.csv"}, "train.csv"),
    ({"train": "data/train.csv"}, "data/train.csv"),
    ({"dataset": "bbc_news"}, "bbc_news")])
def test_card_dataset_names_never_hold_absolute_paths(data, expected):
    config = {"model": {"class_path": "zoo.tasks.text.tfidf.TfidfClassifier"}, "data": {"init_args": data}}
    assert _dataset(config) == expected
    assert _dataset({**config, "card": {"dataset_name": "Chinese news (THUCNews sample)"}}) == (
        "Chinese news (THUCNews sample)")


def test_card_pipeline_tag_comes_from_the_export_family(tmp_path):
    info = {"config": {"model": {"class_path": "zoo.tasks.text.tfidf.TfidfClassifier"},
                       "data": {"init_args": {"train": str(Path.cwd().parent / "x.csv")}}},
            "metrics": {"acc": 0.9}, "card": {}, "training": None, "data": None, "trust": None, "baseline": None,
            "per_class": None, "export": None, "hparams": {}}
    meta = metadata(info, "run")
    assert meta["pipeline_tag"] == "text-classification" and meta["datasets"] == ["x.csv"]
    assert "A text classification model trained with zoo." in render(info, "run")
    tags = {"token_classification": "token-classification", "image_classification": "image-classification",
            "recommendation": "recommendation", "ngram_text_classification": "text-classification"}
    for family, tag in tags.items():
        assert metadata({**info, "training": {"export_family": family}}, "run")["pipeline_tag"] == tag
    assert not re.search(r"A model for other", render({**info, "training": {"export_family": "recommendation"}}, "r"))
