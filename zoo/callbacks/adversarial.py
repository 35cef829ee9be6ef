"""Adversarial training on whatever ``embed`` returns: token embeddings (text), pixels (images) or user / item
vectors (recommendation, i.e. APR). Plain functions do the math; thin callbacks wire them into the one training
step of :mod:`zoo.tasks.base` as extra loss terms, so a step still runs a single backward.

The gradient with respect to ``emb`` comes from ``torch.autograd.grad(..., retain_graph=True)``, never from a
second ``.backward()``: parameter gradients are only ever produced by Lightning's one backward, which keeps DDP
gradient sync, AMP scaling and gradient accumulation Lightning's job.

Perturbations are per sample: the L2 norm (or max-abs for ``linf``) is taken over every dimension but the first,
so a sample's perturbation does not depend on which other samples share its batch (DDP gives the same result as
one process with the same global batch).
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo.callbacks.base import TechniqueNotApplicableError, ZooTechnique
from zoo.callbacks.tensors import float_leaves, frozen_buffers, output_divergence, rebuild, tree_map
from zoo.errors import ConfigError
from zoo.registry import CALLBACKS

NORMS = ("l2", "linf")
Bounds = tuple[float, float] | None


class TechniqueConfigError(ConfigError):
    """A technique argument out of range; the message names the argument and what is accepted."""


# -- the math -----------------------------------------------------------------------------------------------
def _sample_dims(x: Tensor) -> tuple[int, ...]:
    return tuple(range(1, x.ndim))


def normalize_direction(grad: Tensor, norm: str = "l2") -> Tensor:
    """Unit step direction per sample: ``g / ||g||_2`` (``l2``) or ``sign(g)`` (``linf``, i.e. FGSM)."""
    if norm == "linf":
        return grad.sign()
    dims = _sample_dims(grad)
    length = grad.norm(p=2, dim=dims, keepdim=True) if dims else grad.abs()
    return grad / (length + 1e-12)


def project(delta: Tensor, eps: float, norm: str = "l2") -> Tensor:
    """Project ``delta`` onto the ``eps`` ball of the given norm, per sample."""
    if norm == "linf":
        return delta.clamp(-eps, eps)
    dims = _sample_dims(delta)
    length = delta.norm(p=2, dim=dims, keepdim=True) if dims else delta.abs()
    return delta * torch.clamp(eps / (length + 1e-12), max=1.0)


def apply_delta(emb: Any, delta: Any, bounds: Bounds = None) -> Any:
    """``emb + delta`` for a tensor or a dict of tensors, clamped to ``bounds`` (pixels stay in [0, 1])."""

    def add(e: Tensor, d: Tensor) -> Tensor:
        x = e + d.to(e.dtype)
        return x.clamp(*bounds) if bounds is not None else x

    return tree_map(add, emb, delta)


def fgm_perturb(emb: Any, grad: Any, eps: float, norm: str = "l2", bounds: Bounds = None) -> Any:
    """Fast gradient method (Miyato et al. 2017; FGSM with ``norm="linf"``): ``emb + eps * dir(grad)``."""
    return apply_delta(emb, tree_map(lambda g: eps * normalize_direction(g, norm), grad), bounds)


def embedding_grad(loss: Tensor, emb: Any, retain_graph: bool = True) -> Any:
    """``d loss / d emb`` with the shape of ``emb`` (zeros for leaves the loss does not depend on)."""
    leaves = [x for x in float_leaves(emb)]
    wanted = [x for x in leaves if x.requires_grad]
    if not wanted:
        raise TechniqueNotApplicableError(
            "the embedding returned by embed() has no tensor that requires grad; adversarial techniques need a "
            "floating-point embedding in the autograd graph"
        )
    grads = torch.autograd.grad(loss, wanted, retain_graph=retain_graph, allow_unused=True)
    by_id = {id(x): g for x, g in zip(wanted, grads)}
    out = []
    for x in leaves:
        g = by_id.get(id(x))
        out.append(torch.zeros_like(x) if g is None else g.detach())
    return rebuild(emb, iter(out))


def pgd_delta(
    loss_fn: Callable[[Any], Tensor],
    emb: Any,
    eps: float,
    steps: int,
    alpha: float,
    norm: str = "l2",
    bounds: Bounds = None,
    first_grad: Any = None,
    random_start: bool = False,
) -> Any:
    """Projected gradient ascent (Madry et al. 2018) on ``loss_fn(emb + delta)``; returns the detached ``delta``.

    ``first_grad`` (the clean loss's gradient, already computed by the training step) saves one forward.
    The inner forwards use a detached ``emb``, so their graphs are freed at once and never reach parameters.
    """
    base = tree_map(lambda e: e.detach(), emb)
    if random_start:
        delta = tree_map(lambda e: project((torch.rand_like(e) * 2 - 1) * eps, eps, norm), base)
        first_grad = None
    else:
        delta = tree_map(torch.zeros_like, base)
    for step in range(steps):
        if step == 0 and first_grad is not None:
            grad = first_grad
        else:
            point = tree_map(lambda e: e.requires_grad_(True), apply_delta(base, delta, bounds))
            grad = embedding_grad(loss_fn(point), point, retain_graph=False)
        delta = tree_map(lambda d, g: project(d + alpha * normalize_direction(g, norm), eps, norm), delta, grad)
        if bounds is not None:  # keep emb + delta inside the valid range, so the projection sees what is used
            delta = tree_map(lambda e, d: (e + d).clamp(*bounds) - e, base, delta)
    return delta


# -- argument checks ----------------------------------------------------------------------------------------
def check_positive(owner: str, name: str, value: float, what: str) -> None:
    if not isinstance(value, int | float) or not value > 0:
        raise TechniqueConfigError(f"{owner}: {name} must be > 0 ({what}); got {value!r}")


def check_norm(owner: str, norm: str) -> None:
    if norm not in NORMS:
        raise TechniqueConfigError(f"{owner}: norm must be one of {', '.join(NORMS)}; got {norm!r}")


def parse_clamp(owner: str, clamp: Any) -> Bounds | str:
    """``"auto"`` (the task's ``embedding_bounds``, e.g. [0, 1] for pixels), ``"none"``/None, or ``[lo, hi]``."""
    if clamp is None or clamp == "none":
        return None
    if clamp == "auto":
        return "auto"
    if isinstance(clamp, Sequence) and not isinstance(clamp, str) and len(clamp) == 2:
        lo, hi = float(clamp[0]), float(clamp[1])
        if lo < hi:
            return (lo, hi)
    raise TechniqueConfigError(f"{owner}: clamp must be 'auto', 'none' or [low, high] with low < high; got {clamp!r}")


def resolve_bounds(clamp: Bounds | str, module: Any) -> Bounds:
    if clamp == "auto":
        bounds = getattr(module, "embedding_bounds", None)
        return tuple(bounds) if bounds is not None else None  # type: ignore[return-value]
    return clamp  # type: ignore[return-value]


# -- callbacks ----------------------------------------------------------------------------------------------
class AdversarialTechnique(ZooTechnique):
    """Shared arguments of the adversarial techniques.

    Args:
        eps: perturbation radius, in the units of ``emb`` (pixels in [0, 1] for images, e.g. 8/255 with
            ``norm: linf``; embedding units for text, e.g. 1.0 with ``norm: l2``).
        norm: ``l2`` (per-sample L2 ball) or ``linf`` (per-element box; FGSM-style sign steps).
        weight: factor on the adversarial loss term.
        clamp: ``auto`` clamps the perturbed input to the task's ``embedding_bounds`` (pixels: [0, 1]),
            ``none`` never clamps, ``[lo, hi]`` clamps to that range.
        start_step / every_n_steps / probability: warm-up and cost gates (see ``ZooTechnique``).
    """

    needs_embedding_grad = True

    def __init__(self, eps: float = 1.0, norm: str = "l2", weight: float = 1.0, clamp: Any = "auto",
                 start_step: int = 0, every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        owner = type(self).__name__
        check_positive(owner, "eps", eps, "the perturbation radius in embedding units")
        check_norm(owner, norm)
        if weight < 0:
            raise TechniqueConfigError(f"{owner}: weight must be >= 0; got {weight}")
        self.eps, self.norm, self.weight = float(eps), norm, float(weight)
        self.clamp = parse_clamp(owner, clamp)

    def bounds(self, module: Any) -> Bounds:
        return resolve_bounds(self.clamp, module)


@CALLBACKS.register("fgm", tags=("technique", "adversarial"), example={"eps": 0.05},
                    summary="adversarial training with one gradient step on the embedding (FGM / FGSM)")
class FGM(AdversarialTechnique):
    """Fast gradient method: adds ``weight * task_loss(f(emb + eps * dir(d loss / d emb)))`` (term ``fgm``)."""

    name = "fgm"

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        grad = embedding_grad(loss, emb)
        adv = fgm_perturb(emb, grad, self.eps, self.norm, self.bounds(module))
        with frozen_buffers(module):
            adv_loss = module.task_loss(module.forward_embedded(adv, batch), batch)
        return {self.name: self.weight * adv_loss}


@CALLBACKS.register("pgd", tags=("technique", "adversarial"), example={"eps": 0.05, "steps": 2},
                    summary="adversarial training with K projected gradient steps (PGD, Madry et al.)")
class PGD(AdversarialTechnique):
    """K-step projected gradient descent adversary; adds the loss at the final point (term ``pgd``).

    Args:
        steps: ascent steps K (>= 1); the first reuses the clean gradient.
        alpha: step size; default ``2.5 * eps / steps``.
        random_start: start from a random point in the ball instead of ``emb``.
    """

    name = "pgd"

    def __init__(self, eps: float = 1.0, steps: int = 3, alpha: float | None = None, random_start: bool = False,
                 norm: str = "l2", weight: float = 1.0, clamp: Any = "auto", start_step: int = 0,
                 every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(eps=eps, norm=norm, weight=weight, clamp=clamp, start_step=start_step,
                         every_n_steps=every_n_steps, probability=probability)
        owner = type(self).__name__
        if not isinstance(steps, int) or steps < 1:
            raise TechniqueConfigError(f"{owner}: steps must be an integer >= 1 (number of ascent steps); got {steps!r}")
        if alpha is not None:
            check_positive(owner, "alpha", alpha, "the ascent step size")
        self.steps = steps
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / steps
        self.random_start = random_start

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        bounds = self.bounds(module)
        with frozen_buffers(module):
            first = None if self.random_start else embedding_grad(loss, emb)
            delta = pgd_delta(lambda e: module.task_loss(module.forward_embedded(e, batch), batch), emb, self.eps,
                              self.steps, self.alpha, self.norm, bounds, first_grad=first,
                              random_start=self.random_start)
            adv_loss = module.task_loss(module.forward_embedded(apply_delta(emb, delta, bounds), batch), batch)
        return {self.name: self.weight * adv_loss}


@CALLBACKS.register("freelb", tags=("technique", "adversarial"), example={"eps": 0.05, "steps": 2},
                    summary="FreeLB: average adversarial loss along K ascent steps (Zhu et al. 2020)")
class FreeLB(PGD):
    """FreeLB: the mean of the task loss at each of K ascent points, all in the one backward (term ``freelb``).

    Unlike PGD, every point's loss trains the parameters (the "free" gradients of the paper), so the graph of
    each point is kept until the backward: memory grows with ``steps``.
    """

    name = "freelb"

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        bounds = self.bounds(module)
        grad = embedding_grad(loss, emb)
        delta = tree_map(lambda g: project(self.alpha * normalize_direction(g, self.norm), self.eps, self.norm), grad)
        total = loss.new_zeros(())
        with frozen_buffers(module):
            for step in range(self.steps):
                point = apply_delta(emb, delta, bounds)
                step_loss = module.task_loss(module.forward_embedded(point, batch), batch)
                total = total + step_loss / self.steps
                if step + 1 < self.steps:
                    g = embedding_grad(step_loss, point)
                    delta = tree_map(lambda d, gg: project(d + self.alpha * normalize_direction(gg, self.norm),
                                                           self.eps, self.norm), delta, g)
        return {self.name: self.weight * total}


@CALLBACKS.register("smart", tags=("technique", "adversarial"), example={"eps": 0.05},
                    summary="SMART smoothness: divergence between clean and adversarially perturbed outputs")
class SMART(AdversarialTechnique):
    """Smoothness-inducing adversarial regularization (Jiang et al. 2020): find a small perturbation that
    most changes the output (ascent on the divergence from a random start), then add ``weight * D(out, out_adv)``
    (term ``smart``). The divergence is symmetric KL for logits and MSE for scores (recommendation).

    Args:
        steps: ascent steps on the divergence (1 in the paper).
        noise: scale of the random start, as a fraction of ``eps``.
    """

    name = "smart"

    def __init__(self, eps: float = 1e-3, steps: int = 1, noise: float = 0.1, norm: str = "l2", weight: float = 1.0,
                 clamp: Any = "auto", start_step: int = 0, every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(eps=eps, norm=norm, weight=weight, clamp=clamp, start_step=start_step,
                         every_n_steps=every_n_steps, probability=probability)
        if not isinstance(steps, int) or steps < 1:
            raise TechniqueConfigError(f"SMART: steps must be an integer >= 1; got {steps!r}")
        check_positive("SMART", "noise", noise, "the random start scale as a fraction of eps")
        self.steps, self.noise = steps, float(noise)

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        bounds = self.bounds(module)
        target = tree_map(lambda o: o.detach(), out) if isinstance(out, dict) else out.detach()
        base = tree_map(lambda e: e.detach(), emb)
        delta = tree_map(lambda e: project(torch.randn_like(e) * self.noise * self.eps, self.eps, self.norm), base)
        with frozen_buffers(module):
            for _ in range(self.steps):
                point = tree_map(lambda e: e.requires_grad_(True), apply_delta(base, delta, bounds))
                div = output_divergence(target, module.forward_embedded(point, batch), symmetric=False)
                g = embedding_grad(div, point, retain_graph=False)
                delta = tree_map(lambda d, gg: project(d + self.eps * normalize_direction(gg, self.norm), self.eps,
                                                       self.norm), delta, g)
            adv_out = module.forward_embedded(apply_delta(emb, delta, bounds), batch)
        return {self.name: self.weight * output_divergence(out, adv_out, symmetric=True)}


# -- robustness evaluation ----------------------------------------------------------------------------------
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
        if not isinstance(steps, int) or steps < 1:
            raise TechniqueConfigError(f"AdversarialEvaluation: steps must be an integer >= 1 (1 = FGSM); got {steps!r}")
        check_norm("AdversarialEvaluation", norm)
        self.epsilons = [float(e) for e in epsilons]
        self.steps, self.norm = steps, norm
        self.clamp = parse_clamp("AdversarialEvaluation", clamp)

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        from zoo.tasks.base import implements_contract

        missing = implements_contract(pl_module)
        if missing:
            raise TechniqueNotApplicableError(
                f"AdversarialEvaluation needs embed/forward_embedded/task_loss; {type(pl_module).__name__} lacks "
                f"{', '.join(missing)}")
        if getattr(pl_module, "target_key", None) is None:
            raise TechniqueNotApplicableError(
                f"AdversarialEvaluation reports classification accuracy; {type(pl_module).__name__} is not a "
                "classifier (no target_key)")

    @staticmethod
    def metric_name(eps: float) -> str:
        return f"test/robust_acc@{eps:g}"

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: Any, outputs: Any, batch: Any, batch_idx: int,
                          dataloader_idx: int = 0) -> None:
        from zoo.tasks.base import batch_size_of
        from zoo.tasks.classification import hard_targets

        bounds = resolve_bounds(self.clamp, pl_module)
        # Lightning evaluates under inference_mode; an attack needs autograd, on normal (cloned) tensors.
        with torch.inference_mode(False), torch.enable_grad():
            batch = _clone_tree(batch)
            target = hard_targets(batch[pl_module.target_key])
            with trainer.precision_plugin.forward_context():
                emb = tree_map(lambda e: e.detach().requires_grad_(True), pl_module.embed(batch))

                def loss_fn(e: Any) -> Tensor:
                    return pl_module.task_loss(pl_module.forward_embedded(e, batch), batch)

                for eps in self.epsilons:
                    alpha = eps if self.steps == 1 else 2.5 * eps / self.steps
                    delta = pgd_delta(loss_fn, emb, eps, self.steps, alpha, self.norm, bounds)
                    with torch.no_grad():
                        logits = pl_module.forward_embedded(apply_delta(emb, delta, bounds), batch)
                    acc = (logits.argmax(-1) == target).float().mean()
                    pl_module.log(self.metric_name(eps), acc, on_step=False, on_epoch=True,
                                  batch_size=batch_size_of(batch), sync_dist=True)


def _clone_tree(batch: Any) -> Any:
    if isinstance(batch, dict):
        return {k: _clone_tree(v) for k, v in batch.items()}
    if isinstance(batch, list | tuple):
        return type(batch)(_clone_tree(v) for v in batch)
    return batch.clone() if isinstance(batch, Tensor) else batch


__all__ = ["FGM", "PGD", "SMART", "AdversarialEvaluation", "FreeLB", "TechniqueConfigError", "apply_delta",
           "embedding_grad", "fgm_perturb", "normalize_direction", "pgd_delta", "project"]
