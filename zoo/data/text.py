"""Text data for sequence classification (``TextDataModule``) and token classification (``TokenDataModule``).

Tokenization happens once, in ``setup``, and is cached on disk (``cache_dir``) under a key made of the data's
content, the tokenizer's vocabulary and the settings, so a second run (or ``zoo test`` after ``zoo fit``) skips it.
Batches are padded to their own longest sequence, and training batches are drawn from length-sorted pools
("length-grouped") so short texts do not pay for long ones. Truncation at ``max_length`` is counted and logged.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import random
import re
from collections.abc import Iterator, Sequence
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch.utils.data import DataLoader, Dataset, Sampler

from zoo.errors import ZooError
from zoo.registry import DATAMODULES, DATASETS

log = logging.getLogger("zoo.data.text")
CACHE_VERSION = 1


class TextDataError(ZooError, ValueError):
    """Bad text input: the message names the file, row or option and what was expected."""


# -- reading tables ---------------------------------------------------------------------------------------
def read_table(path: str | os.PathLike[str], encoding: str = "utf-8") -> Any:
    """CSV / TSV / JSONL / Parquet -> a pandas DataFrame of strings (no NaN guessing)."""
    import pandas as pd

    path = Path(path)
    if not path.is_file():
        raise TextDataError(f"data file not found: {path}")
    suffix = "".join(path.suffixes[-2:]).lower() if path.suffix == ".gz" else path.suffix.lower()
    try:
        if suffix in (".csv", ".csv.gz", ".tsv", ".tsv.gz"):
            frame = pd.read_csv(path, dtype=str, keep_default_na=False, encoding=encoding,
                                sep="\t" if ".tsv" in suffix else ",")
        elif suffix in (".jsonl", ".jsonl.gz", ".json", ".ndjson"):
            frame = pd.read_json(path, lines=suffix != ".json", dtype=False, encoding=encoding)
        elif suffix == ".parquet":
            frame = pd.read_parquet(path)
        else:
            raise TextDataError(f"{path}: unsupported file type {suffix!r}; expected .csv, .tsv, .jsonl or .parquet")
    except UnicodeDecodeError as err:
        raise TextDataError(f"{path} is not valid {encoding} text (byte {err.start}: {err.reason}); "
                            "re-save it as UTF-8 or set data.encoding (e.g. latin-1)") from None
    except ValueError as err:
        if isinstance(err, TextDataError):
            raise
        raise TextDataError(f"{path}: cannot parse as {suffix.lstrip('.')}: {err}") from None
    return frame


def _column(frame: Any, name: str, path: Any, flag: str) -> list[Any]:
    if name not in frame.columns:
        raise TextDataError(f"{path}: missing column {name!r} (set data.{flag}); found columns: "
                            f"{', '.join(map(str, frame.columns)) or 'none'}")
    return frame[name].tolist()


def _text_values(values: list[Any], path: Any, column: str) -> list[str]:
    out = []
    for i, v in enumerate(values):
        s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v)
        if not s.strip():
            raise TextDataError(f"{path} row {i + 1}: empty text in column {column!r}; remove the row or fill it")
        out.append(s)
    return out


def _label_values(values: list[Any], path: Any, column: str, separator: str | None) -> list[list[str]]:
    out = []
    for i, v in enumerate(values):
        if isinstance(v, list | tuple | np.ndarray):
            labels = [str(x).strip() for x in v]
        else:
            s = "" if v is None or (isinstance(v, float) and np.isnan(v)) else str(v).strip()
            labels = [x.strip() for x in s.split(separator)] if separator else [s]
            labels = [x for x in labels if x] if separator else labels
        if not separator and not labels[0]:
            raise TextDataError(f"{path} row {i + 1}: empty label in column {column!r}")
        out.append(labels)
    return out


# -- batching ---------------------------------------------------------------------------------------------
class TokenizedSet(Dataset):
    """Items are dicts of python lists (``input_ids``, maybe ``token_type_ids`` / ``labels``) and plain values."""

    def __init__(self, rows: list[dict[str, Any]]) -> None:
        self.rows = rows

    def __len__(self) -> int:
        return len(self.rows)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.rows[i]

    @property
    def lengths(self) -> list[int]:
        return [len(r["input_ids"]) for r in self.rows]


class LengthGroupedBatchSampler(Sampler[list[int]]):
    """Shuffled batches of similar length: shuffle, cut into pools of ``pool_batches`` batches, sort each pool by
    length, cut into batches, shuffle the batches. With ``shuffle=False`` batches follow a global length sort."""

    def __init__(self, lengths: Sequence[int], batch_size: int, shuffle: bool, seed: int = 0,
                 pool_batches: int = 50, drop_last: bool = False) -> None:
        if batch_size < 1:
            raise TextDataError(f"batch_size must be >= 1, got {batch_size}")
        self.lengths = list(lengths)
        self.batch_size = batch_size
        self.shuffle = shuffle
        self.seed = seed
        self.pool = max(1, pool_batches) * batch_size
        self.drop_last = drop_last
        self.epoch = 0

    def set_epoch(self, epoch: int) -> None:
        self.epoch = epoch

    def _batches(self) -> list[list[int]]:
        idx = list(range(len(self.lengths)))
        if not self.shuffle:
            idx.sort(key=lambda i: -self.lengths[i])
            return [idx[i:i + self.batch_size] for i in range(0, len(idx), self.batch_size)]
        rng = random.Random(self.seed + self.epoch)
        rng.shuffle(idx)
        batches = []
        for start in range(0, len(idx), self.pool):
            pool = sorted(idx[start:start + self.pool], key=lambda i: -self.lengths[i])
            batches += [pool[i:i + self.batch_size] for i in range(0, len(pool), self.batch_size)]
        if self.drop_last:
            batches = [b for b in batches if len(b) == self.batch_size]
        rng.shuffle(batches)
        return batches

    def __iter__(self) -> Iterator[list[int]]:
        batches = self._batches()
        self.epoch += 1
        yield from batches

    def __len__(self) -> int:
        n = len(self.lengths)
        return n // self.batch_size if self.drop_last and self.shuffle else -(-n // self.batch_size)


class DynamicPadCollator:
    """Pads ``input_ids`` (and ``token_type_ids`` / token ``labels``) to the longest sequence in the batch."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        width = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        out: dict[str, Any] = {}
        has_types = "token_type_ids" in rows[0]
        types = torch.zeros((n, width), dtype=torch.long) if has_types else None
        token_labels = torch.full((n, width), -100, dtype=torch.long) if isinstance(rows[0].get("labels"), list) else None
        for i, r in enumerate(rows):
            k = len(r["input_ids"])
            ids[i, :k] = torch.as_tensor(r["input_ids"])
            mask[i, :k] = 1
            if types is not None:
                types[i, :k] = torch.as_tensor(r["token_type_ids"])
            if token_labels is not None:
                token_labels[i, :k] = torch.as_tensor(r["labels"])
        out["input_ids"], out["attention_mask"] = ids, mask
        if types is not None:
            out["token_type_ids"] = types
        if token_labels is not None:
            out["labels"] = token_labels
        if "label" in rows[0]:
            first = rows[0]["label"]
            out["label"] = torch.tensor([r["label"] for r in rows],
                                        dtype=torch.float32 if isinstance(first, list) else torch.long)
        for key in ("id", "text", "word_spans"):
            if key in rows[0]:
                out[key] = [r[key] for r in rows]
        return out


