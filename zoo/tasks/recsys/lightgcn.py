"""LightGCN (He et al. 2020): embeddings smoothed over the normalised user-item graph, no feature transforms or
non-linearities; the final vector is the mean over layers 0..K. BPR loss plus L2 on the layer-0 vectors."""

from __future__ import annotations

import warnings
from typing import Any

import numpy as np
import torch
from torch import Tensor, nn

from zoo.data.recsys import InteractionDataModule
from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, bpr_loss, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return LightGCN(embedding_dim=16, num_layers=2, lr=0.01), synthetic_data(tmp_dir)


def normalized_adjacency(users: np.ndarray, items: np.ndarray, num_users: int, num_items: int) -> Tensor:
    """D^-1/2 A D^-1/2 of the bipartite graph (users first, then items 0..num_items), as a sparse CSR tensor."""
    n = num_users + num_items + 1
    pairs = np.unique(np.stack([users, items], 1), axis=0)
    rows = np.concatenate([pairs[:, 0], num_users + pairs[:, 1]])
    cols = np.concatenate([num_users + pairs[:, 1], pairs[:, 0]])
    deg = np.bincount(rows, minlength=n).astype(np.float64)
    inv = np.zeros_like(deg)
    np.power(deg, -0.5, out=inv, where=deg > 0)
    vals = inv[rows] * inv[cols]
    with warnings.catch_warnings():  # "sparse CSR support is in beta": sparse @ dense is all we use
        warnings.simplefilter("ignore", UserWarning)
        coo = torch.sparse_coo_tensor(torch.from_numpy(np.stack([rows, cols])), torch.from_numpy(vals).float(),
                                      (n, n), check_invariants=True)
        return coo.coalesce().to_sparse_csr()


@MODELS.register("lightgcn", tags=("recsys",), tiny_case=tiny_case, summary="LightGCN graph collaborative filtering")
class LightGCN(RecommenderTask):
    """Args: ``embedding_dim``, ``num_layers`` (propagation steps; RecBole's default 2), ``reg_weight``
    (L2 on the batch's layer-0 vectors, RecBole's 1e-5). ``embed`` returns the propagated vectors of the batch,
    so an adversarial callback perturbs the final representations."""

    def __init__(self, embedding_dim: int = 64, num_layers: int = 2, reg_weight: float = 1e-5, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim, self.num_layers, self.reg_weight = embedding_dim, num_layers, reg_weight
        # the graph as plain CSR parts (crow, col, values): a sparse CSR tensor kept on the module would make
        # it impossible to deep-copy (a distillation teacher, an EMA copy); the sparse view is made on use
        self._adj_parts: tuple[Tensor, Tensor, Tensor] | None = None
        self._cache: tuple[int, Tensor] | None = None
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        self.user_emb = nn.Embedding(self.num_users, self.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items + 1, self.embedding_dim)
        nn.init.xavier_uniform_(self.user_emb.weight)
        nn.init.xavier_uniform_(self.item_emb.weight)

    def after_build(self, datamodule: InteractionDataModule) -> None:
        users, items = datamodule.train_pairs()
        adj = normalized_adjacency(users, items, self.num_users, self.num_items)
        self._adj_parts = (adj.crow_indices().clone(), adj.col_indices().clone(), adj.values().clone())
        self._cache = None

    @property
    def adj(self) -> Tensor | None:
        """The normalised adjacency (sparse CSR), built from its parts (no copy) on the module's device."""
        if self._adj_parts is None:
            return None
        parts = self._adj_parts = tuple(t.to(self.device) for t in self._adj_parts)  # move once, then keep
        n = self.num_users + self.num_items + 1
        with warnings.catch_warnings():  # "sparse CSR support is in beta"
            warnings.simplefilter("ignore", UserWarning)
            return torch.sparse_csr_tensor(*parts, size=(n, n), check_invariants=False)

    def propagate(self) -> Tensor:
        if self.adj is None:
            raise RuntimeError("LightGCN needs its training graph: run it with the InteractionDataModule")
        adj = self.adj
        x = torch.cat([self.user_emb.weight, self.item_emb.weight])
        total = x
        for _ in range(self.num_layers):
            x = adj @ x
            total = total + x
        return total / (self.num_layers + 1)

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        allv = self.propagate()
        u, i = allv[:self.num_users], allv[self.num_users:]
        return {"user": u[batch["user"]], "pos": i[batch["pos"]], "neg": i[batch["neg"]]}

    def forward_embedded(self, emb: dict[str, Tensor], batch: dict[str, Tensor]) -> dict[str, Tensor]:
        u = emb["user"]
        neg_u = u.unsqueeze(1) if emb["neg"].ndim == 3 else u
        ego = [self.user_emb(batch["user"]), self.item_emb(batch["pos"]), self.item_emb(batch["neg"])]
        return {"pos": (u * emb["pos"]).sum(-1), "neg": (neg_u * emb["neg"]).sum(-1),
                "reg": sum(e.pow(2).sum() for e in ego) / u.shape[0]}

    def task_loss(self, out: dict[str, Tensor], batch: Any) -> Tensor:
        return bpr_loss(out["pos"], out["neg"]) + self.reg_weight * out["reg"]

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        allv = self.propagate()
        return allv[:self.num_users][users], allv[self.num_users:]

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        # propagate once per evaluation (the weights do not change between evaluation batches)
        if self._cache is None or self._cache[0] != self.global_step or self.training:
            self._cache = (self.global_step, self.propagate())
        allv = self._cache[1]
        return allv[:self.num_users][users] @ allv[self.num_users:].T

    def on_train_batch_start(self, batch: Any, batch_idx: int) -> None:
        self._cache = None
