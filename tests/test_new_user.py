"""What a new user hit on their own data (issue 15): NER data and training, image folders, run output."""

from __future__ import annotations

import logging
import math
import os
from pathlib import Path

import numpy as np
import pytest
import torch
import yaml
from PIL import Image

from tests.helpers import quiet_trainer
from zoo.backbones.text import tiny_bert_dir
from zoo.cli import main
from zoo.data.image import ImageDataError, ImageDataModule
from zoo.data.text import TextDataError, TokenDataModule, read_conll

ROOT = Path(__file__).resolve().parent.parent


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


# -- 2: NER LoRA recipe and the all-O warning ------------------------------------------------------------------
def test_ner_lora_recipe_gives_the_head_its_own_learning_rate():
    recipe = yaml.safe_load((ROOT / "recipes/text/ner_lora.yaml").read_text())
    args = recipe["model"]["init_args"]
    # the collapse to all-O: LoRA starts as the frozen encoder (B = 0), so early on the new head does the work,
    # and at the adapters' rate it learns the O prior first
    assert args["head_lr"] >= 5 * args["lr"]


def test_head_learning_rate_reaches_the_optimizer(tiny):
    from zoo.tasks.text import TokenClassifier

    model = TokenClassifier(encoder=tiny, tag_names=["O", "B-PER", "I-PER"], lr=1e-4, head_lr=1e-2,
                            peft={"method": "lora", "r": 2, "target_modules": ["query", "value"]})
    groups = model.parameter_groups()
    head = {id(p) for p in model.head.parameters()}
    rates = {g.get("lr", model.lr) for g in groups if any(id(p) in head for p in g["params"])}
    others = {g.get("lr", model.lr) for g in groups if not any(id(p) in head for p in g["params"])}
    assert rates == {1e-2} and others == {1e-4}


