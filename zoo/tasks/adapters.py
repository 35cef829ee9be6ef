"""Adapter-only checkpoints, shared by every task that tunes a Hugging Face encoder with PEFT.

A task mixes :class:`AdapterCheckpoints` in before its LightningModule base and says which of its encoders uses
adapters (:meth:`AdapterCheckpoints.uses_adapters`). Its checkpoints then hold only the trainable tensors (adapters
and heads) plus the buffers; loading rebuilds the frozen base from the encoder named in the hyper-parameters and
lays the saved tensors on top (peft's "the checkpoint holds only what was trained").
"""

from __future__ import annotations

from typing import Any

from zoo.backbones.text import drop_frozen_weights, restore_frozen_weights


class AdapterCheckpoints:
    """Mixin for a ``ZooTask`` subclass: adapter-only ``state_dict`` in checkpoints when adapters are in use."""

    def uses_adapters(self) -> bool:
        """Whether a frozen base encoder can be left out of checkpoints."""
        raise NotImplementedError

    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        if self.uses_adapters():
            drop_frozen_weights(checkpoint, self)  # type: ignore[arg-type]

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        restore_frozen_weights(checkpoint, self)  # type: ignore[arg-type]


__all__ = ["AdapterCheckpoints"]
