"""The hook every training technique plugs into.

A technique is a Lightning ``Callback`` that a :class:`~zoo.tasks.base.ZooTask` finds in ``trainer.callbacks``.
Inside the task's single ``training_step`` it may rewrite the batch (mixup) and add named loss terms computed
from the continuous input ``emb`` (adversarial training), a second forward (R-Drop), a teacher (distillation) or
the weights (L2-SP). The task sums every term and Lightning does one backward, so DDP, AMP and gradient
accumulation need nothing special.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo.errors import ConfigError, ZooError

if TYPE_CHECKING:
    from zoo.tasks.base import ZooTask


class TechniqueNotApplicableError(ZooError, TypeError, ValueError):
    """A technique was configured on a module it cannot work with."""


class ZooTechnique(pl.Callback):
    #: short name used in logged loss terms: ``train/loss_<name>``
    name: str = "technique"
    #: set when ``loss_terms`` needs ``d loss / d emb`` (adversarial methods)
    needs_embedding_grad: bool = False

    def __init__(self, start_step: int = 0, every_n_steps: int = 1, probability: float = 1.0) -> None:
        if start_step < 0:
            raise ConfigError(f"{type(self).__name__}: start_step must be >= 0, got {start_step}")
        if every_n_steps < 1:
            raise ConfigError(f"{type(self).__name__}: every_n_steps must be >= 1, got {every_n_steps}")
        if not 0.0 <= probability <= 1.0:
            raise ConfigError(f"{type(self).__name__}: probability must be in [0, 1], got {probability}")
        self.start_step = start_step
        self.every_n_steps = every_n_steps
        self.probability = probability
        self._generator = torch.Generator().manual_seed(0)

    # -- wiring ---------------------------------------------------------------------------------------
    def check_compatible(self, module: pl.LightningModule) -> None:
        """Raise :class:`TechniqueNotApplicableError` naming what is missing."""
        from zoo.tasks.base import implements_contract

        missing = implements_contract(module)
        if missing:
            raise TechniqueNotApplicableError(
                f"{type(self).__name__} needs a module implementing the zoo task contract "
                f"(embed, forward_embedded, task_loss); {type(module).__name__} lacks {', '.join(missing)}"
            )

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.check_compatible(pl_module)

    def is_active(self, module: ZooTask) -> bool:
        """Warm-up, frequency and probability gates, so a user can bound what a technique costs."""
        step = module.global_step
        if step < self.start_step or (step - self.start_step) % self.every_n_steps:
            return False
        if self.probability < 1.0:
            return bool(torch.rand((), generator=self._generator) < self.probability)
        return True

    # -- the two things a technique may do ------------------------------------------------------------
    def transform_batch(self, module: ZooTask, batch: Any) -> Any:
        return batch

    def transform_embedding(self, module: ZooTask, batch: Any, emb: Any) -> Any:
        """Rewrite what ``embed`` returned (mixup of token embeddings); never in place."""
        return emb

    def loss_terms(self, module: ZooTask, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        return {}

    # -- state ----------------------------------------------------------------------------------------
    def state_dict(self) -> dict[str, Any]:
        return {"generator": self._generator.get_state()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if "generator" in state_dict:
            self._generator.set_state(state_dict["generator"])
