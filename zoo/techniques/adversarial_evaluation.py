"""Robustness at test time: accuracy of a classifier under an FGSM / PGD attack on its embedding."""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch

from zoo.contract import (
    TechniqueNotApplicableError,
    batch_size_of,
    clone_tree,
    hard_targets,
    require_contract,
    trait,
    tree_map,
)
from zoo.registry import CALLBACKS
from zoo.techniques.adversarial import apply_delta, pgd_delta, task_loss_at
from zoo.techniques.checks import (
    TechniqueConfigError,
    check_norm,
    check_positive,
    check_steps,
    parse_clamp,
    resolve_bounds,
)


@CALLBACKS.register("adversarial_evaluation", tags=("evaluation", "adversarial"),
                    summary="zoo test: also report accuracy under an FGSM / PGD attack of given epsilons")
class AdversarialEvaluation(pl.Callback):
    """On test batches, attack ``emb`` and log ``test/robust_acc@<eps>`` next to the clean metrics.

    ``steps: 1`` is FGSM (one signed step of size eps with ``norm: linf``); more steps is PGD with step size
    ``2.5 * eps / steps``. The attack sees the model in eval mode, as deployed. Classifiers only.

    Args:
        eps: one radius or a list of radii (pixel units for images).
        steps: attack steps (1 = FGSM).
        norm: ``linf`` (default, the usual image threat model) or ``l2``.
        clamp: as for the training techniques (``auto``: pixels stay in [0, 1]).
    """

    def __init__(self, eps: float | list[float] = 0.1, steps: int = 1, norm: str = "linf", clamp: Any = "auto") -> None:
        epsilons = [eps] if isinstance(eps, int | float) else list(eps)
        if not epsilons:
            raise TechniqueConfigError("AdversarialEvaluation: eps must be a number or a non-empty list of numbers")
        for e in epsilons:
            check_positive("AdversarialEvaluation", "eps", e, "the attack radius in embedding units")
        check_steps("AdversarialEvaluation", steps, "attack steps, 1 = FGSM")
        check_norm("AdversarialEvaluation", norm)
        self.epsilons = [float(e) for e in epsilons]
        self.steps, self.norm = steps, norm
        self.clamp = parse_clamp("AdversarialEvaluation", clamp)

    def check_compatible(self, module: Any) -> None:
        require_contract(module, "AdversarialEvaluation")
        if trait(module, "target_key") is None:
            raise TechniqueNotApplicableError(
                f"AdversarialEvaluation reports classification accuracy; {type(module).__name__} is not a "
                "classifier (no target_key)")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        self.check_compatible(pl_module)

    @staticmethod
    def metric_name(eps: float) -> str:
        return f"test/robust_acc@{eps:g}"

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        bounds = resolve_bounds(self.clamp, pl_module)
        # Lightning evaluates under inference_mode; an attack needs autograd, on normal (cloned) tensors.
        with torch.inference_mode(False), torch.enable_grad():
            batch = clone_tree(batch)
            target = hard_targets(batch[trait(pl_module, "target_key")])
            with trainer.precision_plugin.forward_context():
                emb = tree_map(lambda e: e.detach().requires_grad_(True), pl_module.embed(batch))
                loss_fn = task_loss_at(pl_module, batch)
                for eps in self.epsilons:
                    alpha = eps if self.steps == 1 else 2.5 * eps / self.steps
                    delta = pgd_delta(loss_fn, emb, eps, self.steps, alpha, self.norm, bounds)
                    with torch.no_grad():
                        logits = pl_module.forward_embedded(apply_delta(emb, delta, bounds), batch)
                    acc = (logits.argmax(-1) == target).float().mean()
                    pl_module.log(self.metric_name(eps), acc, on_step=False, on_epoch=True,
                                  batch_size=batch_size_of(batch), sync_dist=True)


__all__ = ["AdversarialEvaluation"]
