"""Adversarial training on whatever ``embed`` returns: token embeddings (text), pixels (images) or user / item
vectors (recommendation, i.e. APR). Plain functions do the math; thin techniques add it to the one training
step of :func:`zoo.contract.contract_training_step` as extra loss terms, so a step still runs a single backward.

The gradient with respect to ``emb`` comes from ``torch.autograd.grad(..., retain_graph=True)``, never from a
second ``.backward()``: parameter gradients are only ever produced by Lightning's one backward, which keeps DDP
gradient sync, AMP scaling and gradient accumulation Lightning's job.

Perturbations are per sample: the L2 norm (or max-abs for ``linf``) is taken over every dimension but the first,
so a sample's perturbation does not depend on which other samples share its batch (DDP gives the same result as
one process with the same global batch).
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import torch
from torch import Tensor

from zoo.contract import (
    TechniqueNotApplicableError,
    ZooTechnique,
    float_leaves,
    frozen_buffers,
    rebuild,
    tree_map,
)
from zoo.registry import CALLBACKS
from zoo.techniques.checks import (
    Bounds,
    check_non_negative,
    check_norm,
    check_positive,
    check_steps,
    parse_clamp,
    resolve_bounds,
)
from zoo.techniques.divergence import output_divergence


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


def ascent_step(delta: Any, grad: Any, alpha: float, eps: float, norm: str = "l2") -> Any:
    """One projected ascent step of every leaf: ``project(delta + alpha * dir(grad), eps)``."""
    return tree_map(lambda d, g: project(d + alpha * normalize_direction(g, norm), eps, norm), delta, grad)


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
    leaves = float_leaves(emb)
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


def _grad_point(base: Any, delta: Any, bounds: Bounds) -> Any:
    """``base + delta`` as a fresh autograd leaf: the inner forwards' graphs end there and never reach weights."""
    return tree_map(lambda e: e.requires_grad_(True), apply_delta(base, delta, bounds))


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
            point = _grad_point(base, delta, bounds)
            grad = embedding_grad(loss_fn(point), point, retain_graph=False)
        delta = ascent_step(delta, grad, alpha, eps, norm)
        if bounds is not None:  # keep emb + delta inside the valid range, so the projection sees what is used
            delta = tree_map(lambda e, d: (e + d).clamp(*bounds) - e, base, delta)
    return delta


def smart_delta(out_fn: Callable[[Any], Any], emb: Any, target: Any, eps: float, steps: int, noise: float,
                norm: str = "l2", bounds: Bounds = None) -> Any:
    """SMART's perturbation: from a random start of scale ``noise * eps``, ``steps`` ascent steps of size
    ``eps`` on ``KL(target || out_fn(emb + delta))``; returns the detached ``delta``."""
    base = tree_map(lambda e: e.detach(), emb)
    delta = tree_map(lambda e: project(torch.randn_like(e) * noise * eps, eps, norm), base)
    for _ in range(steps):
        point = _grad_point(base, delta, bounds)
        div = output_divergence(target, out_fn(point), symmetric=False)
        delta = ascent_step(delta, embedding_grad(div, point, retain_graph=False), eps, eps, norm)
    return delta


def task_loss_at(module: Any, batch: Any) -> Callable[[Any], Tensor]:
    """``emb -> task_loss(forward_embedded(emb, batch), batch)``: the loss an adversary ascends."""
    return lambda emb: module.task_loss(module.forward_embedded(emb, batch), batch)


# -- techniques ---------------------------------------------------------------------------------------------
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
        check_non_negative(owner, "weight", weight, "the factor on the adversarial loss term")
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
        adv = fgm_perturb(emb, embedding_grad(loss, emb), self.eps, self.norm, self.bounds(module))
        with frozen_buffers(module):
            adv_loss = task_loss_at(module, batch)(adv)
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
        check_steps(owner, steps)
        if alpha is not None:
            check_positive(owner, "alpha", alpha, "the ascent step size")
        self.steps = steps
        self.alpha = float(alpha) if alpha is not None else 2.5 * self.eps / steps
        self.random_start = random_start

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        bounds = self.bounds(module)
        loss_fn = task_loss_at(module, batch)
        with frozen_buffers(module):
            first = None if self.random_start else embedding_grad(loss, emb)
            delta = pgd_delta(loss_fn, emb, self.eps, self.steps, self.alpha, self.norm, bounds, first_grad=first,
                              random_start=self.random_start)
            adv_loss = loss_fn(apply_delta(emb, delta, bounds))
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
        loss_fn = task_loss_at(module, batch)
        grad = embedding_grad(loss, emb)
        delta = ascent_step(tree_map(torch.zeros_like, grad), grad, self.alpha, self.eps, self.norm)
        total = loss.new_zeros(())
        with frozen_buffers(module):
            for step in range(self.steps):
                point = apply_delta(emb, delta, bounds)
                step_loss = loss_fn(point)
                total = total + step_loss / self.steps
                if step + 1 < self.steps:
                    delta = ascent_step(delta, embedding_grad(step_loss, point), self.alpha, self.eps, self.norm)
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
        check_steps("SMART", steps, "ascent steps on the divergence")
        check_positive("SMART", "noise", noise, "the random start scale as a fraction of eps")
        self.steps, self.noise = steps, float(noise)

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        bounds = self.bounds(module)
        target = tree_map(lambda o: o.detach(), out)
        with frozen_buffers(module):
            delta = smart_delta(lambda e: module.forward_embedded(e, batch), emb, target, self.eps, self.steps,
                                self.noise, self.norm, bounds)
            adv_out = module.forward_embedded(apply_delta(emb, delta, bounds), batch)
        return {self.name: self.weight * output_divergence(out, adv_out, symmetric=True)}


__all__ = ["FGM", "PGD", "SMART", "AdversarialTechnique", "FreeLB", "apply_delta", "ascent_step", "embedding_grad",
           "fgm_perturb", "normalize_direction", "pgd_delta", "project", "smart_delta", "task_loss_at"]
