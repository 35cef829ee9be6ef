"""The eager model as export sees it: PEFT adapters merged, its fitted temperature, and the error every export
step raises. What the export of a kind of model holds (inputs, preprocessing, sample batches) is its family's
answer (:mod:`zoo.inference.family`)."""

from __future__ import annotations

import copy
from typing import Any

from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.tasks.text.encoder import EncoderMixin


class ExportError(ZooError, ValueError):
    """A model, source or setting that cannot be exported; the message says which and what is accepted."""


def merged(model: Any) -> Any:
    """The model with PEFT adapters merged into its encoder (a copy; the model itself is left as it is)."""
    if isinstance(model, EncoderMixin) and model.uses_adapters():
        model = copy.deepcopy(model)
        model.encoder = model.encoder.merge_and_unload()
        model.peft_spec = None
        model.hparams["peft"] = None
    return model.eval()


def temperature_of(model: nn.Module) -> list[float]:
    """The fitted temperature if the model has one (calibration), else the identity."""
    t = model.state_dict().get("temperature")
    return [float(x) for x in t.flatten()] if isinstance(t, Tensor) and t.numel() else [1.0]


__all__ = ["ExportError", "merged", "temperature_of"]
