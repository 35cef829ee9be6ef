"""Early stopping on the task's headline metric, so a recipe need not know metric names."""

from __future__ import annotations

import sys
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
        #: the epoch whose score is ``best_score`` (None before the first check)
        self.best_epoch: int | None = None
        self._announced = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if not self._monitor_given:
            self.monitor = trait(pl_module, "monitor") or self.monitor
        if not self._mode_given:
            self.mode = trait(pl_module, "monitor_mode") or self.mode
            # EarlyStopping fixes the sign of min_delta and the starting best score from mode in __init__
            self.min_delta = self._abs_min_delta * (1 if self.mode == "max" else -1)
            self.best_score = self.best_score.new_tensor(float("-inf") if self.mode == "max" else float("inf"))
        super().setup(trainer, pl_module, stage)

    # Lightning checks in one of these two hooks (check_on_train_epoch_end); both are wrapped to see the result
    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = (float(self.best_score), trainer.should_stop)
        super().on_validation_end(trainer, pl_module)
        self._after_check(trainer, *before)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        before = (float(self.best_score), trainer.should_stop)
        super().on_train_epoch_end(trainer, pl_module)
        self._after_check(trainer, *before)

    def _after_check(self, trainer: pl.Trainer, best_before: float, stopping_before: bool) -> None:
        if float(self.best_score) != best_before:
            self.best_epoch = trainer.current_epoch
        # stopped_epoch is set on every rank once any rank decides; should_stop alone may be max_time's doing
        stopped_here = not stopping_before and trainer.should_stop and self.stopped_epoch == trainer.current_epoch
        if stopped_here and not self._announced:
            self._announced = True
            if trainer.is_global_zero:
                print(self.summary(), file=sys.stderr)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "best_epoch": self.best_epoch}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        state = dict(state_dict)
        self.best_epoch = state.pop("best_epoch", None)
        super().load_state_dict(state)

    def summary(self) -> str:
        """One line: which metric stopped training, at which epoch, and which epoch was best."""
        why = self.stopping_reason_message or ""
        if self.wait_count >= self.patience:
            why = (f"{self.monitor} did not improve by more than {self._abs_min_delta:g} for {self.wait_count} "
                   f"validations (patience {self.patience})")
        best = f"{self.monitor} = {float(self.best_score):.4g}"
        where = f"epoch {self.best_epoch}" if self.best_epoch is not None else "no epoch"
        return f"zoo: early stopping at epoch {self.stopped_epoch}: {why}; best was {where} ({best})"


__all__ = ["TaskEarlyStopping"]
