"""Texts longer than the encoder's window (``data.long_text``): ``truncate`` keeps the start, ``head_tail`` keeps
the start and the end, ``chunks`` cuts the whole text into overlapping windows whose logits the model pools.

``head_tail`` keeps a quarter of the budget from the head and the rest from the tail: the split Sun et al. (2019,
"How to Fine-Tune BERT for Text Classification?") found best on long reviews and news (128 head + 382 tail of
510). Windows are built from the text's tokens without special tokens, each then framed by the tokenizer's own
special tokens (:func:`frame`, so BERT, RoBERTa, ... get their own [CLS]/[SEP] or <s>/</s>); a text that
fits in one window gets exactly the ids ``truncate`` gives it.

Token classification cuts on word boundaries instead (:func:`word_windows`), so every word keeps its first
sub-token (the one that carries its label) inside a window; a word seen by several windows is read from the one
where it has the most context on its narrower side (:func:`max_context_owners`).
"""

from __future__ import annotations

from typing import Any

from zoo.data.text.readers import TextDataError
from zoo.inference.windows import (  # the windows a served request is cut into are the ones training used
    budget,
    frame,
    head_tail,
    max_context_owners,
    windows,
    word_spans_of,
    word_windows,
)

LONG_TEXT = ("truncate", "head_tail", "chunks")


def check_long_text(long_text: str, chunk_overlap: int | None, max_chunks: int, max_length: int,
                    allowed: tuple[str, ...] = LONG_TEXT) -> int:
    """Checks the options; returns the overlap (default: a quarter of ``max_length``)."""
    if long_text not in allowed:
        raise TextDataError(f"--data.init_args.long_text must be one of {', '.join(allowed)}; got {long_text!r}")
    if max_chunks < 1:
        raise TextDataError(f"--data.init_args.max_chunks must be >= 1, got {max_chunks}")
    if chunk_overlap is None:
        return max_length // 4
    if not 0 <= chunk_overlap < max_length // 2:
        raise TextDataError(f"--data.init_args.chunk_overlap must be in [0, max_length / 2 = {max_length // 2}), "
                            f"got {chunk_overlap}")
    return chunk_overlap


def encode_long(tokenizer: Any, texts: list[str], long_text: str, max_length: int, overlap: int,
                max_chunks: int) -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
    """Ragged arrays for the tokenization cache: ``input_ids`` (one sequence per window, or per text for
    ``head_tail``) and ``n_windows`` (``[[k]]`` per text); ``truncated`` counts texts that did not fit."""
    bodies = tokenizer(texts, add_special_tokens=False, truncation=False, return_attention_mask=False,
                       verbose=False)["input_ids"]
    keep = budget(tokenizer, max_length)
    ids: list[list[int]] = []
    counts: list[list[int]] = []
    dropped = 0
    for body in bodies:
        if long_text == "head_tail":
            seqs = [head_tail(tokenizer, body, max_length)]
        else:
            seqs = windows(tokenizer, body, max_length, overlap, max_chunks)
            dropped += len(body) > (keep - overlap) * (max_chunks - 1) + keep
        ids += seqs
        counts.append([len(seqs)])
    truncated = sum(len(b) > keep for b in bodies)
    return {"input_ids": ids, "n_windows": counts}, {"truncated": int(truncated), "beyond_max_chunks": int(dropped)}


__all__ = ["LONG_TEXT", "budget", "check_long_text", "encode_long", "frame", "head_tail", "max_context_owners",
           "windows", "word_spans_of", "word_windows"]
