"""A Rich progress bar that also shows training samples/s."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar

from zoo.contract import batch_size_of
from zoo.registry import CALLBACKS


class SamplesPerSecond:
    """Exponential moving average of samples/s over training batches (the first batch, which pays for
    warm-up and compilation, is not counted)."""

    def __init__(self, smoothing: float = 0.9) -> None:
        self.smoothing = smoothing
        self.rate: float | None = None
        self._last: float | None = None

    def reset(self) -> None:
        self._last = None

    def update(self, samples: int, now: float) -> float | None:
        if self._last is not None and now > self._last:
            rate = samples / (now - self._last)
            self.rate = rate if self.rate is None else self.smoothing * self.rate + (1 - self.smoothing) * rate
        self._last = now
        return self.rate


@CALLBACKS.register("rich_progress", summary="Rich progress bar with samples/s (zoo's default when rich is installed)")
class ZooProgressBar(RichProgressBar):
    """Lightning's ``RichProgressBar`` plus ``samples/s`` (per process: multiply by the number of processes
    for the global rate under DDP)."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        super().__init__(*args, **kwargs)
        self.speed = SamplesPerSecond()

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_train_epoch_start(trainer, pl_module)
        self.speed.reset()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                           batch_idx: int) -> None:
        self.speed.update(int(batch_size_of(batch)), time.perf_counter())
        super().on_train_batch_end(trainer, pl_module, outputs, batch, batch_idx)

    def get_metrics(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> dict[str, Any]:
        metrics = super().get_metrics(trainer, pl_module)
        if self.speed.rate is not None:
            metrics["samples/s"] = f"{self.speed.rate:.1f}"
        return metrics


__all__ = ["SamplesPerSecond", "ZooProgressBar"]
