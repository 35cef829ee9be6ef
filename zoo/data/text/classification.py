"""``TextDataModule``: single- or multi-label classification of texts (or text pairs) from tables or a built-in
corpus."""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import numpy as np

from zoo.data.checks.filtering import apply_row_filters
from zoo.data.splits import subset_indices
from zoo.data.text.base import TextDataBase, log
from zoo.data.text.batching import TokenizedSet
from zoo.data.text.cache import Ragged
from zoo.data.text.long_text import check_long_text, encode_long
from zoo.data.text.readers import TextDataError, capped_texts, column, label_values, read_table, text_values
from zoo.registry import DATAMODULES, DATASETS

#: a read table: ``source`` (str), ``text`` / ``pair`` / ``labels`` / ``id`` (one entry per row)
Table = dict[str, Any]


def take(table: Table, rows: np.ndarray) -> Table:
    """The table restricted to ``rows`` (per-row lists are indexed, other entries kept)."""
    return {k: [v[i] for i in rows] if isinstance(v, list) else v for k, v in table.items()}


@DATAMODULES.register("text", tags=("text",),
                      summary="text (+pair) classification from CSV/JSONL/Parquet or a built-in set")
class TextDataModule(TextDataBase):
    """Single- or multi-label text classification data.

    Args:
        train: CSV / TSV / JSONL / Parquet file with the training rows (or use ``dataset``).
        val / test: optional files for those splits; otherwise stratified random splits of ``train``.
        dataset: a built-in dataset (``zoo list datasets``): bbc_news, tweets_sentiment, tickets_multilabel.
        predict: a file of texts (labels optional) for ``zoo predict``; default is the test split.
        text_column / text_pair_column / label_column: column names.
        label_separator: makes the task multi-label: labels in one cell separated by this string (e.g. ``|``);
            JSONL / Parquet cells may also hold lists.
        labels: fix the label set and its order (default: sorted labels of the training data).
        long_text: texts longer than ``max_length``: ``truncate`` (keep the start), ``head_tail`` (keep the first
            quarter and the last three quarters of the budget) or ``chunks`` (overlapping windows; the model pools
            their logits, see ``model.chunk_pooling``). Single texts only (not pairs).
        chunk_overlap: tokens shared by consecutive windows (``chunks``; default a quarter of ``max_length``).
        max_chunks: windows per text at most (``chunks``); the rest of a longer text is dropped and counted.
        missing_label: a row whose label is empty, ``NaN``, ``None`` or ``null``: ``error`` (refused with its row)
            or ``drop`` (left out, counted).
        max_chars: texts longer than this many characters are cut to it (counted in one line); None: no cap.
        tokenizer, max_length, max_samples, fractions, batch sizes, ...: shared with token data, see
            :class:`~zoo.data.text.base.TextDataBase`.
    """

    #: which checks zoo inspect runs on it (zoo.data.checks)
    data_family = "text_classification"

    def __init__(
        self,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_separator: str | None = None,
        labels: list[str] | None = None,
        long_text: str = "truncate",
        chunk_overlap: int | None = None,
        max_chunks: int = 8,
        missing_label: str = "error",
        max_chars: int | None = 1_000_000,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        if max_chars is not None and max_chars < 1:
            raise TextDataError(f"--data.init_args.max_chars must be >= 1 (or null: no cap), got {max_chars}")
        self.missing_label, self.max_chars = missing_label, max_chars
        chunk_overlap = check_long_text(long_text, chunk_overlap, max_chunks, self.max_length)
        if long_text != "truncate" and text_pair_column:
            raise TextDataError(f"--data.init_args.long_text {long_text} works on single texts; text pairs are "
                                "truncated "
                                "(set --data.init_args.long_text truncate)")
        self.long_text, self.chunk_overlap, self.max_chunks = long_text, chunk_overlap, max_chunks
        self.text_column, self.text_pair_column, self.label_column = text_column, text_pair_column, label_column
        self.label_separator = label_separator
        self.fixed_class_names = list(labels) if labels else None
        self._tables: dict[str, Table] | None = None
        self._class_names: list[str] | None = None

    # -- what the model needs to know ----------------------------------------------------------------
    @property
    def multi_label(self) -> bool:
        self._read()
        return self.label_separator is not None

    @property
    def class_names(self) -> list[str]:
        self._read()
        assert self._class_names is not None
        return self._class_names

    @property
    def num_classes(self) -> int:
        return len(self.class_names)

    def class_counts(self) -> list[int]:
        """Training examples per class (for class weights)."""
        self.setup("fit")
        counts = np.zeros(self.num_classes, dtype=np.int64)
        for r in self.splits["train"].rows:
            if isinstance(r["label"], list):
                counts += np.asarray(r["label"], dtype=np.int64)
            else:
                counts[r["label"]] += 1
        return counts.tolist()

    # -- reading --------------------------------------------------------------------------------------
    def _subset(self, table: Table) -> Table:
        keep = subset_indices(len(table["text"]), self.max_samples, self.seed)
        return table if keep is None else take(table, keep)

    def _read_file(self, path: str, require_labels: bool = True) -> Table:
        frame = read_table(path, self.encoding)
        if len(frame) == 0:
            raise TextDataError(f"{path} has no rows")
        table: Table = {"source": str(path)}
        table["text"] = capped_texts(text_values(column(frame, self.text_column, path, "text_column"), path,
                                                 self.text_column), self.max_chars, path, self.text_column)
        if self.text_pair_column:
            table["pair"] = capped_texts(text_values(column(frame, self.text_pair_column, path, "text_pair_column"),
                                                     path, self.text_pair_column),
                                         self.max_chars, path, self.text_pair_column)
        if require_labels or self.label_column in frame.columns:
            table["labels"] = label_values(column(frame, self.label_column, path, "label_column"), path,
                                           self.label_column, self.label_separator, self.missing_label)
        table["id"] = [f"{Path(path).name}:{i + 1}" for i in range(len(frame))]
        unlabelled = [i for i, labels in enumerate(table.get("labels") or []) if labels is None]
        if unlabelled:
            print(f"zoo: {path}: left out {len(unlabelled)} row(s) without a label (data.missing_label: drop)",
                  file=sys.stderr)
            table = take(table, np.asarray(sorted(set(range(len(frame))) - set(unlabelled)), dtype=np.int64))
            if not table["text"]:
                raise TextDataError(f"{path}: every row lacks its label ({self.label_column!r})")
        return self._subset(table)

    def _read_builtin(self) -> dict[str, Table]:
        corpus = DATASETS.create(self.dataset)
        if corpus.label_separator and self.label_separator is None:
            self.label_separator = corpus.label_separator
        source = f"dataset {self.dataset}"
        table = {"source": source, "text": text_values(list(corpus.texts), source, "text"),
                 "labels": label_values(list(corpus.labels), source, "label", self.label_separator),
                 "id": [f"{self.dataset}:{i}" for i in range(len(corpus.texts))]}
        return {"train": self._subset(table)}

    def _read(self) -> dict[str, Table]:
        if self._tables is not None:
            return self._tables
        tables = self._read_builtin() if self.dataset else {"train": self._read_file(self.train_path)}
        for split, path in (("val", self.val_path), ("test", self.test_path)):
            if path:
                tables[split] = self._read_file(path)
        seen = sorted({x for labels in tables["train"]["labels"] for x in labels})
        if self.fixed_class_names:
            extra = [x for x in seen if x not in self.fixed_class_names]
            if extra:
                raise TextDataError(f"{tables['train']['source']}: label(s) {', '.join(extra[:10])} are not in "
                                    f"--data.init_args.labels ({', '.join(self.fixed_class_names)})")
            self._class_names = list(self.fixed_class_names)
        else:
            self._class_names = seen
        if len(self._class_names) < 2 and not self.label_separator:
            raise TextDataError(f"{tables['train']['source']}: need at least 2 classes, found {self._class_names}")
        known = set(self._class_names)
        for split in ("val", "test"):
            if split in tables:
                for i, labels in enumerate(tables[split]["labels"]):
                    bad = [x for x in labels if x not in known]
                    if bad:
                        raise TextDataError(f"{tables[split]['source']} row {i + 1}: label {bad[0]!r} never "
                                            f"occurs in the training data ({', '.join(self._class_names[:20])}); "
                                            "a model cannot predict it. Fix the label or add training examples")
        self._tables = tables
        return tables

    # -- tokenizing -----------------------------------------------------------------------------------
    def _tokenize(self, table: Table, split: str) -> TokenizedSet:
        texts, pairs = table["text"], table.get("pair")
        if not texts:
            return TokenizedSet([])

        def build() -> tuple[Ragged, dict[str, Any]]:
            tok = self.tokenizer
            args = (texts, pairs) if pairs is not None else (texts,)
            full = tok(*args, truncation=False, add_special_tokens=True, return_attention_mask=False,
                       return_token_type_ids=False, verbose=False)["input_ids"]
            truncated = sum(len(x) > self.max_length for x in full)
            enc = tok(*args, truncation=True, max_length=self.max_length, return_attention_mask=False,
                      return_token_type_ids=pairs is not None)
            arrays = {"input_ids": enc["input_ids"]}
            if pairs is not None:
                arrays["token_type_ids"] = enc["token_type_ids"]
            return arrays, {"truncated": int(truncated)}

        if self.long_text == "truncate":
            arrays, extra = self._cached("seq", {"text": texts, "pair": pairs}, build)
            seqs = [[ids] for ids in arrays["input_ids"]]
        else:
            arrays, extra = self._cached(f"seq-{self.long_text}-{self.chunk_overlap}-{self.max_chunks}", texts,
                                         lambda: encode_long(self.tokenizer, texts, self.long_text, self.max_length,
                                                             self.chunk_overlap, self.max_chunks))
            flat, seqs, at = arrays["input_ids"], [], 0
            for (k,) in arrays["n_windows"]:
                seqs.append(flat[at:at + k])
                at += k
        if self.long_text == "chunks":
            self._report_chunks(split, len(texts), int(extra["truncated"]), int(extra["beyond_max_chunks"]),
                                self.max_chunks)
        else:
            self._report_truncation(split, extra["truncated"], len(texts))
        self._count_long_text(split, len(texts), int(extra["truncated"]), sum(len(x) for x in seqs))
        per_text = self.long_text_counts[split]["windows"] / max(len(texts), 1)
        if split == "train" and self.long_text == "chunks" and per_text >= 2:
            # every window goes through the encoder: on BBC News (4.9 windows a text) peak memory went 2.7 -> 12.4 GB
            log.warning("zoo: train split: long_text: chunks makes %.1f windows per text, so a batch of %d texts runs "
                        "about %d sequences through the encoder; lower data.init_args.batch_size if memory is short",
                        per_text, self.batch_size, round(per_text * self.batch_size))
        rows = []
        lookup = {c: k for k, c in enumerate(self._class_names or [])}
        for i, windows in enumerate(seqs):
            row: dict[str, Any] = {"input_ids": windows[0], "id": table["id"][i], "text": texts[i]}
            if self.long_text == "chunks":
                row["windows"] = windows
            if "token_type_ids" in arrays:
                row["token_type_ids"] = arrays["token_type_ids"][i]
            if "labels" in table:
                labels = table["labels"][i]
                if self.label_separator is not None:
                    vec = [0.0] * len(lookup)
                    for x in labels:
                        vec[lookup[x]] = 1.0
                    row["label"] = vec
                else:
                    row["label"] = lookup[labels[0]]
            rows.append(row)
        return TokenizedSet(rows)

    def setup(self, stage: str | None = None) -> None:
        tables = self._read()
        if not self.splits:
            train = tables["train"]
            # multi-label rows are not stratified: a row has no single class
            strata = [x[0] for x in train["labels"]] if self.label_separator is None else len(train["text"])
            parts = self._train_parts(strata, tables)
            for split in ("train", "val", "test"):
                sub = tables[split] if split in tables and split != "train" else take(train, parts[split])
                self.splits[split] = self._tokenize(sub, split)
            apply_row_filters(self)
            if self.tokenizer is not None:
                self.check_vocabulary(take(train, parts["train"])["text"])
        if stage == "predict" and self.predict_path and "predict" not in self.splits:
            self.splits["predict"] = self._tokenize(self._read_file(self.predict_path, require_labels=False), "predict")


__all__ = ["TextDataModule"]