# -- caching ----------------------------------------------------------------------------------------------
def tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    return h.hexdigest()[:16]


def _save_ragged(path: Path, arrays: dict[str, list[list[int]]], extra: dict[str, Any]) -> None:
    """Ragged int lists as flat arrays + offsets in an .npz (loadable with allow_pickle=False), atomically."""
    payload: dict[str, np.ndarray] = {}
    for key, seqs in arrays.items():
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        payload[f"{key}__flat"] = np.fromiter((x for s in seqs for x in s), dtype=np.int64, count=int(lengths.sum()))
        payload[f"{key}__offsets"] = np.concatenate([[0], np.cumsum(lengths)])
    payload["__extra"] = np.frombuffer(json.dumps(extra).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **payload)
    tmp.replace(path)


def _load_ragged(path: Path) -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        extra = json.loads(bytes(data["__extra"]).decode())
        arrays = {}
        for key in [k[:-6] for k in data.files if k.endswith("__flat")]:
            flat, offsets = data[f"{key}__flat"], data[f"{key}__offsets"]
            arrays[key] = [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    return arrays, extra


class _TextDataBase(pl.LightningDataModule):
    def __init__(self, tokenizer: str, max_length: int, batch_size: int, eval_batch_size: int | None,
                 group_by_length: bool, num_workers: int, cache_dir: str | None, seed: int) -> None:
        super().__init__()
        if max_length < 8:
            raise TextDataError(f"data.max_length must be >= 8, got {max_length}")
        self.tokenizer_name = tokenizer
        self.max_length = max_length
        self.batch_size = batch_size
        self.eval_batch_size = eval_batch_size or batch_size
        self.group_by_length = group_by_length
        self.num_workers = num_workers
        self.cache_dir = Path(cache_dir) if cache_dir else Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "text"
        self.seed = seed
        self._tokenizer: Any = None
        self.splits: dict[str, TokenizedSet] = {}
        self.truncated: dict[str, int] = {}

    @property
    def tokenizer(self) -> Any:
        if self._tokenizer is None:
            from zoo.backbones.text import load_tokenizer

            self._tokenizer = load_tokenizer(self.tokenizer_name)
        return self._tokenizer

    def _cached(self, kind: str, content: Any, build: Any) -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
        h = hashlib.sha256()
        h.update(json.dumps([CACHE_VERSION, kind, self.max_length, tokenizer_fingerprint(self.tokenizer)]).encode())
        h.update(json.dumps(content, ensure_ascii=False, sort_keys=True).encode())
        path = self.cache_dir / f"{kind}-{h.hexdigest()[:24]}.npz"
        if path.is_file():
            try:
                return _load_ragged(path)
            except (OSError, ValueError, KeyError):
                log.warning("zoo: ignoring unreadable tokenization cache %s", path)
        arrays, extra = build()
        try:
            _save_ragged(path, arrays, extra)
        except OSError as err:  # a read-only cache dir must not stop training
            log.warning("zoo: could not write tokenization cache %s: %s", path, err)
        return arrays, extra

    def _report_truncation(self, split: str, truncated: int, total: int, unit: str = "texts") -> None:
        self.truncated[split] = truncated
        if truncated:
            log.warning("zoo: %s split: %d of %d %s (%.1f%%) are longer than max_length=%d tokens and were truncated",
                        split, truncated, total, unit, 100.0 * truncated / max(total, 1), self.max_length)

    def _loader(self, name: str, train: bool, grouped: bool = True) -> DataLoader:
        if name not in self.splits:
            self.setup("predict" if name == "predict" else "fit")
        ds = self.splits.get(name)
        if ds is None or len(ds) == 0:
            raise TextDataError(f"the {name} split is empty; give data.{name} or raise data.{name}_fraction")
        collate = DynamicPadCollator(self.tokenizer.pad_token_id or 0)
        bs = self.batch_size if train else self.eval_batch_size
        common = dict(collate_fn=collate, num_workers=self.num_workers, persistent_workers=self.num_workers > 0)
        if self.group_by_length and grouped and not _distributed():
            sampler = LengthGroupedBatchSampler(ds.lengths, bs, shuffle=train, seed=self.seed,
                                                drop_last=train and len(ds) > bs)
            return DataLoader(ds, batch_sampler=sampler, **common)
        if not train:
            from zoo.data.distributed import eval_sampler

            # unpadded DDP shards: each sample evaluated once (Lightning's DistributedSampler repeats some)
            return DataLoader(ds, batch_size=bs, sampler=eval_sampler(ds), **common)
        return DataLoader(ds, batch_size=bs, shuffle=True, drop_last=len(ds) > bs, **common)

    def train_dataloader(self) -> DataLoader:
        return self._loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self._loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self._loader("test", train=False)

    def predict_dataloader(self) -> DataLoader:
        # plain order: Lightning rebuilds batch samplers for predict, and rows come out in input order
        if self.predict_path and "predict" not in self.splits:
            self.setup("predict")
        return self._loader("predict" if "predict" in self.splits else "test", train=False, grouped=False)


def _distributed() -> bool:
    # Lightning shards plain samplers across ranks but cannot rebuild a custom batch sampler, so under DDP the
    # loaders fall back to shuffled batches (still dynamically padded)
    return torch.distributed.is_available() and torch.distributed.is_initialized() and torch.distributed.get_world_size() > 1


def _split(n: int, labels: list[Any] | None, val_fraction: float, test_fraction: float, seed: int,
           need_test: bool) -> dict[str, np.ndarray]:
    from sklearn.model_selection import train_test_split

    def cut(idx: np.ndarray, size: float, rs: int) -> tuple[np.ndarray, np.ndarray]:
        strat = None
        if labels is not None:
            sub = np.asarray(labels)[idx]
            _, counts = np.unique(sub, return_counts=True)
            # stratify when every class can appear on both sides of the cut
            if counts.min() >= 2 and min(int(size * len(idx)), len(idx) - int(size * len(idx))) >= len(counts):
                strat = sub
        return train_test_split(idx, test_size=size, random_state=rs, stratify=strat)

    rest = np.arange(n)
    test = np.asarray([], dtype=np.int64)
    if need_test and test_fraction > 0:
        rest, test = cut(rest, test_fraction, seed)
    val = np.asarray([], dtype=np.int64)
    if val_fraction > 0:
        rest, val = cut(rest, val_fraction / (1.0 - (test_fraction if need_test else 0.0)), seed + 1)
    return {"train": np.sort(rest), "val": np.sort(val), "test": np.sort(test)}


# -- sequence classification -------------------------------------------------------------------------------
@DATAMODULES.register("text", tags=("text",), summary="text (+pair) classification from CSV/JSONL/Parquet or a built-in set")
class TextDataModule(_TextDataBase):
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
        tokenizer: registered text backbone (``minilm``) or local HF directory; use the model's encoder.
        max_length: tokens per text (pairs: both together); longer texts are truncated and counted.
        max_samples: use a deterministic random subset of this many rows from each file (quick runs).
        group_by_length: length-grouped batches (dynamic padding is always on).
        encoding: text encoding of CSV / JSONL files.
        cache_dir: tokenization cache (default ``$ZOO_CACHE/text`` or ``~/.cache/zoo/text``).
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        dataset: str | None = None,
        predict: str | None = None,
        text_column: str = "text",
        text_pair_column: str | None = None,
        label_column: str = "label",
        label_separator: str | None = None,
        labels: list[str] | None = None,
        tokenizer: str = "minilm",
        max_length: int = 128,
        max_samples: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        encoding: str = "utf-8",
        cache_dir: str | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(tokenizer, max_length, batch_size, eval_batch_size, group_by_length, num_workers, cache_dir, seed)
        if bool(train) == bool(dataset):
            raise TextDataError("give exactly one of data.train (a file) or data.dataset (a built-in name)")
        for name, frac in (("val_fraction", val_fraction), ("test_fraction", test_fraction)):
            if not 0.0 <= frac < 1.0:
                raise TextDataError(f"data.{name} must be in [0, 1), got {frac}")
        if max_samples is not None and max_samples < 4:
            raise TextDataError(f"data.max_samples must be >= 4, got {max_samples}")
        self.save_hyperparameters()
        self.train_path, self.val_path, self.test_path, self.predict_path = train, val, test, predict
        self.dataset = dataset
        self.text_column, self.text_pair_column, self.label_column = text_column, text_pair_column, label_column
        self.label_separator = label_separator
        self.fixed_class_names = list(labels) if labels else None
        self.max_samples = max_samples
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.encoding = encoding
        self._tables: dict[str, dict[str, Any]] | None = None
        self._class_names: list[str] | None = None
        if dataset:
            DATASETS.entry(dataset)

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
    def _subset(self, table: dict[str, Any]) -> dict[str, Any]:
        n = len(table["text"])
        if self.max_samples is None or n <= self.max_samples:
            return table
        keep = np.sort(np.random.default_rng(self.seed).permutation(n)[: self.max_samples])
        return {k: [v[i] for i in keep] if isinstance(v, list) else v for k, v in table.items()}

    def _read_file(self, path: str, require_labels: bool = True) -> dict[str, Any]:
        frame = read_table(path, self.encoding)
        if len(frame) == 0:
            raise TextDataError(f"{path} has no rows")
        table: dict[str, Any] = {"source": str(path)}
        table["text"] = _text_values(_column(frame, self.text_column, path, "text_column"), path, self.text_column)
        if self.text_pair_column:
            table["pair"] = _text_values(_column(frame, self.text_pair_column, path, "text_pair_column"), path,
                                         self.text_pair_column)
        if require_labels or self.label_column in frame.columns:
            table["labels"] = _label_values(_column(frame, self.label_column, path, "label_column"), path,
                                            self.label_column, self.label_separator)
        table["id"] = [f"{Path(path).name}:{i + 1}" for i in range(len(frame))]
        return self._subset(table)

    def _read_builtin(self) -> dict[str, dict[str, Any]]:
        corpus = DATASETS.create(self.dataset)
        if corpus.label_separator and self.label_separator is None:
            self.label_separator = corpus.label_separator
        source = f"dataset {self.dataset}"
        table = {"source": source, "text": _text_values(list(corpus.texts), source, "text"),
                 "labels": _label_values(list(corpus.labels), source, "label", self.label_separator),
                 "id": [f"{self.dataset}:{i}" for i in range(len(corpus.texts))]}
        return {"train": self._subset(table)}

    def _read(self) -> dict[str, dict[str, Any]]:
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
                                    f"data.labels ({', '.join(self.fixed_class_names)})")
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
                        raise TextDataError(f"{tables[split]['source']} row {i + 1}: label {bad[0]!r} never occurs in the "
                                            f"training data ({', '.join(self._class_names[:20])}); a model cannot "
                                            "predict it. Fix the label or add training examples")
        self._tables = tables
        return tables

    # -- tokenizing -----------------------------------------------------------------------------------
    def _tokenize(self, table: dict[str, Any], split: str) -> TokenizedSet:
        texts, pairs = table["text"], table.get("pair")
        if not texts:
            return TokenizedSet([])

        def build() -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
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

        arrays, extra = self._cached("seq", {"text": texts, "pair": pairs}, build)
        self._report_truncation(split, extra["truncated"], len(texts))
        rows = []
        lookup = {c: k for k, c in enumerate(self._class_names or [])}
        for i, ids in enumerate(arrays["input_ids"]):
            row: dict[str, Any] = {"input_ids": ids, "id": table["id"][i], "text": texts[i]}
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
            single = [x[0] for x in train["labels"]] if self.label_separator is None else None
            parts = _split(len(train["text"]), single, 0.0 if "val" in tables else self.val_fraction,
                           self.test_fraction, self.seed, need_test="test" not in tables)
            for split in ("train", "val", "test"):
                if split in tables and split != "train":
                    sub = tables[split]
                else:
                    keep = parts[split]
                    sub = {k: [v[i] for i in keep] if isinstance(v, list) else v for k, v in train.items()}
                self.splits[split] = self._tokenize(sub, split)
        if stage == "predict" and self.predict_path and "predict" not in self.splits:
            self.splits["predict"] = self._tokenize(self._read_file(self.predict_path, require_labels=False), "predict")


