"""Early stopping says why it stopped: which metric, when, and the best epoch, for zoo's own callback and for
Lightning's (which the shipped recsys recipes configure and which stops silently)."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
import yaml

from tests.common.helpers import quiet_trainer
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


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


@pytest.mark.slow
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
