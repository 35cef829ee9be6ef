"""Batches of tokenized text: length-grouped sampling and padding to each batch's own longest sequence."""

from __future__ import annotations

import random
from collections.abc import Iterator, Sequence
from typing import Any

import torch
from torch.utils.data import Dataset, Sampler

from zoo.data.text.readers import TextDataError


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
        # a chunked document (``windows``) costs all its windows
        return [len(r["input_ids"]) * len(r.get("windows") or (0,)) for r in self.rows]


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

    def state_dict(self) -> dict[str, int]:  # a resumed run replays the pass of this epoch (zoo.data.loaders)
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])

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
    """Pads ``input_ids`` (and ``token_type_ids`` / token ``labels`` / n-gram ``weights``) to the longest sequence
    in the batch. A chunked document (``long_text: chunks``) brings its ``windows``: each window is one padded
    sequence, and ``window_doc`` maps it to its document's position in the batch (labels stay one per document;
    token labels, ``window_labels``, stay one per window position)."""

    def __init__(self, pad_id: int) -> None:
        self.pad_id = pad_id

    def __call__(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        if "windows" in rows[0]:
            return self._windows(rows)
        width = max(len(r["input_ids"]) for r in rows)
        n = len(rows)
        ids = torch.full((n, width), self.pad_id, dtype=torch.long)
        mask = torch.zeros((n, width), dtype=torch.long)
        out: dict[str, Any] = {}
        has_types = "token_type_ids" in rows[0]
        types = torch.zeros((n, width), dtype=torch.long) if has_types else None
        token_labels = (torch.full((n, width), -100, dtype=torch.long) if isinstance(rows[0].get("labels"), list)
                        else None)
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
        if "weights" in rows[0]:
            weights = torch.zeros((n, width), dtype=torch.float32)
            for i, r in enumerate(rows):
                weights[i, :len(r["weights"])] = torch.as_tensor(r["weights"], dtype=torch.float32)
            out["weights"] = weights
        for key in ("chars", "pieces"):  # word-level features: per word a list, padded on both axes with 0
            if key in rows[0]:
                out[key] = _pad_nested([r[key] for r in rows], width)
        self._labels_and_keys(rows, out)
        return out

    def _windows(self, rows: list[dict[str, Any]]) -> dict[str, Any]:
        flat = [{"input_ids": w} for r in rows for w in r["windows"]]
        for key in ("labels", "chars", "pieces"):
            if f"window_{key}" in rows[0]:
                for item, values in zip(flat, (x for r in rows for x in r[f"window_{key}"])):
                    item[key] = values
        out = self(flat)
        out["window_doc"] = torch.tensor([d for d, r in enumerate(rows) for _ in r["windows"]], dtype=torch.long)
        self._labels_and_keys(rows, out)
        return out

    @staticmethod
    def _labels_and_keys(rows: list[dict[str, Any]], out: dict[str, Any]) -> None:
        if "label" in rows[0]:
            first = rows[0]["label"]
            out["label"] = torch.tensor([r["label"] for r in rows],
                                        dtype=torch.float32 if isinstance(first, list) else torch.long)
        for key in ("id", "text", "word_spans", "cut_tags", "cut_spans"):
            if key in rows[0]:
                out[key] = [r[key] for r in rows]


def _pad_nested(rows: list[list[list[int]]], width: int) -> torch.Tensor:
    """``(rows, width, longest inner list)`` long tensor of the lists, 0 elsewhere."""
    inner = max((len(x) for r in rows for x in r), default=1)
    out = torch.zeros((len(rows), width, max(inner, 1)), dtype=torch.long)
    for i, r in enumerate(rows):
        for j, x in enumerate(r):
            out[i, j, :len(x)] = torch.as_tensor(x, dtype=torch.long)
    return out


__all__ = ["DynamicPadCollator", "LengthGroupedBatchSampler", "TokenizedSet"]
