"""Bag-of-n-gram features for the n-gram text models: hashed word and character n-grams (fastText style) or
TF-IDF over a vocabulary fitted on the training split.

Both come from scikit-learn's C-backed vectorizers (murmurhash3 ``HashingVectorizer``, ``TfidfVectorizer``)
rather than a Python n-gram loop: a BBC article has thousands of character n-grams. Work is on the data side, done
once in ``setup``; a batch carries each text's non-zero features as ``input_ids`` (feature index + 1, 0 pads) and
``weights`` (the feature's share of the text, or its TF-IDF value), which ``nn.EmbeddingBag`` or a scatter turns
into the model's input. No tokenizer and no pretrained vocabulary: any script works.
"""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from zoo.data.text.batching import TokenizedSet
from zoo.data.text.classification import Table, TextDataModule
from zoo.data.text.readers import TextDataError
from zoo.registry import DATAMODULES

FEATURES = ("hashing", "tfidf")


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


def _vectorizers(features: str, word: tuple[int, int] | None, char: tuple[int, int] | None, buckets: int,
                 max_features: int | None, lowercase: bool) -> list[Any]:
    from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

    # a word is any run of word characters in any script (sklearn's default drops one-character words, which
    # are whole words in Chinese or Japanese)
    specs = [("word", word, r"(?u)\b\w+\b"), ("char_wb", char, None)]
    out = []
    for analyzer, rng, pattern in specs:
        if rng is None:
            continue
        kw: dict[str, Any] = {"analyzer": analyzer, "ngram_range": rng, "lowercase": lowercase}
        if pattern:
            kw["token_pattern"] = pattern
        if features == "hashing":
            out.append(HashingVectorizer(n_features=buckets, alternate_sign=False, norm=None, **kw))
        else:
            out.append(TfidfVectorizer(sublinear_tf=True, min_df=1, max_features=max_features, dtype=np.float32,
                                       **kw))
    return out


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
        text_column, label_column, files, dataset, splits, batch sizes, ...: as ``TextDataModule``
            (``tokenizer`` and ``max_length`` are not used).
    """

    def __init__(self, features: str = "hashing", word_ngrams: tuple[int, int] | None = (1, 2),
                 char_ngrams: tuple[int, int] | None = (2, 4),
                 buckets: int = 2 ** 17, max_features: int | None = 100_000, lowercase: bool = True,
                 **kwargs: Any) -> None:
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
        self._vecs: list[Any] | None = None

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
        if self.features == "hashing":
            size = self.buckets * len(self._vecs or [])
            key = f"hashing:{self.word_ngrams}:{self.char_ngrams}:{self.buckets}:{self.lowercase}"
        else:
            vocab = [t for v in self._vecs or [] for t in v.get_feature_names_out()]
            size = len(vocab)
            key = "tfidf:" + "\n".join(vocab)
        return {"kind": self.features, "num_features": int(size),
                "fingerprint": hashlib.sha256(key.encode()).hexdigest()[:16]}

    # -- features --------------------------------------------------------------------------------------
    def _fit(self, train_texts: list[str]) -> None:
        if self.multi_label:
            raise TextDataError("ngram_text supports single-label data only (the fasttext / tfidf models); drop "
                                "data.label_separator or use the text_classifier model")
        self._vecs = _vectorizers(self.features, self.word_ngrams, self.char_ngrams, self.buckets,
                                  self.max_features, self.lowercase)
        if self.features == "tfidf":
            for v in self._vecs:
                try:
                    v.fit(train_texts)
                except ValueError as err:  # sklearn: "empty vocabulary"
                    raise TextDataError(f"TF-IDF found no {v.analyzer} n-grams in the training texts: {err}") from None

    def _matrix(self, texts: list[str]) -> Any:
        import scipy.sparse as sp

        mats = [v.transform(texts).tocsr() for v in self._vecs or []]
        out = sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0]
        if self.features == "hashing":
            # fastText averages a text's n-gram vectors: each feature's share of the text's n-grams
            sums = np.asarray(out.sum(axis=1)).ravel()
            out = sp.diags(1.0 / np.maximum(sums, 1.0)) @ out
        else:
            # the word and char blocks are each L2-normalised by sklearn; keep the whole vector at unit length
            out = out.multiply(1.0 / np.sqrt(len(mats))).tocsr()
        return out.tocsr()

    def _tokenize(self, table: Table, split: str) -> TokenizedSet:
        texts = table["text"]
        if not texts:
            return TokenizedSet([])
        if self._vecs is None:
            raise TextDataError("internal: n-gram features used before they were fitted on the training split")
        m = self._matrix(texts)
        lookup = {c: k for k, c in enumerate(self._class_names or [])}
        rows = []
        for i in range(m.shape[0]):
            lo, hi = m.indptr[i], m.indptr[i + 1]
            ids = (m.indices[lo:hi] + 1).tolist()
            weights = m.data[lo:hi].astype(np.float32).tolist()
            if not ids:  # nothing this vocabulary knows: one pad feature of weight 0 keeps the bag non-empty
                ids, weights = [0], [0.0]
            row: dict[str, Any] = {"input_ids": ids, "weights": weights, "id": table["id"][i], "text": texts[i]}
            if "labels" in table:
                row["label"] = lookup[table["labels"][i][0]]
            rows.append(row)
        return TokenizedSet(rows)

    def setup(self, stage: str | None = None) -> None:
        if not self.splits and self._vecs is None:
            tables = self._read()
            train = tables["train"]
            parts = self._train_parts([x[0] for x in train["labels"]], tables)
            self._fit([train["text"][i] for i in parts["train"]])
        super().setup(stage)


__all__ = ["FEATURES", "NgramTextDataModule"]
