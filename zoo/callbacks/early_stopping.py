"""Early stopping on the task's headline metric, so a recipe need not know metric names, and one line saying why
any ``EarlyStopping`` stopped a fit."""

from __future__ import annotations

import sys
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EarlyStopping
from lightning.pytorch.callbacks.early_stopping import EarlyStoppingReason

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
        return stop_summary(self, self.best_epoch)


def stop_summary(stop: EarlyStopping, best_epoch: int | None) -> str:
    """The one line for an ``EarlyStopping`` (Lightning's or zoo's) that stopped training."""
    why = (stop.stopping_reason_message or "the stopping condition was met").replace(" Signaling Trainer to stop.", "")
    why = why.rstrip(".")
    if stop.wait_count >= stop.patience:
        why = (f"{stop.monitor} did not improve by more than {abs(stop.min_delta):g} for {stop.wait_count} "
               f"validations (patience {stop.patience})")
    best = f"{stop.monitor} = {float(stop.best_score):.4g}"
    where = f"epoch {best_epoch}" if best_epoch is not None else "no epoch"
    return f"zoo: early stopping at epoch {stop.stopped_epoch}: {why}; best was {where} ({best})"


class EarlyStoppingNotice(pl.Callback):
    """At the end of ``fit``, the one line of :func:`stop_summary` for each ``EarlyStopping`` in the trainer that
    stopped this fit: Lightning's own class stops silently (its reason is a debug-level log line), and most
    recipes, zoo's and users', configure that class. :class:`TaskEarlyStopping` announces itself when it stops,
    so it is skipped here. ``zoo fit`` adds this callback to every run."""

    def __init__(self) -> None:
        #: monitor -> [(epoch, value)] of every validation, to name the best epoch (EarlyStopping keeps only the
        #: best value); kept in checkpoints so a resumed run still knows epochs before the resume
        self.history: dict[str, list[tuple[int, float]]] = {}
        self._before: dict[int, tuple[Any, ...]] = {}

    @staticmethod
    def _watched(trainer: pl.Trainer) -> list[EarlyStopping]:
        return [c for c in trainer.early_stopping_callbacks if not isinstance(c, TaskEarlyStopping)]

    @staticmethod
    def _state(stop: EarlyStopping) -> tuple[Any, ...]:
        return stop.stopped_epoch, stop.stopping_reason, stop.stopping_reason_message

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        # a resumed run restores a stop of the run it continues: only a change during this fit is news
        self._before = {id(c): self._state(c) for c in self._watched(trainer)}

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.sanity_checking:
            return
        for stop in self._watched(trainer):
            value = trainer.callback_metrics.get(stop.monitor)
            if value is not None and getattr(value, "numel", lambda: 1)() == 1:
                self.history.setdefault(stop.monitor, []).append((trainer.current_epoch, float(value)))

    def on_train_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not trainer.should_stop or not trainer.is_global_zero:
            return
        for stop in self._watched(trainer):
            if self._state(stop) != self._before.get(id(stop), (0, EarlyStoppingReason.NOT_STOPPED, None)):
                print(stop_summary(stop, self.best_epoch(stop)), file=sys.stderr)

    def best_epoch(self, stop: EarlyStopping) -> int | None:
        """The first validated epoch whose value is the callback's best score (it keeps the value, not the epoch)."""
        best = float(stop.best_score)
        return next((epoch for epoch, value in self.history.get(stop.monitor, []) if value == best), None)

    def state_dict(self) -> dict[str, Any]:  # nothing in checkpoints of runs without an EarlyStopping
        return {"history": {k: [list(r) for r in v] for k, v in self.history.items()}} if self.history else {}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = {k: [(int(e), float(v)) for e, v in rows] for k, rows in state_dict.get("history", {}).items()}


__all__ = ["EarlyStoppingNotice", "TaskEarlyStopping", "stop_summary"]