def test_token_classifier_that_predicts_no_entity_warns_after_the_epoch(tiny, tmp_path, caplog):
    from zoo.tasks.text import TokenClassifier

    data = TokenDataModule(dataset="ner_demo", tokenizer=tiny, max_length=32, max_samples=24, batch_size=8,
                           cache_dir=str(tmp_path / "c"))
    model = TokenClassifier(encoder=tiny, tag_names=data.class_names, lr=1e-9, scheduler="none")
    with torch.no_grad():
        model.head[1].bias[data.class_names.index("O")] = 100.0  # every word O, as after the collapse
    with caplog.at_level(logging.WARNING, logger="zoo.tasks"):
        quiet_trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0).fit(model, data)
    lines = [r.getMessage() for r in caplog.records if "predicted no entity" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("zoo: epoch 0: the token classifier predicted no entity at all")


# -- 3: CoNLL columns ---------------------------------------------------------------------------------------
def test_conll_with_tabs_keeps_ideographic_and_no_break_spaces_in_tokens(tmp_path):
    path = tmp_path / "ja.tsv"
    path.write_text("東京\tB-LOC\n\u3000\tI-LOC\n駅\tI-LOC\nNew\u00a0York\tB-LOC\n\n", encoding="utf-8")
    [(tokens, tags, line)] = read_conll(path)
    assert tokens == ["東京", "\u3000", "駅", "New\u00a0York"] and tags == ["B-LOC", "I-LOC", "I-LOC", "B-LOC"]
    spaced = tmp_path / "sp.conll"
    spaced.write_text("a\u3000b NN B-ORG\nc NN O\n", encoding="utf-8")
    assert read_conll(spaced)[0][0] == ["a\u3000b", "c"]


def test_a_whitespace_word_keeps_its_tag_and_the_spans_after_it(tiny, tmp_path):
    path = tmp_path / "ja.tsv"
    path.write_text("Tokyo\tB-LOC\n\u3000\tI-LOC\nstation\tI-LOC\nJohn\tB-PER\n\n" * 4, encoding="utf-8")
    data = TokenDataModule(train=str(path), val=str(path), test=str(path), tokenizer=tiny, max_length=32,
                           cache_dir=str(tmp_path / "c"))
    data.setup("fit")
    row = data.splits["test"][0]
    assert sum(label != -100 for label in row["labels"]) == 4  # one labelled position per word
    assert [row["text"][a:b] for a, b in row["word_spans"]] == ["Tokyo", "\u3000", "station", "John"]
    assert data.truncated["test"] == 0


# -- 4: bio: error | repair -----------------------------------------------------------------------------------
def test_orphan_inside_tag_error_names_the_option_and_repair_fixes_and_counts(tmp_path, caplog):
    path = tmp_path / "real.conll"
    path.write_text("John B-PER\nworks O\nat O\nAcme I-ORG\nCorp I-ORG\n\nParis I-LOC\n", encoding="utf-8")
    with pytest.raises(TextDataError, match=r"real\.conll line 4: tag 'I-ORG' follows 'O'.*set data\.bio: repair"):
        read_conll(path)
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        sents = read_conll(path, bio="repair")
    assert [tags for _, tags, _ in sents] == [["B-PER", "O", "O", "B-ORG", "I-ORG"], ["B-LOC"]]
    assert any("repaired 2 I- tag(s)" in r.getMessage() and "line 4" in r.getMessage() for r in caplog.records)
    with pytest.raises(TextDataError, match=r"data\.bio must be one of error, repair; got 'fix'"):
        TokenDataModule(train=str(path), bio="fix")


# -- 5, 6: image folders ------------------------------------------------------------------------------------
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
    with pytest.raises(ImageDataError, match=r"data\.test_folder .*test: class folder\(s\) bird do not occur"):
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
    assert rc == 2 and "zoo: error: data.folder + data.test_folder: 1 of 17 image file(s) cannot be read: " in err and str(bad) in err
    assert not list(Path("runs").rglob("*.ckpt"))


# -- 9: most_popular as documented ------------------------------------------------------------------------------
def test_the_documented_most_popular_test_command_works_and_does_not_compare_it_with_itself(capsys):
    command = "zoo test --config recipes/recsys/most_popular_ml100k.yaml --allow_untrained true"
    for where in ("recipes/recsys/most_popular_ml100k.yaml", "docs/recsys.md"):
        assert command in (ROOT / where).read_text(encoding="utf-8").replace("\n# ", " "), where
    Path("recipes").symlink_to(ROOT / "recipes")  # run it as written, from a folder with the recipes
    assert main([*command.split()[1:], "--trainer.enable_progress_bar", "false"]) == 0
    err = capsys.readouterr().err
    assert err.count("zoo: baseline: skipped, MostPopular is itself the baseline") == 1
    assert "does not beat the baseline" not in err
    [run] = Path("runs/most_popular_ml100k").iterdir()
    assert (run / "recsys_test_report.txt").is_file() and not list(run.rglob("baseline.json"))


# -- 11: early stopping says why ----------------------------------------------------------------------------
def _fit_with_scores(callbacks, scores=(0.5, 0.7, 0.6, 0.65, 0.9)):
    import lightning.pytorch as pl

    class Model(pl.LightningModule):
        monitor, monitor_mode = "val/score", "max"

        def __init__(self):
            super().__init__()
            self.w = torch.nn.Parameter(torch.zeros(1))

        def training_step(self, batch, i):
            return (self.w * batch[0]).sum()

        def validation_step(self, batch, i):
            self.log("val/score", scores[self.current_epoch])

        def configure_optimizers(self):
            return torch.optim.SGD(self.parameters(), lr=0.0)

    loader = torch.utils.data.DataLoader(torch.utils.data.TensorDataset(torch.ones(2, 1)), batch_size=2)
    quiet_trainer(max_epochs=len(scores), callbacks=callbacks, num_sanity_val_steps=0).fit(Model(), loader, loader)


STOP_LINE = ("zoo: early stopping at epoch 3: val/score did not improve by more than 0 for 2 validations "
             "(patience 2); best was epoch 1 (val/score = 0.7)")


def _stop_lines(capsys):
    return [line for line in capsys.readouterr().err.splitlines() if "early stopping" in line]


def test_early_stopping_says_which_metric_when_and_the_best_epoch(capsys):
    from zoo.callbacks import TaskEarlyStopping

    _fit_with_scores([TaskEarlyStopping(patience=2)])
    assert _stop_lines(capsys) == [STOP_LINE]


def test_lightnings_early_stopping_gets_the_same_line_from_the_notice(capsys):
    """The shipped recsys recipes and users' own recipes configure Lightning's class, which stops silently."""
    from lightning.pytorch.callbacks import EarlyStopping

    from zoo.callbacks import EarlyStoppingNotice

    _fit_with_scores([EarlyStopping(monitor="val/score", mode="max", patience=2)])
    assert _stop_lines(capsys) == []  # Lightning alone says nothing
    _fit_with_scores([EarlyStopping(monitor="val/score", mode="max", patience=2), EarlyStoppingNotice()])
    assert _stop_lines(capsys) == [STOP_LINE]
    # the notice before the callback in the list, and a stop on a threshold rather than patience
    _fit_with_scores([EarlyStoppingNotice(), EarlyStopping(monitor="val/score", mode="max", stopping_threshold=0.6)])
    assert _stop_lines(capsys) == ["zoo: early stopping at epoch 1: Stopping threshold reached: val/score = "
                                   "0.699999988079071 > 0.6; best was epoch 0 (val/score = 0.5)"]


def test_early_stopping_notice_is_silent_without_a_stop_and_does_not_repeat_zoos_own_line(capsys):
    from lightning.pytorch.callbacks import EarlyStopping

    from zoo.callbacks import EarlyStoppingNotice, TaskEarlyStopping

    _fit_with_scores([EarlyStopping(monitor="val/score", mode="max", patience=3), EarlyStoppingNotice()])
    assert _stop_lines(capsys) == []  # ran to max_epochs
    _fit_with_scores([TaskEarlyStopping(patience=2), EarlyStoppingNotice()])
    assert _stop_lines(capsys) == [STOP_LINE]


def test_zoo_fit_says_why_a_recipes_lightning_early_stopping_ended_it(tmp_path, capsys):
    """The shipped recsys recipes configure Lightning's EarlyStopping; zoo fit adds the notice to every run."""
    recipe = yaml.safe_load((ROOT / "recipes/recsys/bpr_ml100k.yaml").read_text())
    [stop] = recipe["trainer"]["callbacks"]
    assert stop["class_path"] == "lightning.pytorch.callbacks.EarlyStopping"
    stop["init_args"].update(patience=1, min_delta=1.0)  # NDCG cannot improve by 1: stops after the 2nd validation
    (tmp_path / "r.yaml").write_text(yaml.safe_dump(recipe))
    (tmp_path / "log.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + k) % 12}\n" for u in range(20)
                                                                     for k in range(6)))
    assert main(["fit", "--config", "r.yaml", "--data.init_args.dataset", "null", "--data.init_args.path", "log.csv",
                 "--data.init_args.batch_size", "64", "--trainer.max_epochs", "5", "--trainer.enable_progress_bar",
                 "false"]) == 0
    lines = [line for line in capsys.readouterr().err.splitlines() if "early stopping" in line]
    assert len(lines) == 1 and lines[0].startswith("zoo: early stopping at epoch 1: val/ndcg@10 did not improve by "
                                                   "more than 1 for 1 validations (patience 1); best was epoch 0 (")


