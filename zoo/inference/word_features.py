"""Word-level features of the ``crf_tagger``: per word a hashed word id, hashed character ids and the pieces of
the multilingual USE-m3 SentencePiece model. Shared by the training data (``data.tokenizer: words``) and the
exported tagger's family, so a served request is featurised exactly as ``zoo fit`` featurised its training words.

Hashing instead of vocabularies: nothing to build, store or look up for words and characters of any script
(crc32 is stable across processes and platforms, unlike Python's ``hash``). Pieces keep their SentencePiece ids
(+1, 0 pads); the model maps the ones it saw in training to its own rows.
"""

from __future__ import annotations

import zlib
from pathlib import Path
from typing import Any

#: ``data.tokenizer`` value that selects these features instead of a Hugging Face tokenizer
WORDS = "words"
SP_MODEL_FILE = "sentencepiece.model"


class WordFeaturiser:
    """``features(words)`` -> ``{"input_ids": [word bucket], "chars": [[char bucket]], "pieces": [[piece + 1]]}``.

    Args:
        sp_model: a SentencePiece model file (the USE-m3 one by default, read from the installed package), or
            None for no piece features.
        word_buckets / char_buckets: hash buckets of lower-cased words and of characters (0 is padding).
        max_chars / max_pieces: per word, the characters (first and last halves kept) and pieces kept.
    """

    #: what the padding collator fills with (the datamodule asks a tokenizer for it)
    pad_token_id = 0
    unk_token = None
    name = WORDS

    def __init__(self, sp_model: str | Path | None, word_buckets: int = 50_000, char_buckets: int = 8_192,
                 max_chars: int = 20, max_pieces: int = 8) -> None:
        self.sp_model = str(sp_model) if sp_model else None
        self.word_buckets, self.char_buckets = word_buckets, char_buckets
        self.max_chars, self.max_pieces = max_chars, max_pieces
        self._sp: Any = None

    @property
    def sp(self) -> Any:
        if self._sp is None and self.sp_model:
            import sentencepiece

            self._sp = sentencepiece.SentencePieceProcessor(model_file=self.sp_model)
        return self._sp

    def config(self) -> dict[str, Any]:
        """What a model and an export need to agree with these features."""
        return {"word_buckets": self.word_buckets, "char_buckets": self.char_buckets, "max_chars": self.max_chars,
                "max_pieces": self.max_pieces, "pieces": bool(self.sp_model)}

    def _bucket(self, text: str, buckets: int) -> int:
        return zlib.crc32(text.encode("utf-8", "surrogatepass")) % (buckets - 1) + 1

    def _chars(self, word: str) -> list[int]:
        if len(word) > self.max_chars:  # the ends of a long word carry its affixes: keep both
            half = self.max_chars // 2
            word = word[:half] + word[len(word) - (self.max_chars - half):]
        return [self._bucket(c, self.char_buckets) for c in word] or [1]

    def features(self, words: list[str]) -> dict[str, list[Any]]:
        out: dict[str, list[Any]] = {"input_ids": [self._bucket(w.lower(), self.word_buckets) for w in words],
                                     "chars": [self._chars(w) for w in words]}
        if self.sp is not None:
            pieces = self.sp.encode(list(words))
            out["pieces"] = [[p + 1 for p in ps[:self.max_pieces]] or [self.sp.unk_id() + 1] for ps in pieces]
        return out


def featuriser_from(config: dict[str, Any], sp_model: str | Path | None) -> WordFeaturiser:
    """The featuriser a model or an export recorded (:meth:`WordFeaturiser.config`)."""
    return WordFeaturiser(sp_model if config.get("pieces") else None, int(config["word_buckets"]),
                          int(config["char_buckets"]), int(config["max_chars"]), int(config["max_pieces"]))


__all__ = ["SP_MODEL_FILE", "WORDS", "WordFeaturiser", "featuriser_from"]
