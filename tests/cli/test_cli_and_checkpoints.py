"""The CLI end to end (fit -> test -> predict), run artifacts, config errors, and checkpoint reuse."""

import csv
import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.cli import main
from zoo.tasks.base import CheckpointMismatchError, ZooTask, load_checkpoint
from zoo.tasks.classification import ClassDataMismatchError
from zoo.tasks.image import ImageClassifier

ROOT = Path(__file__).resolve().parents[2]
SHAPES = ["--data.init_args.dataset", "synthetic_shapes", "--data.init_args.dataset_kwargs", '{"n": 120}',
          "--data.init_args.augment", "null", "--data.init_args.image_size", "null",
          "--model.init_args.backbone_kwargs", '{"width": 8}', "--trainer.enable_progress_bar", "false"]


def run_cli(*args):
    return main([args[0], "--config", str(ROOT / "recipes/vision/digits.yaml"), *SHAPES, *args[1:]])


@pytest.mark.slow
def test_fit_test_predict_writes_artifacts(tmp_path, capsys):
    run_cli("fit", "--trainer.max_epochs", "3", "--trainer.log_every_n_steps", "1", "--trainer.default_root_dir",
            "runs")
    run_dir = Path("runs/digits/version_0")
    ckpt = run_dir / "checkpoints" / "best.ckpt"
    assert ckpt.exists() and (run_dir / "checkpoints" / "last.ckpt").exists()
    for name in ("config.yaml", "metrics.csv", "curves_loss.png", "curves_metrics.png"):
        assert (run_dir / name).stat().st_size > 0, name
    metrics = list(csv.DictReader(open(run_dir / "metrics.csv")))
    assert {"train/loss", "val/loss", "val/acc", "val/f1_macro", "train/loss_task"} <= set(metrics[0])

    run_cli("test", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "runs")
    test_dir = run_dir / "test"  # beside the checkpoint's run, not a new version_N
    assert sorted(p.name for p in Path("runs/digits").iterdir()) == ["version_0"]
    report = json.loads((test_dir / "classification_report.json").read_text())
    assert report["class_names"] == ["square", "cross", "bars"]
    test_rows = list(csv.DictReader(open(test_dir / "metrics.csv")))
    logged_acc = float(next(r["test/acc"] for r in test_rows if r.get("test/acc")))
    assert report["accuracy"] == pytest.approx(logged_acc, abs=1e-6)
    assert (test_dir / "confusion_matrix.png").stat().st_size > 1000
    assert "f1-score" in (test_dir / "classification_report.txt").read_text()

    run_cli("test", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "runs")
    assert (run_dir / "test_1" / "classification_report.json").exists()  # a second test never overwrites the first

    capsys.readouterr()
    run_cli("predict", "--ckpt_path", str(ckpt), "--trainer.default_root_dir", "runs")
    assert (run_dir / "predict").is_dir() and sorted(p.name for p in Path("runs/digits").iterdir()) == ["version_0"]
    out = capsys.readouterr().out.strip().splitlines()
    assert out[0] == "id,label,confidence"
    labels = {line.split(",")[1] for line in out[1:]}
    assert labels <= {"square", "cross", "bars"} and len(out) - 1 == 24  # the 20% test split of 120


@pytest.mark.slow
def test_predict_to_file(tmp_path):
    run_cli("fit", "--trainer.max_steps", "2", "--trainer.default_root_dir", "runs")
    ckpt = next(Path("runs").rglob("last.ckpt"))
    run_cli("predict", "--ckpt_path", str(ckpt), "--output", "preds/p.csv")
    rows = list(csv.DictReader(open("preds/p.csv")))
    assert len(rows) == 24 and set(rows[0]) == {"id", "label", "confidence"}


def test_wrong_yaml_key_names_the_key_and_suggests(tmp_path, capsys):
    bad = tmp_path / "bad.yaml"
    bad.write_text((ROOT / "recipes/vision/digits.yaml").read_text().replace("max_epochs", "max_epoch"))
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(bad)])
    assert exc.value.code != 0
    err = capsys.readouterr().err
    assert "max_epoch" in err and "did you mean: trainer.max_epochs" in err