# -- 15: the recipe's time line -------------------------------------------------------------------------------
def test_the_recipe_time_line_is_not_printed_for_a_fast_dev_run(tmp_path, capsys):
    (tmp_path / "recipes/vision").mkdir(parents=True)
    (tmp_path / "recipes/vision/long.yaml").write_text((ROOT / "recipes/vision/digits_tiny.yaml").read_text())
    (tmp_path / "recipes/results.yaml").write_text("machine: 2 CPU cores\nrecipes:\n  vision/long.yaml: {cpu_minutes: 50}\n")
    common = ["fit", "--config", "recipes/vision/long.yaml", "--trainer.enable_progress_bar", "false"]
    assert main([*common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]) == 0
    assert "zoo: this recipe trains for about 50 CPU-minutes on 2 CPU cores" in capsys.readouterr().err
    assert main([*common, "--trainer.fast_dev_run", "true"]) == 0
    assert "trains for about" not in capsys.readouterr().err


# -- 12: metrics figure layout ------------------------------------------------------------------------------
def test_metrics_png_is_a_grid_with_one_panel_per_at_k_metric(tmp_path):
    from zoo.reporting.curves import MAX_COLUMNS, curve_panels, plot_curves

    names = [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "hit_rate") for k in (5, 10, 20)] + ["mrr", "auc",
                                                                                                     "coverage"]
    history = [{"epoch": float(e), **{f"val/{n}": 0.1 * e for n in names}} for e in range(3)]
    panels = curve_panels(history, names)
    assert [t for t, _ in panels] == ["auc", "coverage", "hit_rate@K", "mrr", "ndcg@K", "precision@K", "recall@K"]
    assert [label for label, *_ in dict(panels)["ndcg@K"]] == ["val @5", "val @10", "val @20"]
    path = plot_curves(history, tmp_path / "m.png", names, "metrics")
    width, height = Image.open(path).size
    assert (width, height) == (450 * MAX_COLUMNS, 360 * math.ceil(7 / MAX_COLUMNS))  # 15 metrics: 1800 x 720


