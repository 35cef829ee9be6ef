"""Per-user item lists in compressed sparse row form, with the vectorised gathers evaluation needs."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np
import torch


@dataclass
class CSR:
    """Per-user item lists: ``items[indptr[u]:indptr[u+1]]`` (chronological where time is known)."""

    indptr: torch.Tensor
    items: torch.Tensor

    @classmethod
    def build(cls, users: np.ndarray, items: np.ndarray, order_key: np.ndarray, num_users: int) -> CSR:
        order = np.lexsort((order_key, users))
        counts = np.bincount(users, minlength=num_users)
        indptr = np.r_[0, np.cumsum(counts)]
        return cls(torch.from_numpy(indptr.astype(np.int64)), torch.from_numpy(items[order].astype(np.int64)))

    def lengths(self, rows: torch.Tensor | None = None) -> torch.Tensor:
        d = self.indptr[1:] - self.indptr[:-1]
        return d if rows is None else d[rows]

    def gather(self, rows: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
        """(row position in ``rows``, item) pairs for the given users, vectorised."""
        rows = rows.cpu()
        counts = self.indptr[rows + 1] - self.indptr[rows]
        owner = torch.repeat_interleave(torch.arange(len(rows)), counts)
        offsets = torch.arange(int(counts.sum())) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts)
        idx = torch.repeat_interleave(self.indptr[rows], counts) + offsets
        return owner, self.items[idx]

    def dense(self, rows: torch.Tensor, num_cols: int, device: Any = None) -> torch.Tensor:
        owner, items = self.gather(rows)
        out = torch.zeros(len(rows), num_cols, dtype=torch.bool)
        out[owner, items] = True
        return out.to(device) if device is not None else out

    def last(self, rows: torch.Tensor, length: int) -> torch.Tensor:
        """The last ``length`` items of each row, left-padded with 0: [B, length]."""
        owner, items = self.gather(rows)
        counts = self.lengths(rows.cpu())
        pos_from_end = torch.repeat_interleave(counts, counts) - 1 - (
            torch.arange(len(items)) - torch.repeat_interleave(torch.cumsum(counts, 0) - counts, counts))
        keep = pos_from_end < length
        out = torch.zeros(len(rows), length, dtype=torch.long)
        out[owner[keep], length - 1 - pos_from_end[keep]] = items[keep]
        return out


def concat_csr(parts: Sequence[tuple[np.ndarray, np.ndarray, np.ndarray]], num_users: int) -> CSR:
    users = np.concatenate([p[0] for p in parts])
    items = np.concatenate([p[1] for p in parts])
    keys = np.concatenate([p[2] for p in parts])
    return CSR.build(users, items, keys, num_users)
