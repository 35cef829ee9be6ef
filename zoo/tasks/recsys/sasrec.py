"""SASRec (Kang & McAuley 2018): a causal Transformer over the user's item sequence predicts the next item.

Trained on each user's training sequence with cross-entropy over all items at every position (RecBole's
default ``loss_type: CE``). At evaluation the user's history (training items; plus validation items at test)
is encoded and the last position's vector scores every item.
"""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.data.recsys import BatchSpec
from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return (SASRec(hidden_size=16, num_layers=1, num_heads=2, max_len=12, lr=0.01),
            synthetic_data(tmp_dir, batch_size=16))


@MODELS.register("sasrec", tags=("recsys", "sequential"), tiny_case=tiny_case,
                 summary="SASRec self-attentive next-item recommender")
class SASRec(RecommenderTask):
    """Args: ``hidden_size``, ``num_layers``, ``num_heads``, ``dropout``, ``max_len`` (history length)."""

    def __init__(self, hidden_size: int = 64, num_layers: int = 2, num_heads: int = 2, dropout: float = 0.2,
                 max_len: int = 50, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if hidden_size % num_heads:
            raise ValueError(f"--model.init_args.hidden_size ({hidden_size}) must be divisible by "
                             f"--model.init_args.num_heads ({num_heads})")
        self.hidden_size, self.num_layers, self.num_heads = hidden_size, num_layers, num_heads
        self.dropout, self.max_len = dropout, max_len
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        h = self.hidden_size
        self.item_emb = nn.Embedding(self.num_items + 1, h, padding_idx=0)
        self.pos_emb = nn.Embedding(self.max_len, h)
        nn.init.normal_(self.item_emb.weight, std=0.02)
        nn.init.normal_(self.pos_emb.weight, std=0.02)
        layer = nn.TransformerEncoderLayer(h, self.num_heads, 4 * h, self.dropout, activation="gelu",
                                           batch_first=True, norm_first=True)
        self.encoder = nn.TransformerEncoder(layer, self.num_layers, enable_nested_tensor=False)
        self.norm = nn.LayerNorm(h)
        self.drop = nn.Dropout(self.dropout)

    def train_batch_spec(self) -> BatchSpec:
        return BatchSpec(kind="sequence", max_len=self.max_len)

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        return self.item_emb(batch["seq"])

    def encode(self, emb: Tensor, seq: Tensor) -> Tensor:
        L = seq.shape[1]
        pos = torch.arange(L, device=seq.device)
        x = self.drop(emb * self.hidden_size ** 0.5 + self.pos_emb(pos)[None])
        causal = torch.triu(torch.ones(L, L, dtype=torch.bool, device=seq.device), diagonal=1)
        # left padding: padded positions attend only to themselves via the causal mask's first real key; a fully
        # masked row would give NaN, so padding is not used as a key mask, only zeroed out of the loss
        # is_causal says what the mask is, so the encoder does not compare it with a causal mask element by
        # element (a data-dependent branch that torch.export cannot capture)
        x = self.encoder(x, mask=causal, is_causal=True)
        return self.norm(x)

    def forward_embedded(self, emb: Tensor, batch: dict[str, Tensor]) -> Tensor:
        hidden = self.encode(emb, batch["seq"])
        keep = batch["target"] > 0
        return hidden[keep] @ self.item_emb.weight.T

    def task_loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return F.cross_entropy(out, batch["target"][batch["target"] > 0])

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        if history is None:
            raise ValueError("SASRec scores from a history of item indices [B, max_len] (the 'history' of an "
                             "evaluation batch)")
        history = history[:, -self.max_len:]  # positions beyond max_len have no embedding
        hidden = self.encode(self.item_emb(history), history)[:, -1]
        return hidden @ self.item_emb.weight.T