# -- token classification ----------------------------------------------------------------------------------
def validate_bio(tags: list[str], where: str) -> None:
    """IOB2: every tag is O, B-X or I-X, and I-X follows B-X or I-X."""
    prev = "O"
    for j, tag in enumerate(tags):
        if tag != "O" and not re.fullmatch(r"[BI]-\S+", tag):
            raise TextDataError(f"{where}, token {j + 1}: tag {tag!r} is not IOB2 (expected O, B-TYPE or I-TYPE)")
        if tag.startswith("I-") and prev[2:] != tag[2:]:
            raise TextDataError(f"{where}, token {j + 1}: tag {tag!r} follows {prev!r}, which breaks BIO; an entity "
                                f"must start with B-{tag[2:]}")
        prev = tag


def read_conll(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[tuple[list[str], list[str], int]]:
    """CoNLL / IOB2: one ``token ... tag`` per line (tag in the last column), blank line between sentences.
    Returns (tokens, tags, first line number) per sentence."""
    path = Path(path)
    if not path.is_file():
        raise TextDataError(f"data file not found: {path}")
    try:
        lines = path.read_text(encoding=encoding).splitlines()
    except UnicodeDecodeError as err:
        raise TextDataError(f"{path} is not valid {encoding} text (byte {err.start}: {err.reason}); "
                            "re-save it as UTF-8 or set data.encoding") from None
    sentences: list[tuple[list[str], list[str], int]] = []
    tokens: list[str] = []
    tags: list[str] = []
    start = 1
    for no, line in enumerate(lines + [""], start=1):
        line = line.strip()
        if not line or line.startswith("-DOCSTART-"):
            if tokens:
                sentences.append((tokens, tags, start))
            tokens, tags, start = [], [], no + 1
            continue
        parts = line.split()
        if len(parts) < 2:
            raise TextDataError(f"{path} line {no}: expected 'token tag' (tag in the last column), got {line!r}")
        tokens.append(parts[0])
        tags.append(parts[-1])
        try:
            validate_bio(tags, f"{path} line {no}")
        except TextDataError as err:
            raise TextDataError(str(err).replace(f", token {len(tags)}", "")) from None
    if not sentences:
        raise TextDataError(f"{path} holds no sentences")
    return sentences


def read_token_jsonl(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[tuple[list[str], list[str], int]]:
    path = Path(path)
    if not path.is_file():
        raise TextDataError(f"data file not found: {path}")
    out = []
    try:
        with open(path, encoding=encoding) as fh:
            for no, line in enumerate(fh, start=1):
                if not line.strip():
                    continue
                try:
                    obj = json.loads(line)
                except json.JSONDecodeError as err:
                    raise TextDataError(f"{path} line {no}: not JSON ({err.msg})") from None
                tokens, tags = obj.get("tokens"), obj.get("tags", obj.get("ner_tags"))
                if not isinstance(tokens, list) or not isinstance(tags, list) or len(tokens) != len(tags) or not tokens:
                    raise TextDataError(f"{path} line {no}: expected {{\"tokens\": [...], \"tags\": [...]}} of equal, "
                                        "non-zero length")
                tags = [str(t) for t in tags]
                validate_bio(tags, f"{path} line {no}")
                out.append(([str(t) for t in tokens], tags, no))
    except UnicodeDecodeError as err:
        raise TextDataError(f"{path} is not valid {encoding} text (byte {err.start}: {err.reason}); "
                            "re-save it as UTF-8 or set data.encoding") from None
    if not out:
        raise TextDataError(f"{path} holds no sentences")
    return out


def read_tagged(path: str | os.PathLike[str], encoding: str = "utf-8") -> list[tuple[list[str], list[str], int]]:
    suffix = Path(path).suffix.lower()
    return read_token_jsonl(path, encoding) if suffix in (".jsonl", ".json") else read_conll(path, encoding)


WORD_RE = re.compile(r"\w+(?:[-'.]\w+)*|[^\w\s]", re.UNICODE)


def split_words(text: str) -> tuple[list[str], list[tuple[int, int]]]:
    """Words and their character spans in ``text`` (for predicting on raw sentences)."""
    spans = [(m.start(), m.end()) for m in WORD_RE.finditer(text)]
    return [text[a:b] for a, b in spans], spans


def join_words(words: list[str]) -> tuple[str, list[tuple[int, int]]]:
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


@DATAMODULES.register("token", tags=("text", "ner"), summary="token classification (NER) from CoNLL/IOB2 or JSONL")
class TokenDataModule(_TextDataBase):
    """NER data: CoNLL / IOB2 files (``token tag`` per line) or JSONL (``{"tokens": [...], "tags": [...]}``).

    Args:
        train / val / test: files; without val / test, random splits of ``train``.
        dataset: a built-in tagged set (``ner_demo``).
        predict: a text file with one raw sentence per line, for ``zoo predict`` (default: the test split).
        tags: fix the tag set (default: sorted tags seen in training).
        max_length: sub-word tokens per sentence; words cut off are counted and logged.
    """

    def __init__(
        self,
        train: str | None = None,
        val: str | None = None,
        test: str | None = None,
        dataset: str | None = None,
        predict: str | None = None,
        tags: list[str] | None = None,
        tokenizer: str = "minilm",
        max_length: int = 128,
        max_samples: int | None = None,
        val_fraction: float = 0.1,
        test_fraction: float = 0.2,
        batch_size: int = 32,
        eval_batch_size: int | None = None,
        group_by_length: bool = True,
        num_workers: int = 0,
        encoding: str = "utf-8",
        cache_dir: str | None = None,
        seed: int = 42,
    ) -> None:
        super().__init__(tokenizer, max_length, batch_size, eval_batch_size, group_by_length, num_workers, cache_dir, seed)
        if bool(train) == bool(dataset):
            raise TextDataError("give exactly one of data.train (a file) or data.dataset (a built-in name)")
        self.save_hyperparameters()
        self.train_path, self.val_path, self.test_path, self.predict_path = train, val, test, predict
        self.dataset = dataset
        self.fixed_tags = list(tags) if tags else None
        self.max_samples = max_samples
        self.val_fraction, self.test_fraction = val_fraction, test_fraction
        self.encoding = encoding
        self._sentences: dict[str, list[tuple[list[str], list[str], int]]] | None = None
        self._tags: list[str] | None = None
        if dataset:
            DATASETS.entry(dataset)

    @property
    def class_names(self) -> list[str]:
        self._read()
        assert self._tags is not None
        return self._tags

    tag_names = class_names

    def _limit(self, sents: list[Any]) -> list[Any]:
        if self.max_samples is None or len(sents) <= self.max_samples:
            return sents
        keep = np.sort(np.random.default_rng(self.seed).permutation(len(sents))[: self.max_samples])
        return [sents[i] for i in keep]

    def _read(self) -> dict[str, list[tuple[list[str], list[str], int]]]:
        if self._sentences is not None:
            return self._sentences
        paths = {"train": self.train_path, "val": self.val_path, "test": self.test_path}
        if self.dataset:
            builtin = DATASETS.create(self.dataset)
            paths = {k: paths.get(k) or builtin.get(k) for k in ("train", "val", "test")}
        sents = {k: self._limit(read_tagged(p, self.encoding)) for k, p in paths.items() if p}
        self._sources = {k: str(p) for k, p in paths.items() if p}
        seen = sorted({t for _, tags, _ in sents["train"] for t in tags}, key=lambda t: (t != "O", t[2:], t))
        tags = self.fixed_tags or seen
        if "O" not in tags:
            tags = ["O"] + tags
        known = set(tags)
        for split, items in sents.items():
            for _, stags, line in items:
                bad = [t for t in stags if t not in known]
                if bad:
                    raise TextDataError(f"{self._sources[split]} line {line}: tag {bad[0]!r} never occurs in the training "
                                        f"data ({', '.join(tags)})")
        self._tags = tags
        self._sentences = sents
        return sents

    def _tokenize_words(self, items: list[tuple[list[str], list[tuple[int, int]], str, list[str] | None, str]],
                        split: str) -> TokenizedSet:
        lookup = {t: k for k, t in enumerate(self._tags or [])}
        if not items:
            return TokenizedSet([])

        def build() -> tuple[dict[str, list[list[int]]], dict[str, Any]]:
            enc = self.tokenizer([w for w, *_ in items], is_split_into_words=True, truncation=True,
                                 max_length=self.max_length, return_attention_mask=False)
            word_ids = [[-1 if w is None else w for w in enc.word_ids(i)] for i in range(len(items))]
            return {"input_ids": enc["input_ids"], "word_ids": word_ids}, {}

        arrays, _ = self._cached("tok", [w for w, *_ in items], build)
        rows, cut = [], 0
        for i, (words, spans, text, tags, ident) in enumerate(items):
            wids = [None if w < 0 else w for w in arrays["word_ids"][i]]
            labels, firsts = align_labels(wids, [lookup[t] for t in tags] if tags is not None else None)
            kept = len(firsts)
            cut += kept < len(words)
            row = {"input_ids": arrays["input_ids"][i], "labels": labels, "id": ident, "text": text,
                   "word_spans": spans[:kept]}
            rows.append(row)
        self._report_truncation(split, cut, len(items), unit="sentences")
        return TokenizedSet(rows)

    def setup(self, stage: str | None = None) -> None:
        sents = self._read()
        if not self.splits:
            train = sents["train"]
            parts = _split(len(train), None, 0.0 if "val" in sents else self.val_fraction, self.test_fraction,
                           self.seed, need_test="test" not in sents)
            for split in ("train", "val", "test"):
                if split in sents and split != "train":
                    chosen = sents[split]
                else:
                    chosen = [train[i] for i in parts[split]]
                source = Path(self._sources.get(split, self._sources["train"])).name
                items = []
                for words, tags, line in chosen:
                    text, spans = join_words(words)
                    items.append((words, spans, text, tags, f"{source}:{line}"))
                self.splits[split] = self._tokenize_words(items, split)
        if stage == "predict" and self.predict_path and "predict" not in self.splits:
            path = Path(self.predict_path)
            try:
                lines = path.read_text(encoding=self.encoding).splitlines()
            except FileNotFoundError:
                raise TextDataError(f"data.predict file not found: {path}") from None
            except UnicodeDecodeError as err:
                raise TextDataError(f"{path} is not valid {self.encoding} text (byte {err.start})") from None
            items = []
            for no, line in enumerate(lines, start=1):
                words, spans = split_words(line)
                if words:
                    items.append((words, spans, line, None, f"{path.name}:{no}"))
            if not items:
                raise TextDataError(f"{path} holds no text to tag")
            self.splits["predict"] = self._tokenize_words(items, "predict")
