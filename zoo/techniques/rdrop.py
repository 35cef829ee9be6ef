"""R-Drop (Liang et al. 2021): two dropout samples of the same model should agree."""

from __future__ import annotations

from typing import Any

from torch import Tensor

from zoo.contract import ZooTechnique, frozen_buffers
from zoo.registry import CALLBACKS
from zoo.techniques.checks import check_positive
from zoo.techniques.divergence import output_divergence


def rdrop_term(out1: Any, out2: Any) -> Tensor:
    """R-Drop (Liang et al. 2021): symmetric KL between two dropout samples of the same model (MSE for scores)."""
    return output_divergence(out1, out2, symmetric=True)


@CALLBACKS.register("rdrop", tags=("technique", "regularization"), example={"alpha": 1.0},
                    summary="R-Drop: symmetric KL between two dropout forwards")
class RDrop(ZooTechnique):
    """Runs ``forward_embedded`` a second time on the same ``emb`` and adds ``alpha * symKL(out1, out2)``
    (MSE for score outputs), term ``rdrop``. Does nothing useful on a model without dropout; it applies to
    every task, so it needs no ``check_compatible`` beyond the contract, and keeps no state beyond the gates'.

    Args:
        alpha: weight of the divergence term (> 0).
    """

    name = "rdrop"

    def __init__(self, alpha: float = 1.0, start_step: int = 0, every_n_steps: int = 1,
                 probability: float = 1.0) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive("RDrop", "alpha", alpha, "the weight of the KL term")
        self.alpha = float(alpha)

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        # the second forward must not move BatchNorm statistics a second time per step
        with frozen_buffers(module):
            out2 = module.forward_embedded(emb, batch)
        return {self.name: self.alpha * rdrop_term(out, out2)}


__all__ = ["RDrop", "rdrop_term"]
