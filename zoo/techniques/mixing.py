"""Mixup and CutMix: train on mixtures of two samples with labels mixed in the same proportion.

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
from torch import Tensor

from zoo.contract import TechniqueNotApplicableError, ZooTechnique, batch_size_of, trait, tree_map
from zoo.registry import CALLBACKS
from zoo.techniques.checks import check_positive


# -- the math -----------------------------------------------------------------------------------------------
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
    """``images`` with the ``box`` region of each replaced by that of its partner ``images[perm]``."""
    top, bottom, left, right = box
    mixed = images.clone()
    mixed[..., top:bottom, left:right] = images[perm][..., top:bottom, left:right]
    return mixed


# -- techniques ---------------------------------------------------------------------------------------------
class MixingTechnique(ZooTechnique):
    """What Mixup and CutMix share: a Beta(alpha, alpha) draw, soft labels, and :attr:`replay`.

    A subclass draws in ``transform_batch`` (mixing the labels), keeps the draw with :meth:`arm`, and
    ``transform_embedding`` applies :meth:`mix` (the same draw) to ``emb``. Another technique, e.g. a
    distillation teacher, re-applies this step's mixing to an embedding of its own through :attr:`replay`.
    """

    def __init__(self, alpha: float, seed: int, start_step: int, every_n_steps: int, probability: float) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive(type(self).__name__, "alpha", alpha, "the Beta(alpha, alpha) concentration")
        self.alpha = float(alpha)
        self.seed = seed
        self._rng = np.random.default_rng(seed)
        self._pending: Callable[[Any], Any] | None = None
        #: this step's mixing as a function of an embedding, so a distillation teacher can be shown the same
        #: mixed input as the student (None outside a step that mixed)
        self.replay: Callable[[Any], Any] | None = None

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self.replay = None

    def check_compatible(self, module: pl.LightningModule) -> None:
        super().check_compatible(module)
        if not trait(module, "soft_targets"):
            raise TechniqueNotApplicableError(
                f"{type(self).__name__} mixes class labels into probability targets; {type(module).__name__} "
                "does not take soft targets (needs a single-label classifier, or a task with soft_targets = True)")

    def draw(self, batch_size: int, device: Any) -> tuple[float, Tensor]:
        """``(lam, perm)``: the mixing weight and each sample's partner."""
        lam = float(self._rng.beta(self.alpha, self.alpha))
        perm = torch.from_numpy(self._rng.permutation(batch_size)).to(device)
        return lam, perm

    def mix_labels(self, module: Any, batch: Any, lam: float, perm: Tensor) -> Any:
        key = trait(module, "target_key")
        new = dict(batch)
        new[key] = mix_targets(batch[key], trait(module, "num_classes"), perm.to(batch[key].device), lam)
        return new

    def arm(self, mix: Callable[[Any], Any]) -> None:
        """Remember this step's mixing for ``transform_embedding``."""
        self._pending = mix

    def transform_embedding(self, module: Any, batch: Any, emb: Any) -> Any:
        if self._pending is None:
            return emb
        self.replay, self._pending = self._pending, None
        return self.replay(emb)

    def state_dict(self) -> dict[str, Any]:
        return {**super().state_dict(), "rng": self._rng.bit_generator.state}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        super().load_state_dict(state_dict)
        if "rng" in state_dict:
            self._rng.bit_generator.state = state_dict["rng"]


@CALLBACKS.register("mixup", tags=("technique", "regularization"), example={"alpha": 0.4},
                    summary="mixup of inputs / token embeddings with soft labels")
class Mixup(MixingTechnique):
    """Mixup (Zhang et al. 2018) on whatever ``embed`` returns: pixels for images, token embeddings for text
    (integer tensors such as attention masks are kept from the first sample). Targets become probabilities;
    ``ClassificationTask.task_loss`` takes them and metrics use their argmax. Adds no loss term."""

    name = "mixup"

    def __init__(self, alpha: float = 0.4, seed: int = 0, start_step: int = 0, every_n_steps: int = 1,
                 probability: float = 1.0) -> None:
        super().__init__(alpha, seed, start_step, every_n_steps, probability)

    def transform_batch(self, module: Any, batch: Any) -> Any:
        target = batch[trait(module, "target_key")]
        lam, perm = self.draw(batch_size_of(batch), target.device)
        self.arm(lambda e: mix_embeddings(e, perm, lam))
        return self.mix_labels(module, batch, lam, perm)


@CALLBACKS.register("cutmix", tags=("technique", "regularization"), example={"alpha": 1.0},
                    summary="cutmix: paste a box from another image, labels mixed by area (images)")
class CutMix(MixingTechnique):
    """CutMix (Yun et al. 2019) for pixel embeddings ``[B, C, H, W]``; the label weight is the exact pasted
    area. Adds no loss term."""

    name = "cutmix"

    def __init__(self, alpha: float = 1.0, seed: int = 0, start_step: int = 0, every_n_steps: int = 1,
                 probability: float = 1.0) -> None:
        super().__init__(alpha, seed, start_step, every_n_steps, probability)

    def check_compatible(self, module: pl.LightningModule) -> None:
        super().check_compatible(module)
        kind = trait(module, "embedding_kind")
        if kind != "pixels":
            raise TechniqueNotApplicableError(
                f"CutMix pastes image regions and needs a task whose embed returns pixels [B, C, H, W] "
                f"(embedding_kind = 'pixels'); {type(module).__name__} has embedding_kind={kind!r}. "
                "Use Mixup for token embeddings")

    def transform_batch(self, module: Any, batch: Any) -> Any:
        with torch.no_grad():
            images = module.embed(batch)
        if not (isinstance(images, Tensor) and images.ndim == 4):
            raise TechniqueNotApplicableError(
                f"CutMix needs embed() to return one [B, C, H, W] tensor; got "
                f"{type(images).__name__} {tuple(getattr(images, 'shape', ()))}")
        lam, perm = self.draw(images.shape[0], images.device)
        height, width = images.shape[-2:]
        box = cutmix_box(height, width, lam, self._rng)
        area = (box[1] - box[0]) * (box[3] - box[2])
        self.arm(lambda e: paste_box(e, perm, box))
        return self.mix_labels(module, batch, 1.0 - area / float(height * width), perm)


__all__ = ["CutMix", "MixingTechnique", "Mixup", "cutmix_box", "mix_embeddings", "mix_targets", "paste_box"]
