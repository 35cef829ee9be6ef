"""Bag-of-n-gram features for the n-gram text models: hashed word and character n-grams (fastText style) or
TF-IDF over a vocabulary fitted on the training split.

The featurisation itself lives in :mod:`zoo.inference.ngrams` (scikit-learn's vectorizers), shared with the
exported predictor so a served text gets the features the model was trained on. Work is on the data side, done
once in ``setup``; a batch carries each text's non-zero features as ``input_ids`` (feature index + 1, 0 pads) and
``weights`` (the feature's share of the text, or its TF-IDF value), which ``nn.EmbeddingBag`` or a scatter turns
into the model's input. No tokenizer and no pretrained vocabulary: any script works.
"""

from __future__ import annotations

import logging
from typing import Any

from zoo.data.text.batching import TokenizedSet
from zoo.data.text.classification import Table, TextDataModule
from zoo.data.text.readers import TextDataError
from zoo.inference.ngrams import FEATURES, NgramFeaturizer, NgramSettings
from zoo.inference.segmenters import CHOICES as SEGMENTER_CHOICES
from zoo.inference.segmenters import SegmenterError, choose_segmenter
from zoo.registry import DATAMODULES

log = logging.getLogger("zoo.data")


def _ngram_range(value: Any, flag: str) -> tuple[int, int] | None:
    if value is None:
        return None
    try:
        lo, hi = (int(value), int(value)) if isinstance(value, int) else (int(value[0]), int(value[1]))
    except (TypeError, ValueError, IndexError):
        raise TextDataError(f"data.{flag} must be null, one int or [min, max], got {value!r}") from None
    if not 1 <= lo <= hi <= 8:
        raise TextDataError(f"data.{flag} must satisfy 1 <= min <= max <= 8, got [{lo}, {hi}]")
    return lo, hi


@DATAMODULES.register("ngram_text", tags=("text",),
                      summary="text classification as bags of hashed word/char n-grams or TF-IDF (any script)")
class NgramTextDataModule(TextDataModule):
    """The same tables and built-in corpora as :class:`~zoo.data.text.TextDataModule`, as bags of n-grams.

    Args:
        features: ``hashing`` (word and character n-grams hashed into ``buckets``; the ``fasttext`` model) or
            ``tfidf`` (sublinear TF-IDF, vocabulary fitted on the training split; the ``tfidf`` model).
        word_ngrams: word n-gram lengths ``[min, max]`` (null: none).
        char_ngrams: character n-gram lengths inside word boundaries ``[min, max]`` (null: none).
        buckets: hash buckets (``hashing``).
        max_features: vocabulary cap, most frequent first (``tfidf``; null: no cap).
        lowercase: lowercase before extracting n-grams.
        segmenter: word segmentation for the word n-grams of scripts without spaces: ``jieba`` (Chinese),
            ``fugashi`` (Japanese, MeCab with unidic-lite), ``auto`` (chosen from the training texts' script) or
            ``none``; the character n-grams are unchanged.
        text_column, label_column, files, dataset, splits, batch sizes, ...: as ``TextDataModule``
            (``tokenizer`` and ``max_length`` are not used).
    """

    def __init__(self, features: str = "hashing", word_ngrams: tuple[int, int] | None = (1, 2),
                 char_ngrams: tuple[int, int] | None = (2, 4),
                 buckets: int = 2 ** 17, max_features: int | None = 100_000, lowercase: bool = True,
                 segmenter: str = "none", **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if features not in FEATURES:
            raise TextDataError(f"data.features must be one of {', '.join(FEATURES)}; got {features!r}")
        self.features = features
        self.word_ngrams = _ngram_range(word_ngrams, "word_ngrams")
        self.char_ngrams = _ngram_range(char_ngrams, "char_ngrams")
        if self.word_ngrams is None and self.char_ngrams is None:
            raise TextDataError("data.word_ngrams and data.char_ngrams are both null: no features to extract")
        if buckets < 16:
            raise TextDataError(f"data.buckets must be >= 16, got {buckets}")
        if max_features is not None and max_features < 2:
            raise TextDataError(f"data.max_features must be >= 2 or null, got {max_features}")
        if self.text_pair_column:
            raise TextDataError("data.text_pair_column is not supported by ngram_text; join the two columns")
        self.buckets, self.max_features, self.lowercase = int(buckets), max_features, lowercase
        if segmenter not in SEGMENTER_CHOICES:
            raise TextDataError(f"data.segmenter must be one of {', '.join(SEGMENTER_CHOICES)}; got {segmenter!r}")
        #: ``auto`` becomes jieba / fugashi / none when the training texts are read (``_fit``)
        self.segmenter = segmenter
        #: the fitted featuriser (``setup``); ``zoo export`` writes its settings / vocabulary beside the graph
        self.featurizer: NgramFeaturizer | None = None

    # -- what the model needs to know ----------------------------------------------------------------
    @property
    def tokenizer(self) -> Any:
        return None

    def pad_token_id(self) -> int:
        return 0

    @property
    def feature_space(self) -> dict[str, Any]:
        """What the features mean: the model records it and refuses data whose features mean something else."""
        self.setup("fit")
        if self.featurizer is None:
            raise TextDataError("internal: n-gram features asked for before they were fitted on the training split")
        return self.featurizer.space()

    # -- features --------------------------------------------------------------------------------------
    def settings(self) -> NgramSettings:
        return NgramSettings(self.features, self.word_ngrams, self.char_ngrams, self.buckets, self.max_features,
                             self.lowercase, self.segmenter)

    def _fit(self, train_texts: list[str]) -> None:
        if self.multi_label:
            raise TextDataError("ngram_text supports single-label data only (the fasttext / tfidf models); drop "
                                "data.label_separator or use the text_classifier model")
        if self.segmenter == "auto":
            self.segmenter = choose_segmenter(train_texts)
            log.info("zoo: data.segmenter auto -> %s (from the training texts' script)", self.segmenter)
        featurizer = NgramFeaturizer(self.settings())
        try:
            featurizer.fit(train_texts)
        except SegmenterError:
            raise
        except ValueError as err:
            raise TextDataError(str(err)) from None
        self.featurizer = featurizer

    def _tokenize(self, table: Table, split: str) -> TokenizedSet:
        texts = table["text"]
        if not texts:
            return TokenizedSet([])
        if self.featurizer is None:
            raise TextDataError("internal: n-gram features used before they were fitted on the training split")
        lookup = {c: k for k, c in enumerate(self._class_names or [])}
        rows = []
        for i, (ids, weights) in enumerate(self.featurizer.bags(texts)):
            row: dict[str, Any] = {"input_ids": ids.tolist(), "weights": weights.tolist(), "id": table["id"][i],
                                   "text": texts[i]}
            if "labels" in table:
                row["label"] = lookup[table["labels"][i][0]]
            rows.append(row)
        return TokenizedSet(rows)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits and self.featurizer is None:
            tables = self._read()
            train = tables["train"]
            parts = self._train_parts([x[0] for x in train["labels"]], tables)
            self._fit([train["text"][i] for i in parts["train"]])
        super().setup(stage)


__all__ = ["FEATURES", "NgramTextDataModule"]
