"""Shared metrics, prediction and reports for classifiers (image, text, ...)."""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MulticlassAccuracy,
    MulticlassAUROC,
    MulticlassConfusionMatrix,
    MulticlassF1Score,
    MulticlassPrecision,
    MulticlassRecall,
)

from zoo.contract import hard_targets
from zoo.errors import ConfigError, ZooError
from zoo.tasks.base import Optimizer, Scheduler, ZooTask


class ClassDataMismatchError(ZooError, ValueError):
    """The model's classes disagree with the data's."""


def classification_metrics(num_classes: int, with_auroc: bool) -> MetricCollection:
    metrics: dict[str, Any] = {
        "acc": MulticlassAccuracy(num_classes, average="micro"),
        "precision_macro": MulticlassPrecision(num_classes, average="macro"),
        "recall_macro": MulticlassRecall(num_classes, average="macro"),
        "f1_macro": MulticlassF1Score(num_classes, average="macro"),
    }
    if with_auroc and num_classes > 1:
        metrics["auroc"] = MulticlassAUROC(num_classes)
    return MetricCollection(metrics)


CALIBRATIONS = ("temperature", "none")


class Calibrated:
    """Temperature scaling shared by every classifier (mixed into a :class:`ZooTask`).

    ``temperature`` is a persistent buffer created with the network (shape ``[1]``; ``[num_classes]`` for
    multi-label), so it travels in checkpoints and exports. It is 1 (identity) until
    :class:`~zoo.callbacks.trust.Trust` fits it on the validation split. :meth:`probabilities` is the
    one place logits become probabilities for prediction; ``calibration = "none"`` (``--calibration none``)
    switches the temperature off without touching the checkpoint.
    """

    #: ``temperature`` applies the fitted temperature in :meth:`probabilities`; ``none`` ignores it
    calibration: str = "temperature"

    def temperature_size(self) -> int:
        return 1

    def register_temperature(self) -> None:
        self.register_buffer("temperature", torch.ones(self.temperature_size()))  # type: ignore[attr-defined]

    def set_temperature(self, value: Tensor | float) -> None:
        t = torch.as_tensor(value, dtype=torch.float32).flatten()
        own = self.temperature  # type: ignore[attr-defined]
        if t.numel() not in (1, own.numel()) or bool((t <= 0).any()):
            raise ConfigError(f"a temperature must be positive with 1 or {own.numel()} values, got {t.tolist()}")
        own.copy_(t.expand_as(own).to(own.device))

    def scaled_logits(self, logits: Tensor) -> Tensor:
        t = getattr(self, "temperature", None)
        if t is None or self.calibration == "none":
            return logits.float()
        return logits.float() / t.to(logits.device)

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated class probabilities of ``logits`` (softmax over the last dimension)."""
        return self.scaled_logits(logits).softmax(-1)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        state = checkpoint.get("state_dict")
        own = getattr(self, "temperature", None)
        if isinstance(state, dict) and own is not None and "temperature" not in state:
            state["temperature"] = torch.ones_like(own)  # written before calibration existed: identity


class ClassificationTask(Calibrated, ZooTask):
    """A single-label classifier over ``num_classes`` named classes.

    Subclasses build their layers in ``build_classifier(num_classes)`` once the classes are known: at construction
    when ``class_names`` or ``num_classes`` is given, else when the data is bound (``bind_data``).
    Batches are dicts with the targets under ``label`` (indices, or probabilities after mixup).
    """

    monitor = "val/f1_macro"
    monitor_mode = "max"
    target_key = "label"
    #: ``task_loss`` takes probability targets (mixup, cutmix, distillation of soft labels)
    soft_targets = True
    #: how many misclassified test examples to keep in ``self.misclassified`` (0: none; a tracking callback
    #: such as ``WandbReports`` raises it)
    max_misclassified: int = 0
    #: set by :class:`~zoo.callbacks.trust.Trust` for ``predict --coverage``: probabilities ->
    #: the class indices of each row's conformal prediction set
    prediction_sets: Callable[[Tensor], list[list[int]]] | None = None

    def __init__(
        self,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        label_smoothing: float = 0.0,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "none",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio)
        if not 0.0 <= label_smoothing < 1.0:
            raise ConfigError(f"label_smoothing must be in [0, 1), got {label_smoothing}")
        if class_names is not None and num_classes is not None and len(class_names) != num_classes:
            raise ClassDataMismatchError(f"num_classes={num_classes} but {len(class_names)} class_names were given")
        self.label_smoothing = label_smoothing
        self.class_names: list[str] | None = list(class_names) if class_names is not None else None
        self.num_classes = len(class_names) if class_names is not None else num_classes
        self.misclassified: list[dict[str, Any]] = []
        self.last_test_confusion: Tensor | None = None

    # -- building -------------------------------------------------------------------------------------
    def build_classifier(self, num_classes: int) -> None:
        """Create the network for ``num_classes`` outputs."""
        raise NotImplementedError

    def build_network(self) -> None:
        if self.num_classes is None:
            raise ClassDataMismatchError(
                f"{type(self).__name__} does not know its classes: give num_classes or class_names, "
                "or train with a datamodule that has class_names"
            )
        if self.class_names is None:
            self.class_names = [str(i) for i in range(self.num_classes)]
        self.hparams["num_classes"] = self.num_classes
        self.hparams["class_names"] = list(self.class_names)
        self.build_classifier(self.num_classes)
        self.register_temperature()
        self.metrics = nn.ModuleDict(
            {
                "train_metrics": classification_metrics(self.num_classes, with_auroc=False),
                "val_metrics": classification_metrics(self.num_classes, with_auroc=True),
                "test_metrics": classification_metrics(self.num_classes, with_auroc=True),
            }
        )
        self.test_confusion = MulticlassConfusionMatrix(self.num_classes)

    def configure_from_data(self, datamodule: Any) -> None:
        data_names = getattr(datamodule, "class_names", None) if datamodule is not None else None
        if data_names is not None:
            data_names = list(data_names)
            if self.num_classes is not None and self.num_classes != len(data_names):
                raise ClassDataMismatchError(
                    f"the model has num_classes={self.num_classes} but the data has {len(data_names)} classes "
                    f"({', '.join(data_names[:10])}{', ...' if len(data_names) > 10 else ''}); "
                    "set model num_classes to match or leave it unset"
                )
            if self.class_names is None or all(n == str(i) for i, n in enumerate(self.class_names)):
                self.class_names = data_names
            self.num_classes = len(data_names)

    # -- contract pieces shared by classifiers --------------------------------------------------------
    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        target = batch[self.target_key]
        return F.cross_entropy(out.float(), target, label_smoothing=self.label_smoothing)

    def update_metrics(self, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        target = hard_targets(batch[self.target_key])
        probs = out.float().softmax(-1)
        self.metrics[f"{stage}_metrics"].update(probs, target)
        if stage == "test":
            self.test_confusion.update(probs, target)
            if len(self.misclassified) < self.max_misclassified:
                self._keep_misclassified(probs, target, batch)

    def _keep_misclassified(self, probs: Tensor, target: Tensor, batch: dict[str, Any]) -> None:
        conf, pred = probs.max(-1)
        names = self.class_names or [str(i) for i in range(probs.shape[-1])]
        for i in (pred != target).nonzero().flatten().tolist():
            if len(self.misclassified) >= self.max_misclassified:
                break
            row = {"id": _plain(batch["id"][i]) if "id" in batch else i, "label": names[int(target[i])],
                   "predicted": names[int(pred[i])], "confidence": float(conf[i])}
            row.update(self.example_inputs(batch, i))
            self.misclassified.append(row)

    def example_inputs(self, batch: dict[str, Any], i: int) -> dict[str, Any]:
        """What a person needs to see example ``i`` of ``batch`` (an ``image`` tensor or a ``text``)."""
        if isinstance(batch.get("image"), Tensor):
            return {"image": batch["image"][i].detach().cpu()}
        if isinstance(batch.get("text"), list | tuple):
            return {"text": str(batch["text"][i])}
        return {}

    def log_epoch_metrics(self, stage: str) -> None:
        collection = self.metrics[f"{stage}_metrics"]
        values = collection.compute()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val", sync_dist=False)
        collection.reset()

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        # the logits reach the callbacks' on_test_batch_end (calibration, conformal report) without a second forward
        return self._eval_step("test", batch)

    def on_test_epoch_start(self) -> None:
        self.test_confusion.reset()
        self.misclassified = []

    def on_test_epoch_end(self) -> None:
        self.last_test_confusion = self.test_confusion.compute().cpu()
        super().on_test_epoch_end()

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        probs = self.probabilities(self(batch))
        conf, idx = probs.max(-1)
        ids = batch.get("id", list(range(len(idx))))
        names = self.class_names or [str(i) for i in range(probs.shape[-1])]
        rows = [
            {"id": _plain(i), "label": names[k], "confidence": round(float(c), 6)}
            for i, k, c in zip(ids, idx.tolist(), conf.tolist())
        ]
        if self.prediction_sets is not None:
            for row, members in zip(rows, self.prediction_sets(probs)):
                row["prediction_set"] = "|".join(names[k] for k in members)
        return rows

    def write_test_report(self, out_dir: Any) -> list[Path]:
        from zoo.reporting.classification import write_classification_report

        if self.last_test_confusion is None:
            return []
        return write_classification_report(self.last_test_confusion, self.class_names or [], Path(out_dir))


def _plain(value: Any) -> Any:
    return value.item() if isinstance(value, Tensor) else value


__all__ = ["CALIBRATIONS", "Calibrated", "ClassificationTask", "ClassDataMismatchError", "classification_metrics",
           "hard_targets"]
