"""Word segmentation for the n-gram models' word features, for scripts that write no spaces between words:
``jieba`` (Chinese) and ``fugashi`` with ``unidic-lite`` (Japanese, MeCab). Without a segmenter a Chinese sentence
is one "word" to the word analyzer (the whole run of Han characters), so only the character n-grams carry
information; with one, word 1-2-grams become real words and word pairs.

Shared by the training data and the exported predictor (the setting travels in ``preprocessing.ngrams``), so a
served text is segmented as the training texts were.
"""

from __future__ import annotations

import re
from collections.abc import Callable
from functools import cache

from zoo.errors import ZooError

SEGMENTERS = ("none", "jieba", "fugashi")
#: accepted by the datamodule: ``auto`` picks one of :data:`SEGMENTERS` from the training texts
CHOICES = (*SEGMENTERS, "auto")
_WORD = re.compile(r"\w+")
_HAN = re.compile(r"[\u3400-\u4dbf\u4e00-\u9fff\uf900-\ufaff]")
_KANA = re.compile(r"[\u3040-\u30ff]")


class SegmenterError(ZooError, ValueError):
    """An unknown segmenter, or one whose package is not installed."""


@cache
def _jieba() -> Callable[[str], list[str]]:
    try:
        import jieba
    except ImportError:
        raise SegmenterError("segmenter 'jieba' needs the jieba package (pip install 'zoo[multilingual]')") from None
    import logging

    jieba.setLogLevel(logging.WARNING)  # it announces loading its dictionary on every process start
    return jieba.lcut


@cache
def _fugashi() -> Callable[[str], list[str]]:
    try:
        import fugashi
        import unidic_lite  # noqa: F401  (the dictionary fugashi's Tagger finds)
    except ImportError:
        raise SegmenterError("segmenter 'fugashi' needs fugashi and unidic-lite "
                             "(pip install 'zoo[multilingual]')") from None
    tagger = fugashi.Tagger()
    return lambda text: [w.surface for w in tagger(text)]


def word_tokenizer(name: str) -> Callable[[str], list[str]] | None:
    """The word tokenizer scikit-learn's word analyzer calls (words of word characters only, as the default
    pattern keeps), or None for ``none``."""
    if name == "none":
        return None
    if name not in SEGMENTERS:
        raise SegmenterError(f"segmenter must be one of {', '.join(CHOICES)}; got {name!r}")
    split = _jieba() if name == "jieba" else _fugashi()
    return lambda text: [w for piece in split(text) for w in _WORD.findall(piece)]


def choose_segmenter(texts: list[str], sample: int = 2000) -> str:
    """``jieba`` for mostly-Han text without kana, ``fugashi`` where kana make up a share of the CJK letters,
    else ``none`` (spaces already separate the words)."""
    head = "".join(texts[:sample])
    letters = sum(c.isalpha() for c in head) or 1
    han, kana = len(_HAN.findall(head)), len(_KANA.findall(head))
    if (han + kana) / letters < 0.3:
        return "none"
    return "fugashi" if kana / max(han + kana, 1) > 0.1 else "jieba"


__all__ = ["CHOICES", "SEGMENTERS", "SegmenterError", "choose_segmenter", "word_tokenizer"]