# -- 13: samples/s ------------------------------------------------------------------------------------------
def test_samples_per_second_is_samples_over_wall_time_of_the_last_steps():
    from zoo.callbacks.progress import SamplesPerSecond

    speed = SamplesPerSecond(window=4)
    t = 100.0
    speed.update(32, t)
    assert speed.rate is None  # the first step only opens the window
    for dt in (0.1, 3.0, 0.1, 3.0, 0.1, 3.0):  # uneven steps: a mean of per-step rates says ~161
        t += dt
        speed.update(32, t)
    assert speed.rate == pytest.approx(4 * 32 / (0.1 + 3.0 + 0.1 + 3.0))  # the last 4 steps, 6.2 s
    speed.reset()
    speed.update(32, t + 50.0)  # after validation or at an epoch start the window opens again
    assert speed.rate is None


# -- 14: noise ----------------------------------------------------------------------------------------------
NOISE = ["litlogger", "litmodels", "LeafSpec", "dirpath has changed", "is_gradient_checkpointing",
         "callbacks list already contains a Timer", "LightningCLI's args parameter",
         "is not supported by the model summary", "was called without a model", "there is no last checkpoint available",
         "callbacks used to create the checkpoint need to be provided", "`weights_only` was not set",
         # recommenders (issue 15, point 14 re-tried): caused by zoo's recsys task / loaders, nothing a user can change
         "You have overridden `transfer_batch_to_device`", "`IterableDataset` has `__len__` defined",
         # zoo's own warnings are one `zoo:` line, not Python's "file.py:N: UserWarning: ..." and its source line
         "UserWarning", "rank_zero_warn("]


def test_a_tiny_fit_and_resume_print_none_of_the_noise(tiny, tmp_path, capfd):
    args = ["--config", str(ROOT / "recipes/text/ner_lora.yaml"), "--model.init_args.encoder", tiny,
            "--data.init_args.tokenizer", tiny, "--data.init_args.max_samples", "16", "--data.init_args.batch_size",
            "8", "--data.init_args.cache_dir", str(tmp_path / "c"), "--trainer.default_root_dir", "runs",
            "--trainer.log_every_n_steps", "1"]
    assert main(["fit", *args, "--trainer.max_epochs", "1"]) == 0
    last = next(Path("runs").rglob("last.ckpt"))
    assert main(["fit", *args, "--trainer.max_epochs", "2", "--ckpt_path", str(last)]) == 0
    out = capfd.readouterr()
    printed = out.out + out.err
    assert "Epoch 1" in printed or "epoch" in printed.lower()  # the run itself still reports
    assert [s for s in NOISE if s in printed] == []


def test_a_real_zoo_fit_process_prints_none_of_the_noise(tmp_path):
    """As a user runs it: a separate process, Lightning's own console logging set up by the CLI (in-process tests
    do not see Lightning's INFO lines, e.g. the checkpoint connector's "`weights_only` was not set")."""
    import subprocess
    import sys

    out = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(ROOT / "recipes/vision/digits_tiny.yaml"),
                          "--trainer.max_epochs", "1", "--trainer.default_root_dir", str(tmp_path / "runs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-3000:]
    assert "Trainable params" in printed  # Lightning's console output is there to be checked
    assert [s for s in NOISE if s in printed] == []


def test_a_real_recommender_fit_process_prints_none_of_the_noise(tmp_path):
    """A recsys recipe on the user's own tiny log and catalogue (one item without text), in its own process."""
    import subprocess
    import sys

    (tmp_path / "log.csv").write_text("user_id,item_id\n" + "".join(f"u{u},i{(u + k) % 12}\n" for u in range(20)
                                                                     for k in range(6)))
    (tmp_path / "items.csv").write_text("item_id,title\n" + "".join(f"i{i},{'' if i == 7 else f'Film {i}'}\n"
                                                                      for i in range(12)))
    out = subprocess.run([sys.executable, "-m", "zoo.cli", "fit", "--config", str(ROOT / "recipes/recsys/bpr_ml100k.yaml"),
                          "--data.init_args.dataset", "null", "--data.init_args.path", "log.csv",
                          "--data.init_args.items_path", "items.csv", "--data.init_args.batch_size", "32",
                          "--trainer.max_epochs", "1", "--trainer.log_every_n_steps", "1",
                          "--trainer.default_root_dir", str(tmp_path / "runs")],
                         cwd=tmp_path, capture_output=True, text=True, timeout=600,
                         env={**os.environ, "PYTHONPATH": str(ROOT)})
    printed = out.stdout + out.stderr
    assert out.returncode == 0, printed[-3000:]
    assert "zoo: items.csv: item text from column(s) title, e.g.\n  'i0': 'title: Film 0.'" in printed
    assert ("\nzoo: items.csv: 1 of 12 item(s) have an empty text (all of title blank), e.g. ['i7']; text-aware "
            "models see only their ID\n") in printed
    assert [s for s in NOISE if s in printed] == []
