"""Cutting a tokenized text into the encoder's windows, shared by training (``zoo.data.text.long_text``) and the
exported predictors (``zoo.inference``), so a served request is cut exactly as ``zoo predict`` cuts it.

Windows are built from a text's tokens without special tokens, each then framed by the tokenizer's own special
tokens (:func:`frame`, so BERT, RoBERTa, ... get their own [CLS]/[SEP] or <s>/</s>); a text that fits in one window
gets exactly the ids plain truncation gives it. Token classification cuts on word boundaries (:func:`word_windows`)
and reads each word from the window where it has the most context (:func:`max_context_owners`). Pure Python and
torch: no training stack.
"""

from __future__ import annotations

import weakref
from typing import Any

import torch

#: each tokenizer's special tokens before and after a text, read once (kept beside the tokenizer, not on it, and
#: dropped with it)
_FRAMES: weakref.WeakKeyDictionary[Any, tuple[list[int], list[int]]] = weakref.WeakKeyDictionary()


def budget(tokenizer: Any, max_length: int) -> int:
    """Tokens of text in a window of ``max_length``: what the tokenizer's special tokens leave."""
    return max_length - tokenizer.num_special_tokens_to_add(pair=False)


def _frame_parts(tokenizer: Any) -> tuple[list[int], list[int]]:
    cached = _FRAMES.get(tokenizer)
    if cached is None:
        inner = tokenizer("a", add_special_tokens=False)["input_ids"]
        full = tokenizer("a", add_special_tokens=True)["input_ids"]
        at = next((i for i in range(len(full) - len(inner) + 1) if full[i:i + len(inner)] == inner), 0)
        cached = _FRAMES[tokenizer] = (full[:at], full[at + len(inner):])
    return cached


def frame(tokenizer: Any, body: list[int], fill: int | None = None) -> list[int]:
    """``body`` between the tokenizer's own special tokens, as ``tokenizer(text)`` frames a text ([CLS] ... [SEP],
    <s> ... </s>); read off a probe text, since transformers 5 dropped ``build_inputs_with_special_tokens``.
    With ``fill``, the special tokens' places hold ``fill`` instead (to frame a parallel list such as word ids)."""
    head, tail = _frame_parts(tokenizer)
    if fill is not None:
        head, tail = [fill] * len(head), [fill] * len(tail)
    return [*head, *body, *tail]


def head_tail(tokenizer: Any, body: list[int], max_length: int) -> list[int]:
    """The framed ids of ``body``, its middle cut out when it does not fit."""
    keep = budget(tokenizer, max_length)
    if len(body) > keep:
        head = keep // 4
        body = body[:head] + body[len(body) - (keep - head):]
    return frame(tokenizer, body)


def windows(tokenizer: Any, body: list[int], max_length: int, overlap: int, max_chunks: int) -> list[list[int]]:
    """Framed windows of ``body``: ``max_length`` tokens each, consecutive ones sharing ``overlap`` tokens, at most
    ``max_chunks`` (taken from the start)."""
    keep = budget(tokenizer, max_length)
    step = keep - overlap
    starts = list(range(0, max(1, len(body) - overlap), step))[:max_chunks] or [0]
    return [frame(tokenizer, body[s:s + keep]) for s in starts]


def word_spans_of(lengths: list[int], keep: int, overlap: int, max_chunks: int) -> list[tuple[int, int]]:
    """``[start, end)`` word ranges of at most ``keep`` sub-word tokens (a longer word alone, to be cut), each
    next one starting on the longest run of the previous one's last words that holds at most ``overlap`` tokens
    and leaves room for the word after them (never on its first word, so windows advance); at most
    ``max_chunks``, taken from the start."""
    spans: list[tuple[int, int]] = []
    start, n = 0, len(lengths)
    while len(spans) < max_chunks:
        end, used = start, 0
        while end < n and (end == start or used + lengths[end] <= keep):
            used += lengths[end]
            end += 1
        spans.append((start, end))
        if end >= n:
            break
        nxt, shared = end, 0
        while nxt - 1 > start and shared + lengths[nxt - 1] <= min(overlap, keep - lengths[end]):
            nxt -= 1
            shared += lengths[nxt]
        start = nxt
    return spans


def word_windows(tokenizer: Any, body: list[int], word_ids: list[int], max_length: int, overlap: int,
                 max_chunks: int) -> tuple[list[list[int]], list[list[int]], bool]:
    """Framed windows of whole words of ``body`` (a text's sub-word ids without special tokens; ``word_ids`` the
    word of each), each with its word ids (-1 on special tokens), and whether words were left beyond
    ``max_chunks`` windows. A text that fits gets one window: exactly the ids ``truncate`` gives it."""
    keep = budget(tokenizer, max_length)
    n_words = max(word_ids, default=-1) + 1
    lengths, offsets = [0] * n_words, [len(word_ids)] * (n_words + 1)
    for pos, w in enumerate(word_ids):
        lengths[w] += 1
        offsets[w] = min(offsets[w], pos)
    for w in range(n_words - 1, -1, -1):  # a word without tokens starts where the next one does
        offsets[w] = min(offsets[w], offsets[w + 1])
    spans = word_spans_of(lengths, keep, overlap, max_chunks)
    ids, wids = [], []
    for s, e in spans:
        a, b = offsets[s], min(offsets[e], offsets[s] + keep)
        ids.append(frame(tokenizer, body[a:b]))
        wids.append(frame(tokenizer, word_ids[a:b], fill=-1))
    return ids, wids, spans[-1][1] < n_words


def max_context_owners(window_word_ids: list[list[int]]) -> dict[int, int]:
    """For each word, the window it is read from: among the windows holding its first sub-token, the one where
    that token has the most tokens of context on its narrower side, then the longest, then the first (the
    "max context" rule of Hugging Face's question-answering and token-classification pipelines).
    ``window_word_ids``: per window, the word of each position, -1 on special tokens."""
    best: dict[int, tuple[tuple[int, int], int]] = {}
    for j, wids in enumerate(window_word_ids):
        body = [p for p, w in enumerate(wids) if w >= 0]
        if not body:
            continue
        a, b = body[0], body[-1]
        prev = -1
        for p, w in enumerate(wids):
            if w >= 0 and w != prev:
                score = (min(p - a, b - p), b - a)
                if w not in best or score > best[w][0]:
                    best[w] = (score, j)
            prev = w
    return {w: j for w, (_, j) in best.items()}


def pool_windows(logits: torch.Tensor, window_doc: torch.Tensor | None, how: str,
                 n_docs: int | None = None) -> torch.Tensor:
    """One row of logits per document: the rows of each document's windows (``window_doc[i]``: the document of
    row ``i``) pooled by ``mean`` or ``max``; without ``window_doc`` the logits are returned as they are."""
    if window_doc is None:
        return logits
    n_docs = int(window_doc.max()) + 1 if n_docs is None else n_docs
    index = window_doc.to(logits.device)[:, None].expand_as(logits)
    out = logits.new_zeros(n_docs, logits.shape[-1])
    return out.scatter_reduce(0, index, logits, reduce="mean" if how == "mean" else "amax", include_self=False)


__all__ = ["budget", "frame", "head_tail", "max_context_owners", "pool_windows", "windows", "word_spans_of",
           "word_windows"]
