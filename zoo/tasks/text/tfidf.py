""":class:`TfidfClassifier`: a linear model on sparse TF-IDF vectors (multinomial logistic regression), trained
through the zoo contract so techniques, reports, checkpoints and DDP apply as to any model.

The data carries each text's non-zero TF-IDF entries (:class:`~zoo.data.text.ngrams.NgramTextDataModule` with
``features: tfidf``); ``embed`` scatters them into the dense TF-IDF vector, which is what FGM / PGD perturb (an
adversarial bag-of-words). The vector is as wide as the vocabulary (``data.max_features`` per analyzer), which for
a batch of 32 and 200k features is 25 MB: cheaper than a sparse matmul's bookkeeping at these sizes.
"""

from __future__ import annotations

from typing import Any

from torch import Tensor

from zoo.tasks.base import Optimizer, Scheduler
from zoo.tasks.text.ngram import BagOfNgramsTask


class TfidfClassifier(BagOfNgramsTask):
    """Linear classifier on TF-IDF features (word and/or character n-grams, vocabulary from the training split).

    Args:
        dropout: dropout on the TF-IDF vector (drops features).
        weight_decay: L2 penalty on the weights (logistic regression's C, the other way round).
        feature_space: set from the data (kept in checkpoints); leave unset.
    """

    feature_kind = "tfidf"

    def __init__(
        self,
        dropout: float = 0.0,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        feature_space: dict[str, Any] | None = None,
        label_smoothing: float = 0.0,
        lr: float = 2e-2,
        weight_decay: float = 1e-4,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "linear",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing, lr=lr,
                         weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio, feature_space=feature_space, dropout=dropout)
        self.save_hyperparameters()
        self.num_features = 0
        if self.num_classes is not None and self.feature_space is not None:
            self.build()

    @property
    def embedding_dim(self) -> int:
        return self.num_features

    def build_features(self, num_features: int) -> None:
        self.num_features = num_features

    def embed(self, batch: dict[str, Any]) -> Tensor:
        ids, weights = batch["input_ids"], batch["weights"]
        dense = weights.new_zeros(ids.shape[0], self.num_features + 1)
        # column 0 collects the padding (weight 0) and is dropped
        return dense.scatter_add(1, ids, weights)[:, 1:]


__all__ = ["TfidfClassifier"]
