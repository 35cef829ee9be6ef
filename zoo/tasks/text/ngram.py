"""N-gram text classifiers: no pretrained weights, any script, seconds to minutes on a CPU.

:class:`FastTextClassifier` is fastText's supervised model (Joulin et al., 2016): hashed word and character
n-grams, each with a learned vector, averaged (``nn.EmbeddingBag``) and fed to a linear head. ``embed`` returns
that averaged bag vector, so FGM / PGD perturb it and mixup mixes it like any other embedding.

The features come from :class:`~zoo.data.text.ngrams.NgramTextDataModule` (hashing is data-side); the model
records what they mean (``feature_space``: kind, size, fingerprint) and refuses data whose features mean something
else, which would otherwise silently score every text against the wrong rows.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.tasks.base import Optimizer, Scheduler
from zoo.tasks.classification import ClassDataMismatchError, ClassificationTask


class BagOfNgramsTask(ClassificationTask):
    """What the n-gram classifiers share: the data's feature space, its checks, and the linear head."""

    #: how zoo export / zoo serve read and answer it (zoo.inference.family)
    export_family = "ngram_text_classification"
    #: ``precision: auto`` keeps the n-gram models in fp32 (zoo.scale.resolve_precision)
    fp32_reason = "n-gram models: sparse bags and one linear layer gain nothing from bf16 autocast"

    #: the feature kind this model reads (``hashing`` / ``tfidf``), checked against the data's
    feature_kind = "hashing"

    def __init__(self, *, feature_space: dict[str, Any] | None = None, dropout: float = 0.0, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.feature_space = dict(feature_space) if feature_space else None
        if not 0.0 <= dropout < 1.0:
            raise ClassDataMismatchError(f"--model.init_args.dropout must be in [0, 1), got {dropout}")
        self.dropout_p = dropout

    def configure_from_data(self, datamodule: Any) -> None:
        super().configure_from_data(datamodule)
        space = getattr(datamodule, "feature_space", None) if datamodule is not None else None
        if space is None:
            if datamodule is not None and self.feature_space is None:
                raise ClassDataMismatchError(
                    f"{type(self).__name__} reads bags of n-grams: use data class_path ngram_text "
                    f"(features: {self.feature_kind}), not {type(datamodule).__name__}")
            return
        if space["kind"] != self.feature_kind:
            raise ClassDataMismatchError(f"{type(self).__name__} needs --data.init_args.features "
                                         f"{self.feature_kind}, the data "
                                         f"has features: {space['kind']}")
        if self.feature_space is not None and self.feature_space != space:
            raise ClassDataMismatchError(
                f"the data's n-gram features ({space['kind']}, {space['num_features']} features, fingerprint "
                f"{space['fingerprint']}) are not those the model was trained on ({self.feature_space['num_features']}"
                f" features, fingerprint {self.feature_space['fingerprint']}); use the data settings of the training "
                "run (n-gram ranges, buckets, training file)")
        self.feature_space = dict(space)

    def build_classifier(self, num_classes: int) -> None:
        if self.feature_space is None:
            raise ClassDataMismatchError(f"{type(self).__name__} does not know its features: train it with the "
                                         "ngram_text data, or give feature_space")
        self.hparams["feature_space"] = dict(self.feature_space)
        self.build_features(int(self.feature_space["num_features"]))
        self.head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(self.embedding_dim, num_classes))

    def build_features(self, num_features: int) -> None:
        raise NotImplementedError

    @property
    def embedding_dim(self) -> int:
        raise NotImplementedError

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.head(emb)

    def export_meta(self) -> dict[str, Any]:
        return {"task": "text_classification", "class_names": self.class_names, "features": self.feature_space}


class FastTextClassifier(BagOfNgramsTask):
    """fastText-style classifier: mean of hashed word / character n-gram vectors -> linear head.

    Args:
        dim: size of the n-gram vectors (fastText's ``-dim``).
        dropout: dropout on the averaged vector.
        feature_space: set from the data (kept in checkpoints); leave unset.
        lr, optimizer, ...: as every zoo model. fastText's own lr is 0.1 with SGD; AdamW at 1e-2 is the
            default here (an embedding table learns from sparse rows, so it wants a large step).
    """

    feature_kind = "hashing"

    def __init__(
        self,
        dim: int = 64,
        dropout: float = 0.0,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        feature_space: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        lr: float = 1e-2,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "linear",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing, lr=lr,
                         weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio, feature_space=feature_space, dropout=dropout)
        if dim < 1:
            raise ClassDataMismatchError(f"--model.init_args.dim must be >= 1, got {dim}")
        self.save_hyperparameters()
        self.dim = dim
        if self.num_classes is not None and self.feature_space is not None:
            self.build()

    @property
    def embedding_dim(self) -> int:
        return self.dim

    def build_features(self, num_features: int) -> None:
        # row 0 is the pad feature, with weight 0 in every bag (not padding_idx, which ONNX export refuses);
        # fastText's uniform(-1/dim, 1/dim) start
        self.bag = nn.EmbeddingBag(num_features + 1, self.dim, mode="sum")
        with torch.no_grad():
            self.bag.weight.uniform_(-1.0 / self.dim, 1.0 / self.dim)
            self.bag.weight[0].zero_()

    def embed(self, batch: dict[str, Any]) -> Tensor:
        # weights are each n-gram's share of its text, so the weighted sum is fastText's average
        return self.bag(batch["input_ids"], per_sample_weights=batch["weights"].to(self.bag.weight.dtype))


__all__ = ["BagOfNgramsTask", "FastTextClassifier"]
