"""Early stopping on the task's headline metric, so a recipe need not know metric names."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping

from zoo.contract import trait
from zoo.registry import CALLBACKS


@CALLBACKS.register("early_stopping", tags=("training",),
                    summary="Lightning EarlyStopping on the task's headline metric (model.monitor) by default")
class TaskEarlyStopping(EarlyStopping):
    """Lightning's ``EarlyStopping``; ``monitor`` and ``mode`` default to the module's ``monitor`` /
    ``monitor_mode`` (val macro-F1 for classifiers, val NDCG@10 for recommenders, ...), read at setup."""

    def __init__(self, monitor: str | None = None, mode: str | None = None, patience: int = 3, min_delta: float = 0.0,
                 **kwargs: Any) -> None:
        super().__init__(monitor=monitor or "val/loss", mode=mode or "min", patience=patience, min_delta=min_delta,
                         **kwargs)
        self._monitor_given, self._mode_given = monitor is not None, mode is not None
        self._abs_min_delta = abs(min_delta)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self._monitor_given:
            self.monitor = trait(pl_module, "monitor") or self.monitor
        if not self._mode_given:
            self.mode = trait(pl_module, "monitor_mode") or self.mode
            # EarlyStopping fixes the sign of min_delta and the starting best score from mode in __init__
            self.min_delta = self._abs_min_delta * (1 if self.mode == "max" else -1)
            self.best_score = self.best_score.new_tensor(float("-inf") if self.mode == "max" else float("inf"))
        super().setup(trainer, pl_module, stage)


__all__ = ["TaskEarlyStopping"]
