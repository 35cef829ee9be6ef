"""One label per text or any number of them: the part of :class:`~zoo.tasks.text.TextClassifier` that differs.

The registry name ``text_classifier`` serves both, and whether a run is multi-label is often known only once
the data is bound (``multi_label`` is taken from the datamodule when unset), after LightningCLI has created the
model. So the classifier stays one class and builds one of these modes with its head; the mode owns the loss,
the metrics, the test report and the prediction rows.

Both are submodules of the task, so their metrics and buffers follow it across devices; their buffers are not
persistent, so checkpoints hold the same tensors whichever mode wrote them.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torchmetrics import MetricCollection
from torchmetrics.classification import (
    MultilabelAccuracy,
    MultilabelExactMatch,
    MultilabelF1Score,
    MultilabelPrecision,
    MultilabelRecall,
    MultilabelStatScores,
)

from zoo.contract import hard_targets
from zoo.reporting.text import write_multilabel_report, write_worst_examples
from zoo.tasks.classification import ClassificationTask, _plain


class LabelMode(nn.Module):
    """Loss, metrics, report and prediction rows of a text classifier; ``task`` is the classifier itself."""

    multi_label: bool

    def __init__(self, class_weight: Tensor | None, thresholds: Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__()
        self.register_buffer("class_weight", class_weight, persistent=False)
        self.register_buffer("thresholds", thresholds, persistent=False)
        self.label_smoothing = label_smoothing

    @staticmethod
    def balanced_weights(counts: Tensor, n_texts: float) -> Tensor:
        """Class weights for ``class_weights: balanced`` from the training label counts."""
        raise NotImplementedError

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        raise NotImplementedError

    def update_metrics(self, task: Any, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        raise NotImplementedError

    def log_epoch_metrics(self, task: Any, stage: str) -> None:
        raise NotImplementedError

    def on_test_epoch_start(self, task: Any) -> None:
        raise NotImplementedError

    def on_test_epoch_end(self, task: Any) -> None:
        raise NotImplementedError

    def write_test_report(self, task: Any, out_dir: Path) -> list[Path]:
        raise NotImplementedError

    def predict_rows(self, task: Any, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        raise NotImplementedError


class SingleLabel(LabelMode):
    """Softmax over the classes: :class:`ClassificationTask`'s metrics, report and rows, plus a table of the
    most confident test errors with their texts."""

    multi_label = False

    def __init__(self, class_weight: Tensor | None, thresholds: Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__(class_weight, thresholds, label_smoothing)
        self.test_errors: list[dict[str, Any]] = []

    @staticmethod
    def balanced_weights(counts: Tensor, n_texts: float) -> Tensor:
        return counts.sum() / (len(counts) * counts.clamp(min=1))

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return F.cross_entropy(out.float(), target, weight=self.class_weight, label_smoothing=self.label_smoothing)

    def update_metrics(self, task: Any, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        ClassificationTask.update_metrics(task, stage, out, batch)
        if stage == "test":
            self._keep_errors(task.probabilities(out), hard_targets(batch[task.target_key]), batch)

    def _keep_errors(self, probs: Tensor, target: Tensor, batch: dict[str, Any]) -> None:
        conf, pred = probs.max(-1)
        texts = batch.get("text") or [""] * len(pred)
        ids = batch.get("id") or list(range(len(pred)))
        for i in torch.nonzero(pred != target).flatten().tolist():
            self.test_errors.append({"id": _plain(ids[i]), "true": int(target[i]), "predicted": int(pred[i]),
                                     "confidence": float(conf[i]), "p_true": float(probs[i, target[i]]),
                                     "text": texts[i]})

    def log_epoch_metrics(self, task: Any, stage: str) -> None:
        ClassificationTask.log_epoch_metrics(task, stage)

    def on_test_epoch_start(self, task: Any) -> None:
        self.test_errors = []
        ClassificationTask.on_test_epoch_start(task)

    def on_test_epoch_end(self, task: Any) -> None:
        ClassificationTask.on_test_epoch_end(task)

    def write_test_report(self, task: Any, out_dir: Path) -> list[Path]:
        names = task.class_names or []
        rows = [{**r, "true": names[r["true"]], "predicted": names[r["predicted"]]} for r in self.test_errors]
        return ClassificationTask.write_test_report(task, out_dir) + write_worst_examples(rows, out_dir)

    def predict_rows(self, task: Any, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        return ClassificationTask.predict_step(task, batch, batch_idx)


def _multilabel_metrics(num_classes: int) -> MetricCollection:
    return MetricCollection({
        "f1_micro": MultilabelF1Score(num_classes, average="micro"),
        "f1_macro": MultilabelF1Score(num_classes, average="macro"),
        "precision_macro": MultilabelPrecision(num_classes, average="macro"),
        "recall_macro": MultilabelRecall(num_classes, average="macro"),
        "acc": MultilabelAccuracy(num_classes, average="micro"),
        "exact_match": MultilabelExactMatch(num_classes),
    })


class MultiLabel(LabelMode):
    """A sigmoid per class and a decision threshold per class; binary cross-entropy with the class weights as
    ``pos_weight``; micro / macro F1, exact match and a per-label report."""

    multi_label = True

    def __init__(self, class_weight: Tensor | None, thresholds: Tensor, label_smoothing: float = 0.0) -> None:
        super().__init__(class_weight, thresholds, label_smoothing)
        num_classes = len(thresholds)
        # keyed like ClassificationTask's: a bare "train" would shadow nn.Module.train
        self.metrics = nn.ModuleDict({f"{s}_metrics": _multilabel_metrics(num_classes)
                                      for s in ("train", "val", "test")})
        self.test_label_stats = MultilabelStatScores(num_classes, average=None)
        self.last_label_stats: Tensor | None = None

    @staticmethod
    def balanced_weights(counts: Tensor, n_texts: float) -> Tensor:
        # BCE pos_weight: negatives per positive, capped so a label seen once does not swamp the loss
        return ((n_texts - counts) / counts.clamp(min=1)).clamp(max=100.0)

    def loss(self, out: Tensor, target: Tensor) -> Tensor:
        return F.binary_cross_entropy_with_logits(out.float(), target.float(), pos_weight=self.class_weight)

    def update_metrics(self, task: Any, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        preds = (task.probabilities(out) >= self.thresholds).long()
        target = batch[task.target_key].round().long()
        self.metrics[f"{stage}_metrics"].update(preds, target)
        if stage == "test":
            self.test_label_stats.update(preds, target)

    def log_epoch_metrics(self, task: Any, stage: str) -> None:
        values = self.metrics[f"{stage}_metrics"].compute()
        task.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val")
        self.metrics[f"{stage}_metrics"].reset()

    def on_test_epoch_start(self, task: Any) -> None:
        self.test_label_stats.reset()

    def on_test_epoch_end(self, task: Any) -> None:
        self.last_label_stats = self.test_label_stats.compute().cpu()
        self.log_epoch_metrics(task, "test")

    def write_test_report(self, task: Any, out_dir: Path) -> list[Path]:
        if self.last_label_stats is None:
            return []
        return write_multilabel_report(self.last_label_stats, task.class_names or [], out_dir)

    def predict_rows(self, task: Any, batch: dict[str, Any], batch_idx: int) -> list[dict[str, Any]]:
        probs = task.probabilities(task(batch))
        names = task.class_names or []
        ids = batch.get("id", list(range(len(probs))))
        rows = []
        for i, p in zip(ids, probs):
            chosen = [names[k] for k in torch.nonzero(p >= self.thresholds).flatten().tolist()]
            rows.append({"id": _plain(i), "labels": "|".join(chosen),
                         "scores": json.dumps({n: round(float(x), 4) for n, x in zip(names, p)})})
        return rows


def mode_for(multi_label: bool) -> type[LabelMode]:
    return MultiLabel if multi_label else SingleLabel


__all__ = ["LabelMode", "MultiLabel", "SingleLabel", "mode_for"]
