"""NeuMF (He et al. 2017): a GMF branch and an MLP branch over separate embeddings, fused by a linear layer,
trained pointwise with binary cross-entropy on observed items and sampled negatives."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.recsys import BatchSpec
from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return NeuMF(embedding_dim=8, mlp_layers=(16, 8), num_negatives=2, lr=0.01), synthetic_data(tmp_dir)


@MODELS.register("neumf", tags=("recsys",), tiny_case=tiny_case,
                 summary="NeuMF: GMF + MLP, pointwise BCE with sampled negatives")
class NeuMF(RecommenderTask):
    """Args: ``embedding_dim`` (GMF and MLP embeddings), ``mlp_layers`` (hidden sizes), ``dropout``,
    ``num_negatives`` (negatives per positive, drawn by the datamodule), ``score_chunk`` (users scored at once
    in full ranking: scoring is B x N MLP passes)."""

    def __init__(self, embedding_dim: int = 64, mlp_layers: tuple[int, ...] = (128, 64, 32), dropout: float = 0.1,
                 num_negatives: int = 4, score_chunk: int = 64, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim, self.mlp_layers, self.dropout = embedding_dim, tuple(mlp_layers), dropout
        self.num_negatives, self.score_chunk = num_negatives, score_chunk
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        d = self.embedding_dim
        self.gmf_user, self.gmf_item = nn.Embedding(self.num_users, d), nn.Embedding(self.num_items + 1, d)
        self.mlp_user, self.mlp_item = nn.Embedding(self.num_users, d), nn.Embedding(self.num_items + 1, d)
        for e in (self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item):
            nn.init.normal_(e.weight, std=0.01)
        layers: list[nn.Module] = []
        width = 2 * d
        for h in self.mlp_layers:
            layers += [nn.Dropout(self.dropout), nn.Linear(width, h), nn.ReLU()]
            width = h
        self.mlp = nn.Sequential(*layers)
        self.predict_layer = nn.Linear(d + width, 1)

    def train_batch_spec(self) -> BatchSpec:
        return BatchSpec(num_negatives=self.num_negatives)

    def sparse_tables(self) -> list[nn.Embedding]:
        return [self.gmf_user, self.gmf_item, self.mlp_user, self.mlp_item]

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        neg = batch["neg"] if batch["neg"].ndim == 2 else batch["neg"][:, None]
        items = torch.cat([batch["pos"][:, None], neg], dim=1)  # [B, 1 + n]
        gu, mu, gi, mi = self.lookups([(self.gmf_user, batch["user"]), (self.mlp_user, batch["user"]),
                                       (self.gmf_item, items), (self.mlp_item, items)])
        return {"gmf_user": gu, "mlp_user": mu, "gmf_item": gi, "mlp_item": mi}

    def _score(self, gu: Tensor, mu: Tensor, gi: Tensor, mi: Tensor) -> Tensor:
        """user vectors [B, d], item vectors [B, M, d] -> logits [B, M]."""
        gmf = gu[:, None, :] * gi
        mlp = self.mlp(torch.cat([mu[:, None, :].expand_as(mi), mi], dim=-1))
        return self.predict_layer(torch.cat([gmf, mlp], dim=-1)).squeeze(-1)

    def forward_embedded(self, emb: dict[str, Tensor], batch: Any = None) -> Tensor:
        return self._score(emb["gmf_user"], emb["mlp_user"], emb["gmf_item"], emb["mlp_item"])

    def task_loss(self, out: Tensor, batch: Any) -> Tensor:
        labels = torch.zeros_like(out)
        labels[:, 0] = 1.0
        return F.binary_cross_entropy_with_logits(out, labels)

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        gi, mi = self.gmf_item.weight, self.mlp_item.weight
        chunks = []
        for s in range(0, len(users), self.score_chunk):
            u = users[s:s + self.score_chunk]
            n = len(u)
            chunks.append(self._score(self.gmf_user(u), self.mlp_user(u), gi[None].expand(n, -1, -1),
                                      mi[None].expand(n, -1, -1)))
        return torch.cat(chunks)
