"""Rows of word-level features (``data.tokenizer: words``, for the ``crf_tagger``): one position per word, so
``max_length`` and the windows of ``long_text: chunks`` count words. The rows have the shape of the sub-word rows
(``input_ids``, ``labels`` with one label per position, ``word_spans``, ``cut_tags`` ...) plus per word its
``chars`` and ``pieces``, so batching, the metrics, the entity report and the most-frequent-tag baseline read them
unchanged."""

from __future__ import annotations

from typing import Any

from zoo.inference.windows import max_context_owners, word_spans_of
from zoo.inference.word_features import WordFeaturiser

FEATURE_KEYS = ("input_ids", "chars", "pieces")


def word_windows_of(n_words: int, max_length: int, overlap: int, max_chunks: int) -> list[list[int]]:
    """The word indices of each window (``long_text: chunks``): ``max_length`` words, consecutive windows sharing
    up to ``overlap`` words, at most ``max_chunks``."""
    return [list(range(s, e)) for s, e in word_spans_of([1] * n_words, max_length, overlap, max_chunks)]


def _take(feats: dict[str, list[Any]], idx: list[int]) -> dict[str, list[Any]]:
    return {k: [v[i] for i in idx] for k, v in feats.items()}


def truncated_row(feats: dict[str, list[Any]], tags: list[int] | None, spans: list[tuple[int, int]], text: str,
                  ident: str, max_length: int, train: bool) -> dict[str, Any]:
    """The first ``max_length`` words; the gold tags of the rest as ``cut_tags`` (scored as missed)."""
    kept = min(len(spans), max_length)
    row = {**_take(feats, list(range(kept))), "labels": list(tags[:kept]) if tags is not None else [0] * kept,
           "id": ident, "text": text, "word_spans": spans[:kept]}
    if not train and tags is not None and kept < len(spans):
        row.update({"cut_tags": tags[kept:], "cut_spans": spans[kept:]})
    return row


def window_rows(feats: dict[str, list[Any]], tags: list[int] | None, spans: list[tuple[int, int]], text: str,
                ident: str, wins: list[list[int]], train: bool) -> list[dict[str, Any]]:
    """Training: one row per window. Evaluation and predict: one row holding every window, each word labelled
    only in the window where it has the most context (-100 elsewhere), as the sub-word chunks are."""
    labels = tags if tags is not None else [0] * len(spans)
    if train:
        return [{**_take(feats, w), "labels": [labels[i] for i in w], "id": ident, "text": text,
                 "word_spans": [spans[i] for i in w]} for w in wins]
    owner = max_context_owners(wins)
    row: dict[str, Any] = {"input_ids": feats["input_ids"][:len(wins[0])], "id": ident, "text": text,
                           "windows": [], "window_labels": [], "word_spans": [spans[w] for w in sorted(owner)]}
    for j, w in enumerate(wins):
        part = _take(feats, w)
        row["windows"].append(part.pop("input_ids"))
        for key, values in part.items():
            row.setdefault(f"window_{key}", []).append(values)
        row["window_labels"].append([labels[i] if owner.get(i) == j else -100 for i in w])
    if tags is not None:
        cut = [i for i in range(len(spans)) if i not in owner]
        if cut:
            row.update({"cut_tags": [tags[i] for i in cut], "cut_spans": [spans[i] for i in cut]})
    return [row]


def featurised_rows(featuriser: WordFeaturiser, items: list[Any], tag_ids: Any, train: bool, max_length: int,
                    long_text: str, overlap: int, max_chunks: int) -> tuple[list[dict[str, Any]], dict[str, int]]:
    """The rows of ``items`` ((words, spans, text, tags, id) each) and the counts for the long-text report:
    ``longer`` (sentences over ``max_length`` words), ``lost`` (sentences with words no window holds),
    ``windows``."""
    rows: list[dict[str, Any]] = []
    counts = {"longer": 0, "lost": 0, "windows": 0}
    for words, spans, text, tags, ident in items:
        feats = featuriser.features(list(words))
        ids = tag_ids(tags)
        counts["longer"] += len(words) > max_length
        if long_text == "chunks":
            wins = word_windows_of(len(words), max_length, overlap, max_chunks)
            counts["lost"] += wins[-1][-1] < len(words) - 1 if wins[-1] else 0
            counts["windows"] += len(wins)
            rows += window_rows(feats, ids, spans, text, ident, wins, train)
        else:
            counts["lost"] += len(words) > max_length
            counts["windows"] += 1
            rows.append(truncated_row(feats, ids, spans, text, ident, max_length, train))
    return rows, counts


def piece_vocabulary(rows: list[dict[str, Any]]) -> list[int]:
    """The distinct piece ids (+1, as the rows hold them) of training rows, sorted."""
    seen: set[int] = set()
    for r in rows:
        for word in r.get("pieces") or [p for win in r.get("window_pieces") or [] for p in win]:
            seen.update(word)
    seen.discard(0)
    return sorted(seen)


__all__ = ["FEATURE_KEYS", "featurised_rows", "piece_vocabulary", "truncated_row", "window_rows",
           "word_windows_of"]
