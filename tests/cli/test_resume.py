"""A crashed `zoo fit` resumes with `--resume auto` to the same weights as a run that never stopped.

Per task family (image with EMA and mixup, text on a tiny BERT, recsys BPR): a real `zoo fit` process is
SIGKILLed in the middle of an epoch (tests.common.resume_helpers.KillAtStep: at a known step, not on a timer), then
`zoo fit --resume auto` continues it. The uninterrupted reference and the resume run in this process (a `zoo`
subprocess costs seconds of imports); only the run that gets killed needs a process of its own.
"""

from __future__ import annotations

import csv
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
STEPS_PER_EPOCH, EPOCHS, SAVE_EVERY, KILL_AFTER = 4, 2, 3, 7  # last.ckpt at step 6: two batches into epoch 1

TRAINER = {"max_epochs": EPOCHS, "limit_train_batches": STEPS_PER_EPOCH, "limit_val_batches": 1, "accelerator": "cpu",
           "deterministic": True, "log_every_n_steps": 1, "enable_progress_bar": False, "enable_model_summary": False,
           "num_sanity_val_steps": 0}
SAVE = {"class_path": "zoo.callbacks.checkpointing.LastCheckpoint", "init_args": {"every_n_train_steps": SAVE_EVERY}}


def image_recipe(tmp: Path) -> dict:
    return {"seed_everything": 42,
            "model": {"class_path": "image_classifier",
                      "init_args": {"backbone": "small_cnn", "backbone_kwargs": {"width": 8, "norm": "group"},
                                    "num_classes": 10, "in_channels": 1, "lr": 0.003, "scheduler": "cosine"}},
            "data": {"class_path": "image", "init_args": {"dataset": "digits", "batch_size": 16, "val_fraction": 0.1,
                                                          "test_fraction": 0.2}},
            # a technique with state of its own (EMA weights) and one drawing random numbers (mixup's RNG)
            "trainer": {**TRAINER, "callbacks": [SAVE, {"class_path": "ema", "init_args": {"decay": 0.9}},
                                                 {"class_path": "mixup", "init_args": {"alpha": 0.4, "seed": 3}}]}}


def text_recipe(tmp: Path) -> dict:
    from zoo.backbones.text import tiny_bert_dir

    tiny = str(tiny_bert_dir(tmp / "tiny_bert"))
    good = ["great film i love it", "happy with the book", "really good"]
    bad = ["terrible film", "sad bad book", "hate it"]
    path = tmp / "reviews.csv"
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.writer(fh)
        writer.writerow(["text", "label"])
        writer.writerows([(good if i % 2 else bad)[i % 3], "pos" if i % 2 else "neg"] for i in range(120))
    return {"seed_everything": 7,
            "model": {"class_path": "text_classifier", "init_args": {"encoder": tiny, "lr": 0.001}},
            "data": {"class_path": "text", "init_args": {"train": str(path), "tokenizer": tiny, "max_length": 16,
                                                         "batch_size": 8, "cache_dir": str(tmp / "cache")}},
            "trainer": {**TRAINER, "callbacks": [SAVE]}}


def recsys_recipe(tmp: Path) -> dict:
    return {"seed_everything": 5,
            "model": {"class_path": "bpr", "init_args": {"embedding_dim": 8, "lr": 0.01, "optimizer": "adam"}},
            "data": {"class_path": "interactions", "init_args": {"dataset": "synthetic_interactions", "split": "loo",
                                                                 "batch_size": 64, "seed": 1}},
            "trainer": {**TRAINER, "callbacks": [SAVE]}}


FAMILIES = {"image": image_recipe, "text": text_recipe, "recsys": recsys_recipe}


def write_recipe(tmp: Path, family: str) -> Path:
    path = tmp / f"{family}_resume.yaml"
    path.write_text(yaml.safe_dump(FAMILIES[family](tmp)))
    return path


