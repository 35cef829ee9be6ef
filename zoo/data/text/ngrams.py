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

import torch

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
        raise TextDataError(f"--data.init_args.{flag} must be null, one int or [min, max], got {value!r}") from None
    if not 1 <= lo <= hi <= 8:
        raise TextDataError(f"--data.init_args.{flag} must satisfy 1 <= min <= max <= 8, got [{lo}, {hi}]")
    return lo, hi


class LazyBags(TokenizedSet):
    """A split's bags of n-grams, featurised on first use: ``zoo predict`` featurises only the texts it answers
    and ``zoo test`` only the splits it scores, not the whole training file. Texts and labels (the baseline,
    the data summary) and the length are there without featurising."""

    def __init__(self, table: dict[str, Any], featurizer: NgramFeaturizer, lookup: dict[str, int]) -> None:
        self.table, self.featurizer, self.lookup = table, featurizer, lookup
        self._rows: list[dict[str, Any]] | None = None
        self._bags: list[Any] | None = None

    def __len__(self) -> int:
        return len(self.table["text"])

    @property
    def labels(self) -> list[int] | None:
        return [self.lookup[x[0]] for x in self.table["labels"]] if "labels" in self.table else None

    def plain_rows(self) -> list[dict[str, Any]]:
        """``text`` / ``label`` / ``id`` of each row, without features."""
        labels = self.labels
        return [{"text": t, "id": i, **({"label": labels[k]} if labels is not None else {})}
                for k, (t, i) in enumerate(zip(self.table["text"], self.table["id"]))]

    def without(self, ids: set[str]) -> LazyBags:
        """A copy without the rows whose id is in ``ids`` (``data.dedupe`` / ``data.exclude_rows``), still lazy."""
        keep = [k for k, i in enumerate(self.table["id"]) if str(i) not in ids]
        table = {c: [v[k] for k in keep] if isinstance(v, list) and len(v) == len(self) else v
                 for c, v in self.table.items()}
        out = LazyBags(table, self.featurizer, self.lookup)
        if self._bags is not None:
            out.take_bags([self._bags[k] for k in keep])
        return out

    def take_bags(self, bags: list[Any]) -> None:
        """Use bags already computed for these texts (the training split's, from the fitting pass)."""
        self._bags = bags

    @property
    def rows(self) -> list[dict[str, Any]]:  # type: ignore[override]
        if self._rows is None:
            texts, labels = self.table["text"], self.labels
            bags, self._bags = (self._bags if self._bags is not None else self.featurizer.bags(texts)), None
            self._rows = []
            for i, (ids, weights) in enumerate(bags):
                row: dict[str, Any] = {"input_ids": ids.tolist(), "weights": weights.tolist(),
                                       "id": self.table["id"][i], "text": texts[i]}
                if labels is not None:
                    row["label"] = labels[i]
                self._rows.append(row)
        return self._rows

    @rows.setter
    def rows(self, value: list[dict[str, Any]]) -> None:
        self._rows = value


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
            raise TextDataError(f"--data.init_args.features must be one of {', '.join(FEATURES)}; got {features!r}")
        self.features = features
        self.word_ngrams = _ngram_range(word_ngrams, "word_ngrams")
        self.char_ngrams = _ngram_range(char_ngrams, "char_ngrams")
        if self.word_ngrams is None and self.char_ngrams is None:
            raise TextDataError("--data.init_args.word_ngrams and --data.init_args.char_ngrams are both null: no "
                                "features to extract")
        if buckets < 16:
            raise TextDataError(f"--data.init_args.buckets must be >= 16, got {buckets}")
        if max_features is not None and max_features < 2:
            raise TextDataError(f"--data.init_args.max_features must be >= 2 or null, got {max_features}")
        if self.text_pair_column:
            raise TextDataError("--data.init_args.text_pair_column is not supported by ngram_text; join the two "
                                "columns")
        self.buckets, self.max_features, self.lowercase = int(buckets), max_features, lowercase
        if segmenter not in SEGMENTER_CHOICES:
            raise TextDataError(f"--data.init_args.segmenter must be one of {', '.join(SEGMENTER_CHOICES)}; got "
                                f"{segmenter!r}")
        #: ``auto`` becomes jieba / fugashi / none when the training texts are read (``_fit``)
        self.segmenter = segmenter
        #: the fitted featuriser (``setup``); ``zoo export`` writes its settings / vocabulary beside the graph
        self.featurizer: NgramFeaturizer | None = None
        #: the training texts' bags from the fitting pass, which the train split's LazyBags takes (once)
        self._fitted_bags: tuple[list[str], list[Any]] | None = None

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
                                "--data.init_args.label_separator or use the text_classifier model")
        if self.segmenter == "auto":
            self.segmenter = choose_segmenter(train_texts)
            log.info("zoo: data.segmenter auto -> %s (from the training texts' script)", self.segmenter)
        featurizer = NgramFeaturizer(self.settings())
        try:
            bags = featurizer.fit_bags(train_texts)
        except SegmenterError:
            raise
        except ValueError as err:
            raise TextDataError(str(err)) from None
        self.featurizer = featurizer
        self._fitted_bags = (train_texts, bags)

    def _tokenize(self, table: Table, split: str) -> TokenizedSet:
        if not table["text"]:
            return TokenizedSet([])
        if self.featurizer is None:
            raise TextDataError("internal: n-gram features used before they were fitted on the training split")
        out = LazyBags(table, self.featurizer, {c: k for k, c in enumerate(self._class_names or [])})
        fitted = self._fitted_bags
        if split == "train" and fitted is not None and fitted[0] == table["text"]:
            out.take_bags(fitted[1])
            self._fitted_bags = None
        return out

    # -- the fitted featuriser travels in checkpoints (Lightning saves a datamodule's state_dict) -------------
    def state_dict(self) -> dict[str, Any]:
        if self.featurizer is None:
            return {}
        state = self.featurizer.state()
        if "idf" in state:  # tensors: checkpoints are read with weights_only=True, which refuses numpy arrays
            state["idf"] = [torch.from_numpy(x) for x in state["idf"]]
        return {"featurizer": state}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Use the featuriser fitted in training (``zoo test`` / ``predict`` / ``export`` read it from the
        checkpoint, :func:`zoo.checkpoints.restore_data_state`), instead of fitting it again."""
        saved = (state or {}).get("featurizer")
        if saved is None:
            return
        try:
            featurizer = NgramFeaturizer.from_state(
                {**saved, "idf": [x.numpy() if isinstance(x, torch.Tensor) else x for x in saved.get("idf", [])]})
        except ValueError as err:
            raise TextDataError(f"the checkpoint's n-gram featuriser cannot be used: {err}") from None
        if self.featurizer is not None and self.featurizer.space() == featurizer.space():
            return
        if featurizer.settings != self.settings():
            log.warning("zoo: the n-gram settings of the checkpoint (%s) replace the data settings given (%s)",
                        _describe(featurizer.settings), _describe(self.settings()))
        self.featurizer, self.splits = featurizer, {}

    def setup(self, stage: str | None = None) -> None:
        if not self.splits and self.featurizer is None:
            tables = self._read()
            train = tables["train"]
            parts = self._train_parts([x[0] for x in train["labels"]], tables)
            self._fit([train["text"][i] for i in parts["train"]])
        super().setup(stage)


def _describe(settings: NgramSettings) -> str:
    return (f"features {settings.features}, word_ngrams {settings.word_ngrams}, char_ngrams {settings.char_ngrams}, "
            f"buckets {settings.buckets}, max_features {settings.max_features}, lowercase {settings.lowercase}")


__all__ = ["FEATURES", "LazyBags", "NgramTextDataModule"]