def test_wrong_model_argument_names_it(tmp_path, capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.init_args.lrr", "0.1")
    err = capsys.readouterr().err
    assert "lrr" in err


def test_unknown_backbone_lists_close_names():
    with pytest.raises(KeyError, match="Did you mean: resnet18"):
        ImageClassifier(backbone="resnet19")


def test_model_class_chosen_by_registry_name_class_name_or_path(tmp_path):
    for class_path in ("image_classifier", "ImageClassifier", "zoo.tasks.image.ImageClassifier"):
        with pytest.raises(SystemExit) as exc:
            run_cli("fit", "--model.class_path", class_path, "--print_config")
        assert exc.value.code == 0


def test_list_subcommand(capsys):
    assert main(["list", "models"]) == 0
    assert "image_classifier" in capsys.readouterr().out
    assert main(["list", "recipes"]) == 0
    assert "recipes/vision/digits.yaml" in capsys.readouterr().out
    assert main(["list", "backbones", "resnet18*"]) == 0
    assert capsys.readouterr().out.split()[0] == "resnet18"


def tiny_fit(tmp_path, **model_kwargs):
    from zoo.data.image import ImageDataModule

    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8}, **model_kwargs)
    data = ImageDataModule(dataset="synthetic_shapes", dataset_kwargs={"n": 60}, batch_size=16)
    trainer = quiet_trainer(max_steps=2, enable_checkpointing=False, default_root_dir=tmp_path)
    trainer.fit(model, data)
    path = tmp_path / "model.ckpt"
    trainer.save_checkpoint(path)
    return model, data, path


def test_num_classes_disagreeing_with_data(tmp_path):
    with pytest.raises(ClassDataMismatchError, match="num_classes=5 but the data has 3 classes"):
        tiny_fit(tmp_path, num_classes=5)


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_load_from_checkpoint_in_a_fresh_process_gives_same_logits(tmp_path):
    model, _, path = tiny_fit(tmp_path)
    x = torch.rand(3, 3, 16, 16)
    torch.save(x, tmp_path / "x.pt")
    model.eval()
    with torch.no_grad():
        expected = model({"image": x})
    script = (
        "import sys, torch\n"
        "from zoo.tasks.image import ImageClassifier\n"
        "m = ImageClassifier.load_from_checkpoint(sys.argv[1]).eval()\n"
        "x = torch.load(sys.argv[2], weights_only=True)\n"
        "print(m.class_names)\n"
        "torch.save(m({'image': x}).detach(), sys.argv[3])\n"
    )
    proc = subprocess.run([sys.executable, "-c", script, str(path), str(tmp_path / "x.pt"), str(tmp_path / "y.pt")],
                          capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert "['square', 'cross', 'bars']" in proc.stdout
    assert torch.allclose(torch.load(tmp_path / "y.pt", weights_only=True), expected, atol=1e-6)


class OtherTask(ZooTask):
    """Another task class, to check that checkpoints are not loaded across classes."""

    def __init__(self):
        super().__init__()
        self.layer = torch.nn.Linear(2, 2)

    def embed(self, batch):
        return batch["x"]

    def forward_embedded(self, emb, batch):
        return self.layer(emb)

    def task_loss(self, out, batch):
        return out.pow(2).mean()


def test_checkpoint_of_another_task_class_is_refused(tmp_path):
    _, data, path = tiny_fit(tmp_path)
    with pytest.raises(CheckpointMismatchError,
                       match="is a checkpoint of zoo.tasks.image.ImageClassifier, not of tests"):
        OtherTask.load_from_checkpoint(path)
    # through a Trainer (zoo test --ckpt_path) the same check runs in on_load_checkpoint
    checkpoint = torch.load(path, weights_only=True)
    with pytest.raises(CheckpointMismatchError):
        OtherTask().on_load_checkpoint(checkpoint)
    assert isinstance(load_checkpoint(path), ImageClassifier)


def test_plain_lightning_checkpoint_is_refused(tmp_path):
    torch.save({"state_dict": {}}, tmp_path / "plain.ckpt")
    with pytest.raises(CheckpointMismatchError, match="not written by zoo"):
        ImageClassifier.load_from_checkpoint(tmp_path / "plain.ckpt")


@pytest.mark.slow
def test_module_and_data_in_someone_elses_trainer(tmp_path):
    """A user's own script: their Trainer, their callbacks, zoo's module and data module from an image folder."""
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    from tests.data.test_image_data import write_images
    from zoo.data.image import ImageDataModule

    write_images(tmp_path / "photos", classes=("a", "b", "c"), per_class=8)
    data = ImageDataModule(folder=str(tmp_path / "photos"), batch_size=8, val_fraction=0.25, test_fraction=0.25)
    model = ImageClassifier(backbone="timm/resnet10t", lr=1e-3)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", monitor="val/acc", mode="max")
    trainer = pl.Trainer(max_epochs=2, accelerator="cpu", logger=False, enable_progress_bar=False,
                         callbacks=[ckpt, EarlyStopping(monitor="val/loss", patience=5)], default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert Path(ckpt.best_model_path).exists()
    results = trainer.test(model, data, verbose=False)
    assert 0.0 <= results[0]["test/acc"] <= 1.0
    reloaded = ImageClassifier.load_from_checkpoint(ckpt.best_model_path)
    assert reloaded.class_names == ["a", "b", "c"]


def test_bad_value_names_the_key_and_accepted_values(capsys):
    with pytest.raises(SystemExit):
        run_cli("fit", "--model.init_args.optimizer", "adamx")
    err = capsys.readouterr().err
    assert "optimizer" in err and "'adamw', 'adam', 'sgd'" in err and "Got value: adamx" in err


def test_bad_input_is_one_line_error_without_traceback(capsys):
    code = run_cli("fit", "--data.init_args.dataset", "digitz")
    assert code == 2
    err = capsys.readouterr().err
    assert "zoo: error: unknown dataset 'digitz'. Did you mean: digits?" in err
    assert "Traceback" not in err


@pytest.mark.slow
def test_run_report_history_aligns_train_and_val_epochs(tmp_path):
    from zoo.callbacks.run_report import RunReport
    from zoo.data.image import ImageDataModule

    report = RunReport()
    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8})
    data = ImageDataModule(dataset="synthetic_shapes", dataset_kwargs={"n": 60}, batch_size=16)
    trainer = quiet_trainer(max_epochs=3, callbacks=[report], default_root_dir=tmp_path)
    trainer.fit(model, data)
    assert [row["epoch"] for row in report.history] == [0.0, 1.0, 2.0]
    assert all("train/acc" in row and "val/acc" in row for row in report.history), report.history
    # the last epoch's training accuracy is what the trainer holds at the end
    assert report.history[-1]["train/acc"] == pytest.approx(float(trainer.callback_metrics["train/acc"]))
    assert (tmp_path / "curves_metrics.png").exists()


