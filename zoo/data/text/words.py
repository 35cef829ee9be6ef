"""Words and their character spans, and word tags carried onto sub-word tokens."""

from __future__ import annotations

from zoo.inference.families.token import WORD_RE  # one pattern for training data and served requests


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words and their character spans in ``text`` (for predicting on raw sentences)."""
    spans = [(m.start(), m.end()) for m in WORD_RE.finditer(text)]
    return [text[a:b] for a, b in spans], spans


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
    """Words joined by single spaces, and each word's character span in the result."""
    spans, pos = [], 0
    for w in words:
        spans.append((pos, pos + len(w)))
        pos += len(w) + 1
    return " ".join(words), spans


def align_labels(word_ids: list[int | None], word_tags: list[int] | None) -> tuple[list[int], list[int]]:
    """Label the first sub-token of each word with its tag and every other position with -100.
    Returns (labels, first_token_index_of_each_kept_word)."""
    labels, firsts, prev = [], [], None
    for pos, w in enumerate(word_ids):
        if w is None or w == prev:
            labels.append(-100)
        else:
            labels.append(word_tags[w] if word_tags is not None else 0)
            firsts.append(pos)
        prev = w
    return labels, firsts


__all__ = ["WORD_RE", "align_labels", "join_words", "split_words"]
