"""Regularization techniques: R-Drop, mixup, cutmix, L2-SP and EMA of weights.

Label smoothing is the task argument ``label_smoothing`` of classifiers; stochastic depth / dropout are backbone
arguments (``backbone_kwargs: {drop_path_rate: 0.1}`` for timm models, ``dropout`` on the heads).
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
import torch.nn.functional as F
from lightning.pytorch.callbacks import EMAWeightAveraging
from torch import Tensor

from zoo.callbacks.adversarial import TechniqueConfigError, check_positive
from zoo.callbacks.base import TechniqueNotApplicableError, ZooTechnique
from zoo.callbacks.tensors import frozen_buffers, output_divergence, tree_map
from zoo.registry import CALLBACKS


# -- the math -----------------------------------------------------------------------------------------------
def rdrop_term(out1: Any, out2: Any) -> Tensor:
    """R-Drop (Liang et al. 2021): symmetric KL between two dropout samples of the same model."""
    return output_divergence(out1, out2, symmetric=True)


def mix_targets(target: Tensor, num_classes: int, perm: Tensor, lam: float) -> Tensor:
    """Soft targets ``lam * y + (1 - lam) * y[perm]`` from class indices or probabilities."""
    probs = target.float() if target.is_floating_point() else F.one_hot(target.long(), num_classes).float()
    return lam * probs + (1.0 - lam) * probs[perm]


def mix_embeddings(emb: Any, perm: Tensor, lam: float) -> Any:
    """Mixup of every floating tensor in ``emb`` (pixels, token embeddings) with the permuted batch."""
    return tree_map(lambda e: lam * e + (1.0 - lam) * e[perm], emb)


def cutmix_box(height: int, width: int, lam: float, rng: np.random.Generator) -> tuple[int, int, int, int]:
    """A box covering about ``1 - lam`` of the image (Yun et al. 2019): (top, bottom, left, right)."""
    ratio = math.sqrt(1.0 - lam)
    h, w = int(round(height * ratio)), int(round(width * ratio))
    cy, cx = int(rng.integers(height)), int(rng.integers(width))
    top, bottom = max(cy - h // 2, 0), min(cy + (h - h // 2), height)
    left, right = max(cx - w // 2, 0), min(cx + (w - w // 2), width)
    return top, bottom, left, right


def paste_box(images: Tensor, perm: Tensor, box: tuple[int, int, int, int]) -> Tensor:
    top, bottom, left, right = box
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
    return mixed


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


# -- helpers ------------------------------------------------------------------------------------------------
def ensure_built(trainer: pl.Trainer, module: pl.LightningModule) -> None:
    """Callbacks' ``setup`` runs before the module's: build a lazily built zoo task now (idempotent) so the
    technique sees its classes and parameters."""
    from zoo.tasks.base import ZooTask

    if isinstance(module, ZooTask):
        module.configure_from_data(getattr(trainer, "datamodule", None))


def supports_soft_targets(module: Any) -> bool:
    """Tasks whose ``task_loss`` accepts class-probability targets (mixup, cutmix). A task states it with the
    class attribute ``soft_targets``; single-label classifiers accept them by default."""
    flag = getattr(module, "soft_targets", None)
    if flag is not None:
        return bool(flag)
    from zoo.tasks.classification import ClassificationTask

    return isinstance(module, ClassificationTask)


# -- callbacks ----------------------------------------------------------------------------------------------
@CALLBACKS.register("rdrop", tags=("technique", "regularization"), example={"alpha": 1.0},
                    summary="R-Drop: symmetric KL between two dropout forwards")
class RDrop(ZooTechnique):
    """Runs ``forward_embedded`` a second time on the same ``emb`` and adds ``alpha * symKL(out1, out2)``
    (MSE for score outputs), term ``rdrop``. Does nothing useful on a model without dropout."""

    name = "rdrop"

    def __init__(self, alpha: float = 1.0, start_step: int = 0, every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive("RDrop", "alpha", alpha, "the weight of the KL term")
        self.alpha = float(alpha)

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        with frozen_buffers(module):
            out2 = module.forward_embedded(emb, batch)
        return {self.name: self.alpha * rdrop_term(out, out2)}


class _MixBase(ZooTechnique):
    def __init__(self, alpha: float, seed: int, start_step: int, every_n_steps: int, probability: float) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive(type(self).__name__, "alpha", alpha, "the Beta(alpha, alpha) concentration")
        self.alpha = float(alpha)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._pending: tuple[Tensor, Any] | None = None
        #: this step's mixing as a function of an embedding, so a distillation teacher can be shown the same
        #: mixed input as the student (None outside a step that mixed)
        self.replay: Callable[[Any], Any] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.replay = None

    def check_compatible(self, module: pl.LightningModule) -> None:
        super().check_compatible(module)
        if not supports_soft_targets(module):
            raise TechniqueNotApplicableError(
                f"{type(self).__name__} mixes class labels into probability targets; {type(module).__name__} "
                "does not take soft targets (needs a single-label classifier, or a task with soft_targets = True)")

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        ensure_built(trainer, pl_module)
        super().setup(trainer, pl_module, stage)

    def _mix_labels(self, module: Any, batch: Any, lam: float, perm: Tensor) -> Any:
        key = module.target_key
        new = dict(batch)
        new[key] = mix_targets(batch[key], module.num_classes, perm.to(batch[key].device), lam)
        return new

    def _draw(self, batch_size: int, device: Any) -> tuple[float, Tensor]:
        lam = float(self._rng.beta(self.alpha, self.alpha))
        perm = torch.from_numpy(self._rng.permutation(batch_size)).to(device)
        return lam, perm

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "rng" in state_dict:
            self._rng.bit_generator.state = state_dict["rng"]


@CALLBACKS.register("mixup", tags=("technique", "regularization"), example={"alpha": 0.4},
                    summary="mixup of inputs / token embeddings with soft labels")
class Mixup(_MixBase):
    """Mixup (Zhang et al. 2018) on whatever ``embed`` returns: pixels for images, token embeddings for text
    (integer tensors such as attention masks are kept from the first sample). Targets become probabilities;
    ``ClassificationTask.task_loss`` takes them and metrics use their argmax. Adds no loss term."""

    name = "mixup"

    def __init__(self, alpha: float = 0.4, seed: int = 0, start_step: int = 0, every_n_steps: int = 1,
                 probability: float = 1.0) -> None:
        super().__init__(alpha, seed, start_step, every_n_steps, probability)

    def transform_batch(self, module: Any, batch: Any) -> Any:
        from zoo.tasks.base import batch_size_of

        target = batch[module.target_key]
        lam, perm = self._draw(batch_size_of(batch), target.device)
        self._pending = (perm, lam)
        return self._mix_labels(module, batch, lam, perm)

    def transform_embedding(self, module: Any, batch: Any, emb: Any) -> Any:
        if self._pending is None:
            return emb
        perm, lam = self._pending
        self._pending = None
        self.replay = lambda e: mix_embeddings(e, perm, lam)
        return self.replay(emb)


@CALLBACKS.register("cutmix", tags=("technique", "regularization"), example={"alpha": 1.0},
                    summary="cutmix: paste a box from another image, labels mixed by area (images)")
class CutMix(_MixBase):
    """CutMix (Yun et al. 2019) for pixel embeddings ``[B, C, H, W]``; the label weight is the exact pasted
    area. Adds no loss term."""

    name = "cutmix"

    def __init__(self, alpha: float = 1.0, seed: int = 0, start_step: int = 0, every_n_steps: int = 1,
                 probability: float = 1.0) -> None:
        super().__init__(alpha, seed, start_step, every_n_steps, probability)

    def check_compatible(self, module: pl.LightningModule) -> None:
        super().check_compatible(module)
        if getattr(module, "embedding_kind", None) != "pixels":
            raise TechniqueNotApplicableError(
                f"CutMix pastes image regions and needs a task whose embed returns pixels [B, C, H, W] "
                f"(embedding_kind = 'pixels'); {type(module).__name__} has embedding_kind="
                f"{getattr(module, 'embedding_kind', None)!r}. Use Mixup for token embeddings")

    def transform_batch(self, module: Any, batch: Any) -> Any:
        with torch.no_grad():
            images = module.embed(batch)
        if not (isinstance(images, Tensor) and images.ndim == 4):
            raise TechniqueNotApplicableError(
                f"CutMix needs embed() to return one [B, C, H, W] tensor; got "
                f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
        lam, perm = self._draw(images.shape[0], images.device)
        height, width = images.shape[-2:]
        box = cutmix_box(height, width, lam, self._rng)
        area = (box[1] - box[0]) * (box[3] - box[2])
        lam = 1.0 - area / float(height * width)
        self._pending = (perm, box)
        return self._mix_labels(module, batch, lam, perm)

    def transform_embedding(self, module: Any, batch: Any, emb: Any) -> Any:
        if self._pending is None:
            return emb
        perm, box = self._pending
        self._pending = None
        self.replay = lambda e: paste_box(e, perm, box)
        return self.replay(emb)


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
        if beta < 0:
            raise TechniqueConfigError(f"L2SP: beta must be >= 0; got {beta}")
        self.alpha, self.beta = float(alpha), float(beta)
        self.exclude = tuple(exclude or ())
        self._reference: dict[str, Tensor] | None = None

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        ensure_built(trainer, pl_module)
        super().setup(trainer, pl_module, stage)

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


@CALLBACKS.register("ema", tags=("regularization",), summary="exponential moving average of the weights (Lightning's)")
class EMA(EMAWeightAveraging):
    """Lightning's ``EMAWeightAveraging``; the only change is that a lazily built zoo task (classes known
    from the data) is built before the average copy is taken, since callbacks are set up before the module."""

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if stage == "fit":
            ensure_built(trainer, pl_module)
        super().setup(trainer, pl_module, stage)


__all__ = ["EMA", "L2SP", "CutMix", "Mixup", "RDrop", "l2sp_penalty", "mix_embeddings", "mix_targets", "rdrop_term"]
