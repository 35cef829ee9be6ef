"""A Rich progress bar that also shows training samples/s (over the last steps, see :class:`SamplesPerSecond`)."""

from __future__ import annotations

import time
from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import RichProgressBar

from zoo.contract import batch_size_of
from zoo.registry import CALLBACKS


class SamplesPerSecond:
    """Training samples/s over the last ``window`` steps: the samples of those steps divided by the wall time
    they took, end to end (loading, forward, backward, optimizer, logging), so it equals it/s times the batch
    size over the same steps. A mean of per-step rates would not: it weighs fast steps up (25.2 shown against
    0.32 it/s x 32). The first step of an epoch, which pays for warm-up and loader start, opens the window."""

    def __init__(self, window: int = 20) -> None:
        from collections import deque

        self.window = window
        self._ends: deque[float] = deque(maxlen=window + 1)
        self._samples: deque[int] = deque(maxlen=window)

    def reset(self) -> None:
        self._ends.clear()
        self._samples.clear()

    @property
    def rate(self) -> float | None:
        if len(self._ends) < 2 or self._ends[-1] <= self._ends[0]:
            return None
        steps = len(self._ends) - 1
        return sum(list(self._samples)[-steps:]) / (self._ends[-1] - self._ends[0])

    def update(self, samples: int, now: float) -> float | None:
        if self._ends:
            self._samples.append(samples)
        self._ends.append(now)
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

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        super().on_validation_end(trainer, pl_module)
        self.speed.reset()  # a validation inside the epoch is not training time

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
