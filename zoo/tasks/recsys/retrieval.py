"""Top-K retrieval through a FAISS index, for ``predict`` (and serving) on large catalogues.

Exact top-K scores every item for every user (``users x items`` products, then a ``topk``); an approximate
nearest-neighbour index (FAISS HNSW on inner products) visits a small part of the catalogue per user. Only
models whose score is an inner product ``user_vector . item_vector`` can use it (they implement
``retrieval_vectors``). Items a user has seen are filtered after the search, so the search asks for ``k`` plus
as many as the batch's users have seen at most.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import torch
from torch import Tensor

from zoo.errors import ZooError


class RetrievalError(ZooError, ValueError):
    """``model.retrieval`` asked of a model or an environment that cannot do it."""


RETRIEVALS = ("exact", "faiss")


class FaissIndex:
    """An HNSW inner-product index over ``item_vectors`` [num_items + 1, d]; row 0 (padding) is left out."""

    def __init__(self, item_vectors: Tensor, m: int = 32, ef_search: int = 128, ef_construction: int = 200) -> None:
        try:
            import faiss
        except ImportError as e:  # an optional extra (pip install zoo[recsys])
            raise RetrievalError("--model.init_args.retrieval faiss needs the faiss-cpu package (pip install "
                                 "faiss-cpu)") from e
        vectors = np.ascontiguousarray(item_vectors[1:].detach().float().cpu().numpy())
        self.index = faiss.IndexHNSWFlat(vectors.shape[1], m, faiss.METRIC_INNER_PRODUCT)
        self.index.hnsw.efConstruction = ef_construction
        self.index.hnsw.efSearch = ef_search
        self.index.add(vectors)
        self.ef_search = ef_search

    def search(self, user_vectors: Tensor, k: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
        """``(scores [B, k], items [B, k])`` with item indices (1-based, as the model's); ``-inf`` / 0 where fewer
        than ``k`` unseen items were found. ``exclude`` is the [B, num_items + 1] mask of predict batches."""
        n = self.index.ntotal
        extra = int(exclude[:, 1:].sum(1).max()) if exclude is not None and len(exclude) else 0
        want = min(n, k + extra)
        self.index.hnsw.efSearch = max(self.ef_search, want)  # HNSW returns at most efSearch neighbours
        queries = np.ascontiguousarray(user_vectors.detach().float().cpu().numpy())
        scores, ids = self.index.search(queries, want)
        items = torch.from_numpy(ids).long() + 1  # faiss pads missing results with -1 -> 0 (padding, excluded)
        scores_t = torch.from_numpy(scores).float().masked_fill(items <= 0, float("-inf"))
        if exclude is not None:
            scores_t = scores_t.masked_fill(exclude.cpu().gather(1, items.clamp(min=0)), float("-inf"))
        top, where = scores_t.topk(min(k, want), dim=1)  # stable enough: faiss already returns them sorted
        return top, items.gather(1, where)


def recall_at_k(approx: Tensor, exact: Tensor) -> float:
    """Share of the exact top-K items ([B, k]) that the approximate search also returned."""
    hits = (approx[:, :, None] == exact[:, None, :]).any(1) & (exact > 0)
    return float(hits.sum() / (exact > 0).sum().clamp(min=1))


def index_for(model: Any, cached: tuple[int, FaissIndex] | None) -> tuple[int, FaissIndex]:
    """``(global_step, index)`` of the model's items: ``cached`` while it was built from the current weights (the
    same ``global_step``), else a new one, for the model to keep."""
    if cached is not None and cached[0] == model.global_step:
        return cached
    _, items = model.retrieval_vectors(torch.zeros(0, dtype=torch.long, device=model.device), None)
    return model.global_step, FaissIndex(items)
