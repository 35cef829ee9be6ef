"""Two-tower retrieval model trained with in-batch sampled softmax and log-Q correction (Yi et al. 2019).

The other positives of a batch are each example's negatives. Popular items appear in batches more often, so
they would be over-penalised; subtracting log Q(item) (its in-batch sampling probability, here its share of
training interactions) from the logits corrects that bias.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, synthetic_data

MASKED_LOGIT = -1e4  # exp underflows to 0 in float32 and fits float16


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return TwoTower(embedding_dim=16, tower_layers=(16,), lr=0.01), synthetic_data(tmp_dir, batch_size=64)


def tower(dim: int, layers: tuple[int, ...], dropout: float) -> nn.Module:
    mods: list[nn.Module] = []
    width = dim
    for h in layers:
        mods += [nn.Linear(width, h), nn.ReLU(), nn.Dropout(dropout)]
        width = h
    if layers:
        mods.append(nn.Linear(width, dim))
    return nn.Sequential(*mods) if mods else nn.Identity()


@MODELS.register("two_tower", tags=("recsys",), tiny_case=tiny_case,
                 summary="two-tower, in-batch sampled softmax with log-Q correction")
class TwoTower(RecommenderTask):
    """Args: ``embedding_dim``, ``tower_layers`` (hidden sizes of each tower's MLP; empty = plain embeddings),
    ``temperature`` (softmax temperature on L2-normalised vectors), ``logq_correction``."""

    def __init__(self, embedding_dim: int = 64, tower_layers: tuple[int, ...] = (128,), dropout: float = 0.0,
                 temperature: float = 0.1, logq_correction: bool = True, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if temperature <= 0:
            raise ValueError(f"--model.init_args.temperature must be > 0, got {temperature}")
        self.embedding_dim, self.tower_layers, self.dropout = embedding_dim, tuple(tower_layers), dropout
        self.temperature, self.logq_correction = temperature, logq_correction
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        d = self.embedding_dim
        self.user_emb, self.item_emb = nn.Embedding(self.num_users, d), nn.Embedding(self.num_items + 1, d)
        nn.init.normal_(self.user_emb.weight, std=0.1)
        nn.init.normal_(self.item_emb.weight, std=0.1)
        self.user_tower = tower(d, self.tower_layers, self.dropout)
        self.item_tower = tower(d, self.tower_layers, self.dropout)

    def sparse_tables(self) -> list[nn.Embedding]:
        return [self.user_emb, self.item_emb]

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        user, item = self.lookups([(self.user_emb, batch["user"]), (self.item_emb, batch["pos"])])
        return {"user": user, "item": item}

    def _user_vec(self, e: Tensor) -> Tensor:
        return F.normalize(self.user_tower(e), dim=-1)

    def _item_vec(self, e: Tensor) -> Tensor:
        return F.normalize(self.item_tower(e), dim=-1)

    def forward_embedded(self, emb: dict[str, Tensor], batch: dict[str, Tensor]) -> Tensor:
        logits = self._user_vec(emb["user"]) @ self._item_vec(emb["item"]).T / self.temperature
        items = batch["pos"]
        if self.logq_correction and self.item_popularity.numel():
            q = self.item_popularity[items] / self.item_popularity.sum()
            logits = logits - torch.log(q.clamp(min=1e-12))[None, :]
        # the same item twice in a batch is not a negative of itself. A large finite logit, not -inf: its
        # softmax weight is still exactly 0, but KL / MSE between two such outputs (R-Drop, SMART,
        # distillation) stays finite, where -inf - -inf would give NaN
        same = (items[:, None] == items[None, :]) & ~torch.eye(len(items), dtype=torch.bool, device=items.device)
        return logits.masked_fill(same, MASKED_LOGIT)

    def task_loss(self, out: Tensor, batch: Any) -> Tensor:
        return F.cross_entropy(out, torch.arange(out.shape[0], device=out.device))

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self._user_vec(self.user_emb(users)), self._item_vec(self.item_emb.weight)

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self._user_vec(self.user_emb(users)) @ self._item_vec(self.item_emb.weight).T
