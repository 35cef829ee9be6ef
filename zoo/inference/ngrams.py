"""Bag-of-n-gram features of the n-gram text models — hashed word and character n-grams (``fasttext``) or TF-IDF
over a vocabulary fitted on the training split (``tfidf``) — shared by the training data
(:class:`zoo.data.text.ngrams.NgramTextDataModule`) and the exported predictor, so a served text gets the very
features the model was trained on.

Both come from scikit-learn's C-backed vectorizers (murmurhash3 ``HashingVectorizer``, ``TfidfVectorizer``)
rather than a Python n-gram loop: a BBC article has thousands of character n-grams. A text's features are its
non-zero entries, as ``input_ids`` (feature index + 1; 0 pads) and ``weights`` (the feature's share of the text,
or its TF-IDF value). An export keeps them without pickles: the settings in ``zoo_export.json``
(``preprocessing.ngrams``) and, for TF-IDF, the fitted vocabulary (``ngram_vocabulary.json``) and idf vectors
(``ngram_idf.safetensors``), from which a ``TfidfVectorizer`` is rebuilt.
"""

from __future__ import annotations

import hashlib
import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from zoo.inference.runners import ExportFormatError
from zoo.inference.segmenters import word_tokenizer

FEATURES = ("hashing", "tfidf")
#: a word is any run of word characters in any script (sklearn's default drops one-character words, which are
#: whole words in Chinese or Japanese)
WORD_PATTERN = r"(?u)\b\w+\b"
VOCABULARY_FILE, IDF_FILE = "ngram_vocabulary.json", "ngram_idf.safetensors"


def _range(value: Any) -> tuple[int, int] | None:
    return None if value is None else (int(value[0]), int(value[1]))


@dataclass(frozen=True)
class NgramSettings:
    """What the vectorizers are built from (validated by the datamodule, which names the flags)."""

    features: str = "hashing"
    word_ngrams: tuple[int, int] | None = (1, 2)
    char_ngrams: tuple[int, int] | None = (2, 4)
    buckets: int = 2 ** 17
    max_features: int | None = 100_000
    lowercase: bool = True
    #: word segmentation before the word n-grams (:mod:`zoo.inference.segmenters`): none, jieba, fugashi
    segmenter: str = "none"

    def analyzers(self) -> list[tuple[str, tuple[int, int], str | None]]:
        """(sklearn analyzer, n-gram range, token pattern) of each feature block, in column order."""
        specs = [("word", self.word_ngrams, WORD_PATTERN), ("char_wb", self.char_ngrams, None)]
        return [(a, rng, p) for a, rng, p in specs if rng is not None]

    def to_json(self) -> dict[str, Any]:
        return {"features": self.features, "word_ngrams": list(self.word_ngrams) if self.word_ngrams else None,
                "char_ngrams": list(self.char_ngrams) if self.char_ngrams else None, "buckets": self.buckets,
                "max_features": self.max_features, "lowercase": self.lowercase, "segmenter": self.segmenter,
                # what the settings mean to scikit-learn, for a reader without zoo
                "analyzers": [a for a, _, _ in self.analyzers()], "word_pattern": WORD_PATTERN,
                "scheme": ("HashingVectorizer(alternate_sign=False, norm=None) per analyzer, blocks side by side, "
                           "each row divided by its sum" if self.features == "hashing" else
                           "TfidfVectorizer(sublinear_tf=True, norm='l2') per analyzer, blocks side by side, times "
                           "1/sqrt(blocks)") + "; input_ids = column + 1, weights = the values"}

    @classmethod
    def from_json(cls, value: dict[str, Any]) -> NgramSettings:
        max_features = value.get("max_features")
        if value["features"] not in FEATURES:
            raise ValueError(f"features {value['features']!r} is not one of {', '.join(FEATURES)}")
        return cls(features=str(value["features"]), word_ngrams=_range(value.get("word_ngrams")),
                   char_ngrams=_range(value.get("char_ngrams")), buckets=int(value["buckets"]),
                   max_features=None if max_features is None else int(max_features),
                   lowercase=bool(value["lowercase"]), segmenter=str(value.get("segmenter", "none")))


