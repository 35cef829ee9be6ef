"""Knowledge distillation from a frozen teacher: any zoo checkpoint, a local Hugging Face directory (text), or
a module given in Python. The teacher lives in this technique, outside the student module, so it is never part
of the student's ``state_dict`` or checkpoint, and it is not wrapped by DDP."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor, nn

from zoo.checkpoints import load_checkpoint
from zoo.contract import ZooTechnique, trait
from zoo.errors import ConfigError
from zoo.registry import CALLBACKS
from zoo.techniques.checks import check_positive
from zoo.techniques.divergence import output_divergence
from zoo.techniques.mixing import MixingTechnique


class TeacherMismatchError(ConfigError):
    """The teacher cannot teach this student (other classes, unreadable path)."""


def distillation_term(student_out: Any, teacher_out: Any, temperature: float) -> Tensor:
    """Hinton et al. 2015: ``T^2 * KL(softmax(teacher/T) || softmax(student/T))`` for logits; MSE for scores."""
    return output_divergence(teacher_out, student_out, temperature=temperature, symmetric=False)


def load_teacher(source: Any) -> nn.Module:
    """A zoo checkpoint (``.ckpt``), a local HF model directory (``config.json`` inside), or a module."""
    if isinstance(source, nn.Module):
        return source
    path = Path(str(source))
    if path.is_dir() and (path / "config.json").exists():
        from transformers import AutoModelForSequenceClassification

        return HFTeacher(AutoModelForSequenceClassification.from_pretrained(str(path), local_files_only=True))
    if path.is_file():
        return load_checkpoint(path, map_location="cpu")
    raise TeacherMismatchError(
        f"Distillation: teacher {str(source)!r} is neither a zoo checkpoint file nor a local Hugging Face model "
        "directory (with config.json)")


class HFTeacher(nn.Module):
    """Adapts a transformers sequence classifier to the zoo batch (``input_ids``, ``attention_mask``, ...)."""

    INPUT_KEYS = ("input_ids", "attention_mask", "token_type_ids")

    def __init__(self, model: nn.Module) -> None:
        super().__init__()
        self.model = model
        id2label = getattr(model.config, "id2label", None) or {}
        names = [str(id2label[i]) for i in sorted(id2label)] if id2label else None
        # transformers' placeholder names (LABEL_0, ...) say nothing about the classes: compare counts only
        generic = names is not None and names == [f"LABEL_{i}" for i in range(len(names))]
        self.class_names = None if generic else names
        self.num_classes = model.config.num_labels

    def embed(self, batch: dict[str, Any]) -> Tensor:
        return self.model.get_input_embeddings()(batch["input_ids"])

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        extra = {k: batch[k] for k in self.INPUT_KEYS[1:] if k in batch}
        return self.model(inputs_embeds=emb, **extra).logits

    def forward(self, batch: dict[str, Any]) -> Tensor:
        return self.forward_embedded(self.embed(batch), batch)


def model_classes(module: Any) -> tuple[int | None, list[str] | None]:
    """``(number of classes, class names)`` of a teacher or a student, each None when unknown."""
    names = trait(module, "class_names")
    count = trait(module, "num_classes")
    if names is not None:
        names = [str(n) for n in names]
        count = len(names)
    return count, names


def check_same_classes(teacher: Any, student: Any, source: str) -> None:
    t_count, t_names = model_classes(teacher)
    s_count, s_names = model_classes(student)
    if t_count is None or s_count is None:
        return
    if t_count != s_count or (t_names is not None and s_names is not None and t_names != s_names):
        def show(count: int, names: list[str] | None) -> str:
            return f"{count} classes" + (f" ({', '.join(names)})" if names else "")

        raise TeacherMismatchError(
            f"Distillation: teacher {source} predicts {show(t_count, t_names)} but the student has "
            f"{show(s_count, s_names)}; a teacher must have the student's classes in the same order")


@CALLBACKS.register("distillation", tags=("technique", "distillation"),
                    summary="distill from a frozen teacher (zoo checkpoint / local HF dir): KL at temperature T")
class Distillation(ZooTechnique):
    """Adds ``weight * T^2 * KL(teacher || student)`` at temperature ``T`` to the task loss (term ``distill``).

    Args:
        teacher: path to a zoo checkpoint or a local Hugging Face model directory (text), or a module.
        temperature: softmax temperature T (> 0).
        weight: factor on the distillation term; the task loss keeps weight 1.
    """

    name = "distill"

    def __init__(self, teacher: Any, temperature: float = 2.0, weight: float = 1.0, start_step: int = 0,
                 every_n_steps: int = 1, probability: float = 1.0) -> None:
        super().__init__(start_step=start_step, every_n_steps=every_n_steps, probability=probability)
        check_positive("Distillation", "temperature", temperature, "the softmax temperature")
        check_positive("Distillation", "weight", weight, "the factor on the distillation term")
        self.temperature, self.weight = float(temperature), float(weight)
        self.source = teacher if not isinstance(teacher, nn.Module) else f"<{type(teacher).__name__} module>"
        # a plain attribute of the callback: not a submodule of the student, and not in state_dict below
        self._teacher: nn.Module | None = teacher if isinstance(teacher, nn.Module) else None

    @property
    def teacher(self) -> nn.Module:
        if self._teacher is None:
            self._teacher = load_teacher(self.source)
        return self._teacher

    # on_fit_start, not setup: the student may learn its classes from the data in its own setup, which
    # Lightning runs after the callbacks'
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        teacher = self.teacher
        check_same_classes(teacher, pl_module, str(self.source))
        teacher.eval().requires_grad_(False)
        teacher.to(pl_module.device)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.teacher.eval()  # anything calling .train() on everything must not put dropout back in the teacher

    @torch.no_grad()
    def teacher_outputs(self, batch: Any, mixes: Sequence[Callable[[Any], Any]] = ()) -> Any:
        """The teacher's outputs on the student's input: ``mixes`` re-apply this step's mixup / cutmix to the
        teacher's own embedding (its token embeddings differ from the student's; pixels are pixels)."""
        teacher = self.teacher
        if hasattr(teacher, "embed") and hasattr(teacher, "forward_embedded"):
            emb = teacher.embed(batch)
            for mix in mixes:
                emb = mix(emb)
            return teacher.forward_embedded(emb, batch)
        if mixes:
            raise TeacherMismatchError(
                f"Distillation: teacher {self.source} has no embed / forward_embedded, so it cannot be shown the "
                "mixed input that mixup / cutmix give the student; drop the mixing technique or use a zoo teacher")
        return teacher(batch)

    def loss_terms(self, module: Any, batch: Any, emb: Any, out: Any, loss: Tensor) -> dict[str, Tensor]:
        trainer = module.trainer
        mixes = [cb.replay for cb in trainer.callbacks if isinstance(cb, MixingTechnique) and cb.replay is not None]
        return {self.name: self.weight * distillation_term(out, self.teacher_outputs(batch, mixes), self.temperature)}


__all__ = ["Distillation", "HFTeacher", "TeacherMismatchError", "check_same_classes", "distillation_term",
           "load_teacher", "model_classes"]
