"""BPR matrix factorisation (Rendle et al. 2009): dot product of user and item embeddings, pairwise loss."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.recsys import BatchSpec
from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return BPR(embedding_dim=16, lr=0.01), synthetic_data(tmp_dir)


@MODELS.register("bpr", tags=("recsys",), tiny_case=tiny_case, summary="BPR matrix factorisation (pairwise ranking)")
class BPR(RecommenderTask):
    """Matrix factorisation trained with the BPR loss on (user, positive, sampled negative) triples.

    ``embed`` returns the looked-up vectors, so an FGM/PGD callback on it is APR (adversarial personalised
    ranking). ``reg_weight`` adds L2 on the vectors of the batch (RecBole's BPR uses none).
    """

    def __init__(self, embedding_dim: int = 64, reg_weight: float = 0.0, num_negatives: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        self.embedding_dim, self.reg_weight, self.num_negatives = embedding_dim, reg_weight, num_negatives
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        self.user_emb = nn.Embedding(self.num_users, self.embedding_dim)
        self.item_emb = nn.Embedding(self.num_items + 1, self.embedding_dim, padding_idx=0)
        nn.init.xavier_normal_(self.user_emb.weight)  # RecBole's initialisation, for a like-for-like comparison
        nn.init.xavier_normal_(self.item_emb.weight)
        with torch.no_grad():
            self.item_emb.weight[0].zero_()

    def train_batch_spec(self) -> BatchSpec:
        return BatchSpec(num_negatives=self.num_negatives)

    def sparse_tables(self) -> list[nn.Embedding]:
        return [self.user_emb, self.item_emb]

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        user, pos, neg = self.lookups([(self.user_emb, batch["user"]), (self.item_emb, batch["pos"]),
                                       (self.item_emb, batch["neg"])])
        return {"user": user, "pos": pos, "neg": neg}

    def forward_embedded(self, emb: dict[str, Tensor], batch: Any = None) -> dict[str, Tensor]:
        u, pos, neg = emb["user"], emb["pos"], emb["neg"]
        if neg.ndim == 3:  # several negatives per positive
            u, pos = u.unsqueeze(1), pos.unsqueeze(1)
        # the loss needs only score(pos) - score(neg) = u . (pos - neg): one product instead of two
        out = {"margin": (u * (pos - neg)).sum(-1)}
        if self.reg_weight > 0:
            out["reg"] = sum(v.pow(2).sum() for v in emb.values()) / emb["user"].shape[0]
        return out

    def task_loss(self, out: dict[str, Tensor], batch: Any) -> Tensor:
        loss = -torch.nn.functional.logsigmoid(out["margin"]).mean()
        return loss + self.reg_weight * out["reg"] if "reg" in out else loss

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.user_emb(users), self.item_emb.weight

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_emb(users) @ self.item_emb.weight.T