class NgramFeaturizer:
    """Texts -> bags of n-gram features; ``fit`` learns the TF-IDF vocabulary (hashing needs no fitting)."""

    def __init__(self, settings: NgramSettings, fitted: list[tuple[list[str], np.ndarray]] | None = None) -> None:
        """``fitted``: each TF-IDF block's vocabulary (terms in column order) and idf vector, as an export holds."""
        if settings.features not in FEATURES:
            raise ValueError(f"n-gram features must be one of {', '.join(FEATURES)}, got {settings.features!r}")
        self.settings = settings
        self.vectorizers = self._build(fitted)

    def _build(self, fitted: list[tuple[list[str], np.ndarray]] | None = None) -> list[Any]:
        from sklearn.feature_extraction.text import HashingVectorizer, TfidfVectorizer

        s, out = self.settings, []
        for k, (analyzer, rng, pattern) in enumerate(s.analyzers()):
            kw: dict[str, Any] = {"analyzer": analyzer, "ngram_range": rng, "lowercase": s.lowercase}
            if pattern:
                kw["token_pattern"] = pattern
                tokenizer = word_tokenizer(s.segmenter)
                if tokenizer is not None:
                    kw.update(tokenizer=tokenizer, token_pattern=None)
            if s.features == "hashing":
                out.append(HashingVectorizer(n_features=s.buckets, alternate_sign=False, norm=None, **kw))
                continue
            vec = TfidfVectorizer(sublinear_tf=True, min_df=1, max_features=s.max_features, dtype=np.float32, **kw)
            if fitted is not None:
                terms, idf = fitted[k]
                vec.set_params(vocabulary={t: i for i, t in enumerate(terms)})
                vec.idf_ = idf  # a public setter: the fitted TfidfVectorizer without refitting
            out.append(vec)
        return out

    def fit(self, texts: list[str]) -> NgramFeaturizer:
        """Fit the TF-IDF vocabularies; ``ValueError`` naming the analyzer when the texts have none of its n-grams."""
        self.fit_bags(texts)
        return self

    def fit_bags(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Fit on ``texts`` and return their bags (:meth:`bags`) from the same pass: sklearn's ``fit`` builds the
        training matrix anyway, and analysing long texts a second time cost as much as a third of the fit."""
        if self.settings.features != "tfidf":
            return self.bags(texts)
        blocks = []
        for v in self.vectorizers:
            try:
                blocks.append(v.fit_transform(texts).tocsr())
            except ValueError as err:  # sklearn: "empty vocabulary"
                raise ValueError(f"TF-IDF found no {v.analyzer} n-grams in the training texts: {err}") from None
        return self._rows(self._combine(blocks))

    @property
    def num_features(self) -> int:
        if self.settings.features == "hashing":
            return self.settings.buckets * len(self.vectorizers)
        return sum(len(v.vocabulary_) for v in self.vectorizers)

    def vocabularies(self) -> list[list[str]]:
        return [[str(t) for t in v.get_feature_names_out()] for v in self.vectorizers]

    def space(self) -> dict[str, Any]:
        """What the features mean (kind, size, fingerprint): the model records it and refuses other features."""
        s = self.settings
        if s.features == "hashing":
            key = f"hashing:{s.word_ngrams}:{s.char_ngrams}:{s.buckets}:{s.lowercase}"
            if s.segmenter != "none":
                key += f":{s.segmenter}"
        else:
            key = "tfidf:" + "\n".join(t for terms in self.vocabularies() for t in terms)
        return {"kind": s.features, "num_features": int(self.num_features),
                "fingerprint": hashlib.sha256(key.encode()).hexdigest()[:16]}

    def matrix(self, texts: list[str]) -> Any:
        """The ``[texts, features]`` CSR matrix."""
        return self._combine([v.transform(texts).tocsr() for v in self.vectorizers])

    def _combine(self, mats: list[Any]) -> Any:
        """The analyzers' blocks side by side, weighted as :meth:`NgramSettings.to_json` states."""
        import scipy.sparse as sp

        out = sp.hstack(mats, format="csr") if len(mats) > 1 else mats[0]
        if self.settings.features == "hashing":
            # fastText averages a text's n-gram vectors: each feature's share of the text's n-grams
            sums = np.asarray(out.sum(axis=1)).ravel()
            out = sp.diags(1.0 / np.maximum(sums, 1.0)) @ out
        else:
            # the word and char blocks are each L2-normalised by sklearn; keep the whole vector at unit length
            out = out.multiply(1.0 / np.sqrt(len(mats))).tocsr()
        return out.tocsr()

    def bags(self, texts: list[str]) -> list[tuple[np.ndarray, np.ndarray]]:
        """Each text's ``(input_ids, weights)``: feature index + 1 (int64) and value (float32)."""
        return self._rows(self.matrix(texts))

    @staticmethod
    def _rows(m: Any) -> list[tuple[np.ndarray, np.ndarray]]:
        rows = []
        for i in range(m.shape[0]):
            lo, hi = m.indptr[i], m.indptr[i + 1]
            ids = m.indices[lo:hi].astype(np.int64) + 1
            weights = m.data[lo:hi].astype(np.float32)
            if not len(ids):  # nothing this vocabulary knows: one pad feature of weight 0 keeps the bag non-empty
                ids, weights = np.zeros(1, np.int64), np.zeros(1, np.float32)
            rows.append((ids, weights))
        return rows

    # -- a checkpoint's copy -----------------------------------------------------------------------------------
    def state(self) -> dict[str, Any]:
        """The fitted featuriser as plain values and arrays (settings, each TF-IDF block's terms and idf), which a
        checkpoint keeps so that ``zoo test`` / ``predict`` / ``export`` / ``serve`` never refit it."""
        out: dict[str, Any] = {"settings": self.settings.to_json()}
        if self.settings.features == "tfidf":
            out["vocabularies"] = self.vocabularies()
            out["idf"] = [np.ascontiguousarray(v.idf_, dtype=np.float32) for v in self.vectorizers]
        return out

    @classmethod
    def from_state(cls, state: dict[str, Any]) -> NgramFeaturizer:
        """The featuriser :meth:`state` describes (``ValueError`` when the state is incomplete)."""
        try:
            settings = NgramSettings.from_json(state["settings"])
            fitted = None
            if settings.features == "tfidf":
                fitted = [([str(t) for t in terms], np.asarray(idf, dtype=np.float32))
                          for terms, idf in zip(state["vocabularies"], state["idf"], strict=True)]
                if len(fitted) != len(settings.analyzers()):
                    raise ValueError(f"{len(fitted)} TF-IDF blocks for {len(settings.analyzers())} analyzers")
        except (KeyError, TypeError, ValueError) as err:
            raise ValueError(f"the saved n-gram featuriser is incomplete ({err!r})") from None
        return cls(settings, fitted)

    # -- an export folder's copy ----------------------------------------------------------------------------
    def save(self, folder: Path) -> dict[str, str]:
        """Write what :meth:`load` needs besides the settings; returns the ``files`` entries of ``zoo_export.json``."""
        if self.settings.features == "hashing":
            return {}
        from safetensors.numpy import save_file

        analyzers = [a for a, _, _ in self.settings.analyzers()]
        (folder / VOCABULARY_FILE).write_text(json.dumps(dict(zip(analyzers, self.vocabularies())),
                                                         ensure_ascii=False), encoding="utf-8")
        save_file({a: np.ascontiguousarray(v.idf_) for a, v in zip(analyzers, self.vectorizers)},
                  str(folder / IDF_FILE))
        return {"ngram_vocabulary": VOCABULARY_FILE, "ngram_idf": IDF_FILE}

    @classmethod
    def load(cls, folder: Path, meta: dict[str, Any]) -> NgramFeaturizer:
        """The featurizer of an export folder, checked against the feature space the model was trained on."""
        pre = meta.get("preprocessing", {})
        try:
            settings = NgramSettings.from_json(pre["ngrams"])
        except (KeyError, TypeError, ValueError, IndexError) as err:
            raise ExportFormatError(f"{folder}: preprocessing.ngrams in zoo_export.json is incomplete ({err!r}); "
                                    "re-export the run") from None
        featurizer = cls(settings, _read_tfidf(folder, meta, settings) if settings.features == "tfidf" else None)
        expected, got = pre.get("feature_space") or {}, featurizer.space()
        if expected and expected != got:
            raise ExportFormatError(f"{folder}: the n-gram features rebuilt from the folder ({got['num_features']} "
                                    f"features, fingerprint {got['fingerprint']}) are not those the model was trained "
                                    f"on ({expected.get('num_features')} features, fingerprint "
                                    f"{expected.get('fingerprint')}); the vocabulary files were changed: re-export")
        return featurizer


def _read_tfidf(folder: Path, meta: dict[str, Any], settings: NgramSettings) -> list[tuple[list[str], np.ndarray]]:
    from safetensors.numpy import load_file

    files = meta.get("files", {})
    vocab_path = folder / files.get("ngram_vocabulary", VOCABULARY_FILE)
    idf_path = folder / files.get("ngram_idf", IDF_FILE)
    try:
        vocab = json.loads(vocab_path.read_text(encoding="utf-8"))
        idf = load_file(str(idf_path))
    except (OSError, ValueError) as err:
        raise ExportFormatError(f"{folder}: the TF-IDF vocabulary ({vocab_path.name}) or idf vectors "
                                f"({idf_path.name}) cannot be read: {err}") from None
    out = []
    for analyzer, _, _ in settings.analyzers():
        terms, weights = vocab.get(analyzer), idf.get(analyzer)
        if not isinstance(terms, list) or weights is None or len(terms) != len(weights):
            raise ExportFormatError(f"{folder}: {vocab_path.name} / {idf_path.name} hold no matching '{analyzer}' "
                                    "vocabulary and idf vector; re-export the run")
        out.append(([str(t) for t in terms], weights))
    return out


__all__ = ["FEATURES", "IDF_FILE", "VOCABULARY_FILE", "WORD_PATTERN", "NgramFeaturizer", "NgramSettings"]
