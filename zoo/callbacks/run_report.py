"""Artifacts a person opens after a run: loss / metric curves after fit, the task's test report after test."""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from zoo.contract import task_hook
from zoo.registry import CALLBACKS

LOSS_KEYS = ["loss"]


def run_dir(trainer: pl.Trainer) -> Path:
    """Where a run's artifacts go: the first logger's versioned folder, else ``default_root_dir``.

    Loggers without a versioned folder of their own (W&B: ``trainer.log_dir`` is the shared ``save_dir``) use
    ``save_dir/name/version``, the folder Lightning's ModelCheckpoint puts their checkpoints in."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    logger = trainer.logger
    if logger is not None and not isinstance(logger, CSVLogger | TensorBoardLogger) and logger.save_dir:
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(logger.save_dir) / str(logger.name) / version
    return Path(trainer.log_dir or trainer.default_root_dir)


@CALLBACKS.register("run_report", summary="loss/metric curve PNGs after fit; confusion matrix and report after test")
class RunReport(pl.Callback):
    """Keeps a per-epoch history of logged scalars and writes:

    * ``curves_loss.png`` and ``curves_metrics.png`` at the end of fit;
    * whatever the task's ``write_test_report`` writes (confusion matrix, per-class report) after test.
    """

    def __init__(self, metric_keys: list[str] | None = None) -> None:
        self.metric_keys = metric_keys
        self.history: list[dict[str, float]] = []
        self._validated_epoch = -1

    def _record(self, trainer: pl.Trainer, epoch: int) -> None:
        prefixes = ("train/", "val/") if self._validated_epoch == epoch else ("train/",)
        row: dict[str, float] = {"epoch": float(epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefixes) and getattr(value, "numel", lambda: 1)() == 1:
                v = float(value)
                if math.isfinite(v):
                    row[key] = v
        if not self.history or self.history[-1]["epoch"] != row["epoch"]:
            self.history.append(row)

    # A module logs its epoch-level metrics in its own epoch-end hooks, which Lightning calls after the
    # callbacks' hooks; so epoch e is read when epoch e + 1 starts, or when fit ends.
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._record(trainer, trainer.current_epoch - 1)

    # not @rank_zero_only: trainer.log_dir is a broadcast under DDP, so every rank must ask for it
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        if trainer.current_epoch > 0:
            self._record(trainer, trainer.current_epoch - 1)
        if not trainer.is_global_zero:
            return
        _write_data_checks(trainer, out)
        if not self.history or trainer.fast_dev_run:
            return
        from zoo.reporting.curves import plot_curves

        plot_curves(self.history, out / "curves_loss.png", LOSS_KEYS, "loss")
        keys = self.metric_keys or sorted(
            {k.split("/", 1)[1] for row in self.history for k in row
             if "/" in k and "loss" not in k and k.count("/") == 1}
        )
        plot_curves(self.history, out / "curves_metrics.png", keys, "metrics")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)  # a collective under DDP: every rank
        if not trainer.is_global_zero:
            return
        task_hook(pl_module, "write_test_report")(out)  # counted in ModelCardWriter's "wrote N files" line
        _write_data_checks(trainer, out)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


def _write_data_checks(trainer: pl.Trainer, out: Path) -> None:
    """The datamodule's data-check figures (text: vocabulary fit, long texts) as ``data_checks.json``."""
    checks = getattr(trainer.datamodule, "data_checks", None)
    if checks and not trainer.fast_dev_run:
        import json

        from zoo.reporting.io import atomic_write_text

        out.mkdir(parents=True, exist_ok=True)
        atomic_write_text(out / "data_checks.json", json.dumps(checks, indent=2, ensure_ascii=False))


__all__ = ["LOSS_KEYS", "RunReport", "run_dir"]
