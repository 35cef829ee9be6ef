"""``TextClassifier``: single- and multi-label text (or text-pair) classification on a Hugging Face encoder."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.backbones.text import check_pooling, resolve_encoder
from zoo.errors import ConfigError
from zoo.tasks.base import Optimizer, Scheduler
from zoo.tasks.classification import ClassDataMismatchError, ClassificationTask
from zoo.tasks.text.encoder import CHUNK_POOLING, EncoderMixin, pool_windows
from zoo.tasks.text.labels import LabelMode, mode_for


class TextClassifier(EncoderMixin, ClassificationTask):
    """Text (or text-pair) classifier on a local Hugging Face encoder.

    Args:
        encoder: ``minilm`` (packaged all-MiniLM-L6-v2), ``use_multilingual`` (USE multilingual v3, 16 languages;
            set ``data.tokenizer: use_multilingual`` too) or a local HF model directory.
        pooling: ``mean`` over real tokens or ``cls`` (first token); USE pools itself and ignores it.
        peft: adapters as a dict (see :mod:`zoo.backbones.text`), e.g. ``{method: lora, r: 8}``; unset = full fine-tune.
        multi_label: sigmoid outputs and binary cross-entropy; taken from the datamodule when unset.
        thresholds: decision threshold(s) for multi-label, one float or one per class.
        class_weights: ``balanced`` (inverse frequency in the training data) or one weight per class; for
            multi-label these weight the positive term of each label.
        dropout: dropout on the pooled vector.
        chunk_pooling: ``mean`` or ``max`` over the window logits of a long text (``data.long_text: chunks``).
        freeze_encoder: train the head only (a linear probe on the encoder's sentence vectors); checkpoints then
            hold the head alone and the encoder is rebuilt from ``encoder`` on load.
    """

    #: how zoo export / zoo serve read and answer it (zoo.inference.family)
    export_family = "text_classification"

    label_mode: LabelMode

    def __init__(
        self,
        encoder: str = "minilm",
        pooling: str = "mean",
        peft: dict[str, Any] | None = None,
        multi_label: bool | None = None,
        thresholds: float | list[float] = 0.5,
        class_weights: str | list[float] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "linear",
        warmup_ratio: float = 0.06,
        chunk_pooling: str = "mean",
        freeze_encoder: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing, lr=lr,
                         weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        resolve_encoder(encoder)  # a bad name or directory fails at config time
        self.encoder_name = encoder
        self.pooling = check_pooling(pooling)
        self.peft_spec = dict(peft) if peft else None
        self.multi_label = multi_label
        self.thresholds_arg = thresholds
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError("--model.init_args.class_weights must be 'balanced' or a list of floats, got "
                             f"{class_weights!r}")
        self.class_weights_arg = class_weights
        self.dropout_p = dropout
        if chunk_pooling not in CHUNK_POOLING:
            raise ConfigError(f"--model.init_args.chunk_pooling must be one of {', '.join(CHUNK_POOLING)}; got "
                              f"{chunk_pooling!r}")
        self.chunk_pooling = chunk_pooling
        self.freeze_encoder = bool(freeze_encoder)
        #: training label counts and number of texts, for ``class_weights: balanced``
        self._label_counts: tuple[Tensor, float] | None = None
        if self.num_classes is not None and multi_label is not None:
            self.build()

    # -- data and building ----------------------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        data_multi = getattr(datamodule, "multi_label", None) if datamodule is not None else None
        if data_multi is not None:
            if self._built and self.multi_label != data_multi:
                raise ClassDataMismatchError(f"the model was built with multi_label={self.multi_label} but the "
                                             f"data is {'multi' if data_multi else 'single'}-label")
            self.multi_label = bool(data_multi)
        if self.class_weights_arg == "balanced" and datamodule is not None and not self._built:
            counts = torch.tensor(datamodule.class_counts(), dtype=torch.float32)
            self._label_counts = (counts, float(len(datamodule.splits["train"])))
        super().configure_from_data(datamodule)

    def build_classifier(self, num_classes: int) -> None:
        self.multi_label = bool(self.multi_label)
        self.hparams["multi_label"] = self.multi_label
        self.build_encoder_and_head(num_classes)
        if self.freeze_encoder:
            self.encoder.requires_grad_(False)
        mode = mode_for(self.multi_label)
        weights = self._class_weights(mode, num_classes)
        self.hparams["class_weights"] = weights.tolist() if weights is not None else None
        th = self.thresholds_arg
        th = [float(th)] * num_classes if isinstance(th, int | float) else [float(x) for x in th]
        if len(th) != num_classes:
            raise ClassDataMismatchError(f"--model.init_args.thresholds has {len(th)} values for {num_classes} classes")
        self.label_mode = mode(weights, torch.tensor(th), label_smoothing=self.label_smoothing)

    def _class_weights(self, mode: type[LabelMode], num_classes: int) -> Tensor | None:
        arg = self.class_weights_arg
        if arg is None:
            return None
        if isinstance(arg, str):
            if self._label_counts is None:  # rebuilt from a checkpoint: the weights were saved as a list
                saved = self.hparams.get("class_weights")
                return torch.tensor(saved, dtype=torch.float32) if isinstance(saved, list) else None
            return mode.balanced_weights(*self._label_counts)
        if len(arg) != num_classes:
            raise ClassDataMismatchError(f"--model.init_args.class_weights has {len(arg)} values for "
                                         f"{num_classes} classes")
        return torch.tensor([float(x) for x in arg])

    def uses_adapters(self) -> bool:
        return super().uses_adapters() or self.freeze_encoder

    def temperature_size(self) -> int:
        return int(self.num_classes or 1) if self.multi_label else 1

    def probabilities(self, logits: Tensor) -> Tensor:
        """Calibrated probabilities: a softmax over the classes, or a sigmoid per label for multi-label."""
        scaled = self.scaled_logits(logits)
        return scaled.sigmoid() if self.multi_label else scaled.softmax(-1)

    @property
    def thresholds(self) -> Tensor:
        return self.label_mode.thresholds

    # -- contract -------------------------------------------------------------------------------------
    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        vector = self.sentence_vector(emb, batch, self.pooling)
        return pool_windows(self.head(vector), batch, self.chunk_pooling)

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.label_mode.loss(out, batch[self.target_key])

    # -- metrics, reports and predictions: single- or multi-label (zoo.tasks.text.labels) ------------
    def update_metrics(self, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        self.label_mode.update_metrics(self, stage, out, batch)

    def log_epoch_metrics(self, stage: str) -> None:
        self.label_mode.log_epoch_metrics(self, stage)

    def on_test_epoch_start(self) -> None:
        self.label_mode.on_test_epoch_start(self)

    def on_test_epoch_end(self) -> None:
        self.label_mode.on_test_epoch_end(self)

    def write_test_report(self, out_dir: Any) -> list[Path]:
        return self.label_mode.write_test_report(self, Path(out_dir))

    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        return self.label_mode.predict_rows(self, batch, batch_idx)

    def export_meta(self) -> dict[str, Any]:
        return {"task": "text_classification", "class_names": self.class_names, "pooling": self.pooling,
                "multi_label": self.multi_label, "thresholds": self.thresholds.tolist()}


__all__ = ["TextClassifier"]
