"""L2-SP (Li et al. 2018): regularize fine-tuning towards the starting point instead of towards zero."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo.contract import ZooTechnique
from zoo.registry import CALLBACKS
from zoo.techniques.checks import check_non_negative, check_positive


def l2sp_penalty(params: dict[str, Tensor], reference: dict[str, Tensor], alpha: float, beta: float = 0.0) -> Tensor:
    """L2-SP (Li et al. 2018): ``alpha/2 * ||w - w0||^2`` over weights with a starting point, ``beta/2 * ||w||^2``
    over the others (new heads)."""
    terms = []
    for name, p in params.items():
        ref = reference.get(name)
        if ref is not None:
            terms.append(0.5 * alpha * (p.float() - ref.to(p.device, torch.float32)).pow(2).sum())
        elif beta:
            terms.append(0.5 * beta * p.float().pow(2).sum())
    if not terms:
        return torch.zeros(())
    return torch.stack(terms).sum()


@CALLBACKS.register("l2sp", tags=("technique", "regularization"), example={"alpha": 0.01},
                    summary="L2-SP: pull the weights towards their values at the start of fit (pretrained)")
class L2SP(ZooTechnique):
    """Adds ``alpha/2 * ||w - w0||^2`` (term ``l2sp``), ``w0`` the weights when fit starts (the pretrained
    backbone). Parameters whose name starts with one of ``exclude`` (new heads) get ``beta/2 * ||w||^2``
    instead. ``w0`` is kept in this callback's state, so a resumed run pulls towards the same point.
    """

    name = "l2sp"

    def __init__(self, alpha: float = 0.01, beta: float = 0.0, exclude: list[str] | None = None, start_step: int = 0,
                 every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive("L2SP", "alpha", alpha, "the weight of the pull towards the starting weights")
        check_non_negative("L2SP", "beta", beta, "the weight decay of parameters without a starting point")
        self.alpha, self.beta = float(alpha), float(beta)
        self.exclude = tuple(exclude or ())
        self._reference: dict[str, Tensor] | None = None

    # on_fit_start, not setup: callbacks are set up before the module, which may build its network from the
    # data in its own setup; a checkpoint's reference (load_state_dict) is restored before this runs
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self._reference is None:
            self._reference = {n: p.detach().clone() for n, p in pl_module.named_parameters()
                               if p.requires_grad and not n.startswith(self.exclude)}

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        params = {n: p for n, p in module.named_parameters() if p.requires_grad}
        return {self.name: l2sp_penalty(params, self._reference or {}, self.alpha, self.beta).to(loss.device)}

    def state_dict(self) -> dict[str, Any]:
        state = super().state_dict()
        if self._reference is not None:
            state["reference"] = {k: v.cpu() for k, v in self._reference.items()}
        return state

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "reference" in state_dict:
            self._reference = dict(state_dict["reference"])


__all__ = ["L2SP", "l2sp_penalty"]
