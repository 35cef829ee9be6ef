"""Exponential moving average of the weights: Lightning's ``EMAWeightAveraging``, taken once the model exists."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
from lightning.pytorch.callbacks import EMAWeightAveraging

from zoo.registry import CALLBACKS


@CALLBACKS.register("ema", tags=("regularization",), summary="exponential moving average of the weights (Lightning's)")
class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``, with the average copy taken after the module's own ``setup``.

    Lightning's ``setup`` copies the model into an ``AveragedModel``, but callbacks are set up before the
    module, and a zoo task that learns its classes from the data builds its network in its ``setup``: a copy
    taken then would have no head. So ``setup`` only remembers that a fit starts, and the copy is taken at the
    first hook that runs after every ``setup``: ``on_load_checkpoint`` when a checkpoint is restored (it needs
    the copy to restore the average into), else ``on_fit_start``.
    """

    # a class default, not an __init__ override: the parent's __init__ signature is the CLI schema
    _copy_pending = False

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self._copy_pending = stage == "fit"

    def _take_copy(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._copy_pending:
            self._copy_pending = False
            super().setup(trainer, pl_module, "fit")

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._take_copy(trainer, pl_module)
        super().on_load_checkpoint(trainer, pl_module, checkpoint)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._take_copy(trainer, pl_module)
        super().on_fit_start(trainer, pl_module)


__all__ = ["EMA"]