BPR = {"seed_everything": 5,
       "model": {"class_path": "bpr", "init_args": {"embedding_dim": 8, "lr": 0.01, "optimizer": "adam", "top_k": 10}},
       "data": {"class_path": "interactions", "init_args": {"dataset": "synthetic_interactions", "split": "loo",
                                                            "batch_size": 64, "seed": 1}},
       "trainer": {"max_epochs": 1, "limit_train_batches": 2, "limit_val_batches": 1, "accelerator": "cpu",
                   "enable_progress_bar": False, "enable_model_summary": False, "num_sanity_val_steps": 0}}


def rows_per_user(path):
    counts = {}
    for row in csv.DictReader(open(path)):
        counts[row["user"]] = counts.get(row["user"], 0) + 1
    return set(counts.values())


@pytest.mark.slow
def test_a_command_line_flag_wins_over_the_checkpoints_hyperparameters(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "bpr.yaml"
    recipe.write_text(yaml.safe_dump(BPR))  # the recipe says top_k 10
    assert main(["fit", "--config", str(recipe), "--model.init_args.top_k", "4"]) == 0
    ckpt = str(next(Path("runs").rglob("last.ckpt")))

    def predict(*flags):
        return main(["predict", "--config", str(recipe), "--ckpt_path", ckpt, "--output", "p.csv", *flags])

    assert predict() == 0
    assert rows_per_user("p.csv") == {4}  # the checkpoint's top_k beats the recipe's
    capsys.readouterr()
    assert predict("--model.init_args.top_k", "3") == 0
    assert rows_per_user("p.csv") == {3}  # the flag beats the checkpoint's
    assert "--model.init_args.top_k 3 (command line) replaces top_k=4" in capsys.readouterr().err
    assert predict("--model.init_args={top_k: 2}") == 0
    assert rows_per_user("p.csv") == {2}

    # a flag that changes the network cannot be loaded with these weights: one message, no traceback
    capsys.readouterr()
    assert predict("--model.init_args.embedding_dim", "16") == 2
    err = capsys.readouterr().err
    assert "zoo: error: --model.init_args.embedding_dim 16: the weights in" in err and "embedding_dim=8" in err
    assert "Traceback" not in err and "replaces" not in err


@pytest.mark.slow
def test_allow_untrained_as_a_bare_flag(tmp_path, capsys):
    import yaml

    recipe = tmp_path / "bpr.yaml"
    recipe.write_text(yaml.safe_dump(BPR))
    base = ["predict", "--config", str(recipe), "--output", "p.csv"]
    assert main([*base, "--allow_untrained"]) == 0  # as README and the refusal spell it
    assert rows_per_user("p.csv") == {10}
    assert main([*base, "--allow_untrained", "true"]) == 0
    capsys.readouterr()
    assert main([*base, "--allow_untrained", "false"]) == 2
    assert "or --allow_untrained to use the model's initial weights" in capsys.readouterr().err
    assert main([*base, "--no_allow_untrained"]) == 2


def test_command_line_model_keys_reads_every_flag_form():
    from zoo.cli.resume import command_line_model_keys

    argv = ["predict", "--config", "r.yaml", "--model.init_args.top_k", "3", "--model.lr=0.1",
            "--model.init_args", "{ks: [5], retrieval: exact}", "--model={init_args: {seed: 1}}",
            "--model.class_path", "bpr", "--data.init_args.batch_size", "8", "--trainer.max_epochs", "1"]
    assert command_line_model_keys(argv) == {"top_k", "lr", "ks", "retrieval", "seed"}