def kill_mid_epoch(recipe: Path, cwd: Path) -> None:
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(recipe),
                           "--trainer.callbacks+=tests.common.resume_helpers.KillAtStep",
                           f"--trainer.callbacks.step={KILL_AFTER}"], cwd=cwd, env=env, capture_output=True, text=True)
    assert proc.returncode == -signal.SIGKILL, proc.stderr[-3000:]


def weights(path: Path) -> dict[str, torch.Tensor]:
    return torch.load(path, map_location="cpu", weights_only=True)["state_dict"]


def history(run: Path) -> list[tuple[str, str, str]]:
    rows = list(csv.DictReader(open(run / "metrics.csv")))
    return [(r["epoch"], r["step"], r.get("train/loss", "")) for r in rows if r.get("train/loss")]


def assert_same_weights(a: Path, b: Path) -> None:
    wa, wb = weights(a), weights(b)
    assert wa.keys() == wb.keys()
    different = [k for k in wa if not torch.equal(wa[k], wb[k])]
    assert not different, f"{len(different)} tensors differ, e.g. {different[:3]}"


@pytest.mark.subprocess
@pytest.mark.timeout(600)
@pytest.mark.parametrize("family", list(FAMILIES))
def test_killed_run_resumes_to_the_uninterrupted_weights(family, tmp_path, capsys):
    recipe = write_recipe(tmp_path, family)
    name = recipe.stem
    assert main(["fit", "--config", str(recipe), "--trainer.default_root_dir", "reference"]) == 0
    reference = tmp_path / "reference" / name / "version_0"

    kill_mid_epoch(recipe, tmp_path)
    run = tmp_path / "runs" / name / "version_0"
    saved = torch.load(run / "checkpoints" / "last.ckpt", map_location="cpu", weights_only=True)
    assert (saved["epoch"], saved["global_step"]) == (1, 6)  # the kill came mid-epoch, after the step-6 save

    if family == "image":  # keep the killed run's files for the corrupt-checkpoint case below
        spare = tmp_path / "spare" / name / "version_0"
        shutil.copytree(run, spare)

    capsys.readouterr()
    assert main(["fit", "--config", str(recipe), "--resume", "auto"]) == 0
    last = Path("runs") / name / "version_0" / "checkpoints" / "last.ckpt"
    assert f"from {last} (epoch 1, step 6)" in capsys.readouterr().err
    assert sorted(p.name for p in (tmp_path / "runs" / name).iterdir()) == ["version_0"]  # the same run directory
    assert_same_weights(reference / "checkpoints" / "last.ckpt", run / "checkpoints" / "last.ckpt")
    # one continuous history: every step once, with the reference's losses
    assert history(run) == history(reference)
    assert len(history(run)) == EPOCHS * STEPS_PER_EPOCH

    if family == "image":
        # the newest checkpoint truncated: resume warns, falls back to the previous good one (best.ckpt, written
        # at the end of epoch 0: an end-of-epoch resume) and still ends on the same weights
        last = spare / "checkpoints" / "last.ckpt"
        last.write_bytes(last.read_bytes()[: last.stat().st_size // 2])
        best = torch.load(spare / "checkpoints" / "best.ckpt", map_location="cpu", weights_only=True)
        capsys.readouterr()
        assert main(["fit", "--config", str(recipe), "--resume", "auto", "--trainer.default_root_dir", "spare"]) == 0
        err = capsys.readouterr().err
        assert "warning: skipping checkpoint" in err and "last.ckpt is truncated" in err
        assert f"best.ckpt (epoch {best['epoch']}, step {best['global_step']})" in err
        assert_same_weights(reference / "checkpoints" / "last.ckpt", spare / "checkpoints" / "last.ckpt")
        assert history(spare) == history(reference)


# -- which checkpoint and which run --resume takes ---------------------------------------------------------------
CHOICE_STEPS = 4  # per epoch; best.ckpt stays at epoch 0 (step 4), last.ckpt ends at epoch 1 (step 8)


@pytest.fixture(scope="module")
def fitted_run(tmp_path_factory) -> tuple[Path, Path]:
    """A digits_tiny-like run of 2 epochs whose best.ckpt is its epoch-0 state (the checkpoint monitors the epoch,
    lower is better), trained once for the tests below, which copy it."""
    tmp = tmp_path_factory.mktemp("choice")
    recipe = image_recipe(tmp)
    recipe["model"]["init_args"]["backbone_kwargs"] = {"width": 4, "norm": "group"}
    best = {"class_path": "lightning.pytorch.callbacks.ModelCheckpoint",
            "init_args": {"monitor": "epoch", "mode": "min", "filename": "best", "enable_version_counter": False}}
    recipe["trainer"] = {**TRAINER, "limit_train_batches": CHOICE_STEPS, "callbacks": [best]}
    path = tmp / "choice.yaml"
    path.write_text(yaml.safe_dump(recipe))
    assert main(["fit", "--config", str(path), "--trainer.default_root_dir", str(tmp / "runs")]) == 0
    return path, tmp / "runs" / "choice" / "version_0"


def position(path: Path) -> tuple[int, int]:
    saved = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    return saved["epoch"], saved["global_step"]


def copy_run(run: Path, version: int, newer_by: float = 0.0) -> Path:
    copy = Path("runs") / "choice" / f"version_{version}"
    shutil.copytree(run, copy)
    for ckpt in (copy / "checkpoints").glob("*.ckpt"):
        os.utime(ckpt, (ckpt.stat().st_atime, ckpt.stat().st_mtime + newer_by))
    return copy


@pytest.mark.slow
def test_resume_takes_the_furthest_training_state_not_the_newest_file(fitted_run, capsys):
    recipe, fitted = fitted_run
    run = copy_run(fitted, 0)
    best, last = run / "checkpoints" / "best.ckpt", run / "checkpoints" / "last.ckpt"
    assert (position(best), position(last)) == ((0, CHOICE_STEPS), (1, 2 * CHOICE_STEPS))
    # what the end-of-fit calibration can leave: best.ckpt rewritten after last.ckpt
    os.utime(best, (best.stat().st_atime, last.stat().st_mtime + 60))

    capsys.readouterr()
    assert main(["fit", "--config", str(recipe), "--resume", str(run), "--trainer.max_epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert f"from {last} (epoch 1, step {2 * CHOICE_STEPS})" in err, err[-2000:]
    assert position(last) == (2, 3 * CHOICE_STEPS)  # one more epoch on top of last.ckpt's two
    steps = [int(r["step"]) for r in csv.DictReader(open(run / "metrics.csv")) if r.get("train/loss")]
    assert steps == list(range(3 * CHOICE_STEPS))


@pytest.mark.slow
def test_resume_auto_passes_over_a_newer_run_with_other_model_or_data_settings(fitted_run, capsys):
    from zoo.cli.runs import find_resume_checkpoint

    recipe, fitted = fitted_run
    run = copy_run(fitted, 0)
    # a newer run of the same recipe trained on other data (3-channel shapes): what --resume auto took before
    other = copy_run(fitted, 1, newer_by=60)
    config = yaml.safe_load((other / "config.yaml").read_text())
    config["data"]["init_args"]["dataset"] = "synthetic_shapes"
    config["model"]["init_args"].update(in_channels=3, num_classes=3)
    (other / "config.yaml").write_text(yaml.safe_dump(config))

    capsys.readouterr()
    assert main(["fit", "--config", str(recipe), "--resume", "auto", "--trainer.max_epochs", "3"]) == 0
    err = capsys.readouterr().err
    assert f"passing over {other}" in err and "model.init_args.in_channels: 3 there, 1 here" in err, err[-2000:]
    assert "data.init_args.dataset: 'synthetic_shapes' there, 'digits' here" in err
    assert f"from {run / 'checkpoints' / 'last.ckpt'} (epoch 1, step {2 * CHOICE_STEPS})" in err
    assert position(run / "checkpoints" / "last.ckpt") == (2, 3 * CHOICE_STEPS)
    assert position(other / "checkpoints" / "last.ckpt") == (1, 2 * CHOICE_STEPS)  # left alone

    # no run fits the command: nothing to resume (the caller starts a new run), each run named with its keys
    settings = {"model": {"class_path": "zoo.tasks.image.ImageClassifier", "init_args": {"in_channels": 2}}}
    assert find_resume_checkpoint("auto", Path("runs"), "choice", settings) is None
    err = capsys.readouterr().err
    assert err.count("passing over") == 2 and "in_channels: 1 there, 2 here" in err
    # an explicit run directory is taken as given
    found = find_resume_checkpoint(str(other), Path("runs"), "choice", settings)[0]
    assert found == other / "checkpoints" / "last.ckpt"


def fake_checkpoint(path: Path, epoch: int, step: int, mtime: float, training_state: bool = True) -> None:
    state = {"epoch": epoch, "global_step": step, "state_dict": {"w": torch.zeros(1)}}
    if training_state:
        state["loops"] = {}
    path.parent.mkdir(parents=True, exist_ok=True)
    torch.save(state, path)
    os.utime(path, (mtime, mtime))


def test_the_furthest_state_wins_then_last_ckpt_then_the_newest_file(capsys):
    from zoo.cli.runs import find_resume_checkpoint

    ckpts = Path("runs/r/version_0/checkpoints")
    fake_checkpoint(ckpts / "on_exception.ckpt", 1, 6, mtime=4_000)
    fake_checkpoint(ckpts / "best.ckpt", 1, 8, mtime=3_000)  # same step as last.ckpt, newer file
    fake_checkpoint(ckpts / "last.ckpt", 1, 8, mtime=2_000)
    fake_checkpoint(ckpts / "weights.ckpt", 2, 12, mtime=1_000, training_state=False)
    (ckpts / "broken.ckpt").write_bytes(b"PK\x03\x04 not a whole zip")
    path, saved = find_resume_checkpoint("auto", Path("runs"), "r")
    assert path == ckpts / "last.ckpt" and saved["global_step"] == 8
    err = capsys.readouterr().err
    assert "weights.ckpt: it holds weights only" in err and "broken.ckpt is truncated or corrupt" in err

    (ckpts / "last.ckpt").unlink()
    assert find_resume_checkpoint("auto", Path("runs"), "r")[0] == ckpts / "best.ckpt"  # the tie, then the newest
    fake_checkpoint(ckpts / "other.ckpt", 1, 8, mtime=5_000)
    assert find_resume_checkpoint("auto", Path("runs"), "r")[0] == ckpts / "other.ckpt"


def test_settings_that_do_not_change_training_are_not_differences(tmp_path):
    from zoo.cli.runs import settings_differences

    run = tmp_path / "version_0"
    run.mkdir()
    assert settings_differences(run, {"model": {}}) is None  # no config.yaml: cannot tell
    saved = {"model": {"class_path": "zoo.tasks.image.ImageClassifier",
                       "init_args": {"class_names": ["a", "b"], "in_channels": 1, "lr": 0.003, "ks": [5, 10]}},
             "data": {"class_path": "zoo.data.image.datamodule.ImageDataModule",
                      "init_args": {"num_workers": 4, "eval_batch_size": 64, "batch_size": 32, "folder": None}}}
    (run / "config.yaml").write_text(yaml.safe_dump(saved))
    same = {"model": {"class_path": "zoo.tasks.image.ImageClassifier",
                      "init_args": {"class_names": None, "in_channels": 1, "lr": 0.003, "ks": [5, 10], "new": 1}},
            "data": {"class_path": "zoo.data.image.datamodule.ImageDataModule",
                     "init_args": {"num_workers": 0, "eval_batch_size": None, "batch_size": 32, "folder": None}}}
    assert settings_differences(run, same) == []
    other = yaml.safe_load(yaml.safe_dump(same))
    other["model"]["init_args"]["lr"] = 0.01
    other["data"]["init_args"]["folder"] = "photos"
    assert settings_differences(run, other) == ["model.init_args.lr: 0.003 there, 0.01 here",
                                                "data.init_args.folder: None there, 'photos' here"]
