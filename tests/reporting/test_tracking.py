"""An offline W&B fit + test, then the run's own files are opened: config, metrics, throughput, confusion
matrix, per-class table, misclassified examples (with image thumbnails) and the best-checkpoint artifact."""

from __future__ import annotations

import json
import time
from pathlib import Path

import lightning.pytorch as pl
import pytest
import wandb
from lightning.pytorch.callbacks import ModelCheckpoint

from tests.common.wandb_offline import read_records
from zoo.callbacks.run_report import RunReport
from zoo.callbacks.tracking import Throughput, WandbLogger, WandbReports, misclassified_rows, run_tags
from zoo.registry import MODELS


def _history_keys(records) -> set[str]:
    keys = set()
    for r in records:
        if r.WhichOneof("record_type") == "history":
            keys |= {"/".join(i.nested_key) or i.key for i in r.history.item}
    return keys


@pytest.mark.slow
def test_offline_wandb_run_holds_the_dashboard(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    logger = WandbLogger(save_dir=str(tmp_path / "wb"), project="zoo", log_model=True, group="tiny")
    trainer = pl.Trainer(
        accelerator="cpu", max_epochs=2, limit_train_batches=3, limit_val_batches=2, logger=logger,
        log_every_n_steps=1, enable_progress_bar=False, enable_model_summary=False,
        callbacks=[WandbReports(max_examples=6), Throughput(window_size=2), RunReport(),
                   ModelCheckpoint(monitor="val/f1_macro", mode="max", filename="best")],
    )
    trainer.fit(model, data)
    trainer.test(model, data, ckpt_path="best", verbose=False)
    logger.experiment.finish()
    wandb.teardown()  # stops wandb's service process, which writes the transaction log asynchronously

    runs = list((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    assert len(runs) == 1
    run_dir = runs[0]
    for _ in range(120):  # the log is complete once its exit record is in
        records = read_records(next(run_dir.glob("run-*.wandb")))
        kinds = [r.WhichOneof("record_type") for r in records]
        if "exit" in kinds:
            break
        time.sleep(0.5)
    assert "exit" in kinds, "the offline run never finished writing"

    # run identity: group and tags
    run = [r.run for r in records if r.WhichOneof("record_type") == "run"][-1]
    assert run.run_group == "tiny"
    assert {"task:ImageClassifier", "backbone:small_cnn"} <= set(run.tags)

    # resolved config
    config = {}
    for r in records:
        if r.WhichOneof("record_type") == "config":
            config.update({i.key: json.loads(i.value_json) for i in r.config.update if i.key})
    assert config["zoo_config"]["model"]["init_args"]["backbone"] == "small_cnn"
    assert config["zoo_config"]["data"]["init_args"]["dataset"] == "synthetic_shapes"

    # loss terms, metrics and throughput
    keys = _history_keys(records)
    for key in ("train/loss", "train/loss_task", "val/loss", "val/f1_macro", "val/acc", "test/acc", "test/f1_macro",
                "train/device/samples_per_sec"):
        assert key in keys, (key, sorted(k for k in keys if not k.startswith(("train/", "_"))), kinds.count("history"))

    # confusion matrix panel, per-class table, misclassified examples with thumbnails
    tables = run_dir / "files" / "media" / "table" / "test"
    confusion = json.loads(next(tables.glob("confusion_matrix_table_*.table.json")).read_text())
    assert confusion["columns"] == ["Actual", "Predicted", "nPredictions"]
    n_classes = len(model.class_names)
    assert len(confusion["data"]) == n_classes ** 2
    assert sum(row[2] for row in confusion["data"]) == int(model.last_test_confusion.sum())
    per_class = json.loads(next(tables.glob("per_class_*.table.json")).read_text())
    assert per_class["columns"] == ["class", "precision", "recall", "f1", "support"]
    assert [row[0] for row in per_class["data"]] == list(model.class_names)
    wrong = int(model.last_test_confusion.sum() - model.last_test_confusion.diag().sum())
    examples = json.loads(next(tables.glob("misclassified_*.table.json")).read_text())
    assert examples["columns"] == ["id", "label", "predicted", "confidence", "image"]
    assert len(examples["data"]) == min(6, wrong)
    assert all(row[1] != row[2] for row in examples["data"])
    artifacts = [r.artifact for r in records if r.WhichOneof("record_type") == "artifact"]
    by_type = {a.type: a for a in artifacts}
    viz = [r for r in records if r.WhichOneof("record_type") == "config"
           and any("confusion_matrix" in "/".join(i.nested_key) for i in r.config.update)]
    assert viz, "the confusion matrix panel definition was not logged"
    if wrong:
        images = [a for a in artifacts if "misclassified" in a.name]
        pngs = [m.path for m in images[0].manifest.contents if m.path.endswith(".png")]
        assert len(pngs) == len(examples["data"])
    # the best checkpoint as a model artifact
    assert "model" in by_type and "best" in by_type["model"].aliases
    assert "exit" in kinds
    # RunReport's PNGs go to the run's own folder (next to its checkpoints), not the shared save_dir
    own = tmp_path / "wb" / "zoo" / run_dir.name.rsplit("-", 1)[-1]
    assert (own / "checkpoints" / "best.ckpt").exists() and (own / "curves_loss.png").exists()
    assert any(own.glob("confusion*.png"))


def test_run_tags_and_example_rows():
    from zoo.contract import ZooTechnique

    class Fgm(ZooTechnique):
        name = "fgm"

    model, _ = MODELS.entry("image_classifier").meta["tiny_case"]()
    assert run_tags(model, [Fgm()]) == ["backbone:small_cnn", "task:ImageClassifier", "technique:fgm"]
    columns, rows = misclassified_rows([{"id": "a", "label": "x", "predicted": "y", "confidence": 0.51234,
                                         "text": "hi"}])
    assert columns == ["id", "label", "predicted", "confidence", "text"]
    assert rows == [["a", "x", "y", 0.5123, "hi"]]
    with pytest.raises(ValueError, match="max_examples"):
        WandbReports(max_examples=-1)


def test_misclassified_buffer_is_off_unless_a_tracker_asks(tmp_path):
    from tests.common.helpers import quiet_trainer

    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    quiet_trainer(limit_test_batches=1).test(model, data, verbose=False)
    assert model.misclassified == []
    model.max_misclassified = 3
    quiet_trainer(limit_test_batches=2).test(model, data, verbose=False)
    assert 0 < len(model.misclassified) <= 3  # an untrained model gets some wrong
    row = model.misclassified[0]
    assert row["label"] != row["predicted"] and row["image"].ndim == 3


def test_tensorboard_and_csv_loggers_get_the_same_scalars(tmp_path):
    import csv

    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger
    from tensorboard.backend.event_processing.event_accumulator import EventAccumulator

    model, data = MODELS.entry("image_classifier").meta["tiny_case"](tmp_path)
    tb = TensorBoardLogger(save_dir=str(tmp_path / "tb"), name="tiny")
    csv_logger = CSVLogger(save_dir=str(tmp_path / "csv"), name="tiny")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=4, limit_val_batches=1,
                         logger=[tb, csv_logger], log_every_n_steps=1, enable_progress_bar=False,
                         enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[Throughput(window_size=2)])
    trainer.fit(model, data)
    events = EventAccumulator(tb.log_dir)
    events.Reload()
    tb_keys = set(events.Tags()["scalars"])
    with open(Path(csv_logger.log_dir) / "metrics.csv", newline="") as fh:
        csv_keys = set(next(csv.reader(fh)))
    for key in ("train/loss", "train/loss_task", "val/loss", "val/f1_macro", "train/device/samples_per_sec"):
        assert key in tb_keys, (key, sorted(tb_keys))
        assert key in csv_keys, (key, sorted(csv_keys))


def test_offline_wandb_run_holds_recommender_top_k_samples(tmp_path, monkeypatch):
    monkeypatch.setenv("WANDB_MODE", "offline")
    model, data = MODELS.entry("bpr").meta["tiny_case"](tmp_path)
    logger = WandbLogger(save_dir=str(tmp_path / "wb"), project="zoo")
    trainer = pl.Trainer(accelerator="cpu", max_epochs=1, limit_train_batches=3, limit_val_batches=1, logger=logger,
                         enable_progress_bar=False, enable_model_summary=False, enable_checkpointing=False,
                         callbacks=[WandbReports(max_examples=4)])
    trainer.fit(model, data)
    trainer.test(model, data, verbose=False)
    logger.experiment.finish()
    wandb.teardown()

    run_dir = next((tmp_path / "wb" / "wandb").glob("offline-run-*"))
    tables = run_dir / "files" / "media" / "table" / "test"
    table = json.loads(next(tables.glob("top_k_samples_*.table.json")).read_text())
    # the item's name and text come from the items file: an id alone tells a reader nothing about the item
    assert table["columns"][:4] == ["user", "rank", "item", "score"]
    assert {"item_name", "item_text"} <= set(table["columns"])
    users = {row[0] for row in table["data"]}
    assert 1 <= len(users) <= 4
    # original ids (not indices), ranks 1..k in order for each user, scores not increasing with rank
    for user in users:
        rows = [r for r in table["data"] if r[0] == user]
        assert [r[1] for r in rows] == list(range(1, len(rows) + 1)) and len(rows) <= model.top_k
        assert all(a[3] >= b[3] for a, b in zip(rows, rows[1:]))
        assert all(str(r[2]) in set(map(str, model.item_ids)) for r in rows)
        assert str(user) in set(map(str, model.user_ids))
