"""Seconds-fast (model, datamodule) pairs for the registry's ``tiny_case``: a 2-layer, hidden-32 BERT built on
the fly (never the packaged 83 MB MiniLM) on small subsets of the shipped text data."""

from __future__ import annotations

from pathlib import Path
from typing import Any

from zoo.backbones.text import tiny_bert_dir
from zoo.backbones.use import tiny_use_dir
from zoo.data.text import TextDataModule, TokenDataModule
from zoo.tasks.text.classifier import TextClassifier
from zoo.tasks.text.crf_tagger import CRFTagger
from zoo.tasks.text.token import TokenClassifier

#: the tiny encoder directory per ``tmp_dir``, built once per process
_TINY_DIRS: dict[str, str] = {}


def _tiny_encoder_dir(tmp_dir: Any = None) -> str:
    key = str(tmp_dir) if tmp_dir is not None else ""
    if key not in _TINY_DIRS:
        _TINY_DIRS[key] = str(tiny_bert_dir(Path(tmp_dir) / "tiny_bert" if tmp_dir is not None else None))
    return _TINY_DIRS[key]


def _tiny_use_dir(tmp_dir: Any = None) -> str:
    import tempfile

    key = "use:" + (str(tmp_dir) if tmp_dir is not None else "")
    if key not in _TINY_DIRS:
        root = Path(tmp_dir) / "tiny_use" if tmp_dir is not None else Path(tempfile.gettempdir()) / "zoo_tiny_use"
        _TINY_DIRS[key] = str(tiny_use_dir(root))
    return _TINY_DIRS[key]


def _cache_dir(tmp_dir: Any) -> str | None:
    return str(Path(tmp_dir) / "cache") if tmp_dir is not None else None


def tiny_text_case(tmp_dir: Any = None) -> tuple[TextClassifier, TextDataModule]:
    """Tiny BERT on 96 packaged tweets (3 sentiment classes); seconds on a CPU."""
    enc = _tiny_encoder_dir(tmp_dir)
    model = TextClassifier(encoder=enc, pooling="mean", lr=3e-3)
    data = TextDataModule(dataset="tweets_sentiment", tokenizer=enc, max_length=32, max_samples=96, batch_size=16,
                          cache_dir=_cache_dir(tmp_dir))
    return model, data


def tiny_use_text_case(tmp_dir: Any = None) -> tuple[TextClassifier, TextDataModule]:
    """A USE-shaped encoder (random weights, dims 16-32, a 200-piece SentencePiece model trained on the fly) on
    96 packaged tweets: the ``use_multilingual`` code path without the 65 MB package table."""
    enc = _tiny_use_dir(tmp_dir)
    model = TextClassifier(encoder=enc, lr=3e-3)
    data = TextDataModule(dataset="tweets_sentiment", tokenizer=enc, max_length=32, max_samples=96, batch_size=16,
                          cache_dir=_cache_dir(tmp_dir))
    return model, data


def tiny_token_case(tmp_dir: Any = None) -> tuple[TokenClassifier, TokenDataModule]:
    """Tiny BERT on a subset of the shipped IOB2 demo file; seconds on a CPU."""
    enc = _tiny_encoder_dir(tmp_dir)
    model = TokenClassifier(encoder=enc, lr=3e-3)
    data = TokenDataModule(dataset="ner_demo", tokenizer=enc, max_length=48, max_samples=96, batch_size=16,
                           cache_dir=_cache_dir(tmp_dir))
    return model, data


def tiny_crf_tagger_case(tmp_dir: Any = None) -> tuple[CRFTagger, TokenDataModule]:
    """A small char-CNN + BiLSTM + CRF on word-level features of the shipped IOB2 demo file; seconds on a CPU."""
    model = CRFTagger(word_dim=16, char_dim=8, char_filters=16, subword_dim=16, hidden=16, lr=1e-2)
    data = TokenDataModule(dataset="ner_demo", tokenizer="words", max_length=48, max_samples=96, batch_size=16,
                           cache_dir=_cache_dir(tmp_dir))
    return model, data


__all__ = ["tiny_crf_tagger_case", "tiny_text_case", "tiny_token_case", "tiny_use_text_case"]
