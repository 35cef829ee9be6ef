"""Text-aware recommender: an item is its ID embedding plus a projection of its text encoding (title, year, genres,
description), so an item with few or no training interactions still gets a meaningful vector.

* The text encoder runs once per distinct catalogue (frozen; cached on disk, see ``text_features``); the
  features are a buffer of the model, so a checkpoint ranks without re-encoding.
* Optionally (``mask_unseen_ids``) the ID embeddings of items without training positives are switched off at
  scoring time, and ``id_dropout`` drops item IDs during training so the text path learns to stand on its own.
  Both are off by default: on ml-100k they lowered every metric, including on rare items (see docs/recsys.md).
* Loss: BPR, like the ID-only ``bpr`` model it is compared with on cold items.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, RecsysModelError, bpr_loss, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    model = TextAwareRecommender(embedding_dim=16, text_encoder="hashing", text_dim=32, lr=0.01,
                                 cache_dir=str(tmp_dir) if tmp_dir else None)
    return model, synthetic_data(tmp_dir)


@MODELS.register("text_aware", tags=("recsys", "text"), tiny_case=tiny_case,
                 summary="ID + item-text (MiniLM) recommender that can rank items unseen in training")
class TextAwareRecommender(RecommenderTask):
    """Args:
        text_encoder: ``minilm`` (packaged all-MiniLM-L6-v2), a local HF encoder directory, or ``hashing``.
        text_dim: feature size for ``hashing`` (HF encoders give their hidden size; recorded automatically).
        max_length: tokens per item text.
        cache_dir: where encodings are cached (default ``$ZOO_CACHE_DIR`` or ``~/.cache/zoo``).
        projection_layers: hidden sizes of the text projection MLP (empty = linear).
        id_dropout: probability of dropping an item's ID embedding in a training example.
        mask_unseen_ids: at scoring time, ignore the ID embedding of items without training positives (it was
            only ever pushed down as a sampled negative); False keeps it.
    """

    def __init__(self, embedding_dim: int = 64, text_encoder: str = "minilm", text_dim: int | None = None,
                 max_length: int = 64, cache_dir: str | None = None, projection_layers: tuple[int, ...] = (),
                 id_dropout: float = 0.0, mask_unseen_ids: bool = False, num_negatives: int = 1, num_users: int | None = None,
                 num_items: int | None = None, ks: tuple[int, ...] = (5, 10, 20), top_k: int = 10,
                 sampled_negatives: int = 0, cold_threshold: int = 5, lr: float = 1e-3, weight_decay: float = 0.0,
                 optimizer: str = "adam", scheduler: str = "none", warmup_ratio: float = 0.0) -> None:
        super().__init__(num_users, num_items, ks, top_k, sampled_negatives, cold_threshold, lr, weight_decay,
                         optimizer, scheduler, warmup_ratio)
        self.save_hyperparameters()
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"model.id_dropout must be in [0, 1), got {id_dropout}")
        self.embedding_dim, self.text_encoder, self.text_dim = embedding_dim, text_encoder, text_dim
        self.max_length, self.cache_dir = max_length, cache_dir
        self.projection_layers, self.id_dropout, self.num_negatives = tuple(projection_layers), id_dropout, num_negatives
        self.mask_unseen_ids = mask_unseen_ids
        self._features: Tensor | None = None
        if num_users is not None and num_items is not None and text_dim is not None:
            self._build()

    def prepare_data_dependent(self, datamodule: Any) -> None:
        texts = getattr(datamodule, "item_texts", None)
        if texts is None:
            raise RecsysModelError("text_aware needs item descriptions: set data.items_path (or a dataset with items)")
        from zoo.tasks.recsys.text_features import encode_texts

        feats = encode_texts(texts, self.text_encoder, self.cache_dir, self.max_length, self.text_dim or 64)
        if self._built and feats.shape[1] != self.text_dim:
            raise RecsysModelError(f"the model was built for {self.text_dim}-d text features, the encoder gives {feats.shape[1]}")
        self.text_dim = feats.shape[1]
        self.hparams["text_dim"] = self.text_dim
        self._features = feats

    def after_build(self, datamodule: Any) -> None:
        with torch.no_grad():
            self.text_features.copy_(self._features.to(self.text_features))
        if self.mask_unseen_ids:
            self.id_available = (self.item_popularity > 0).float()

    def build_network(self) -> None:
        d = self.embedding_dim
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items + 1, d)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.normal_(self.item_emb.weight, std=0.01)
        self.register_buffer("text_features", torch.zeros(self.num_items + 1, self.text_dim))
        self.register_buffer("id_available", torch.ones(self.num_items + 1), persistent=False)
        mods: list[nn.Module] = []
        width = self.text_dim
        for h in self.projection_layers:
            mods += [nn.Linear(width, h), nn.ReLU()]
            width = h
        mods.append(nn.Linear(width, d))
        self.text_proj = nn.Sequential(*mods)

    def train_batch_spec(self) -> dict[str, Any]:
        return {"kind": "pairs", "num_negatives": self.num_negatives}

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        emb = {"user": self.user_emb(batch["user"])}
        for key in ("pos", "neg"):
            ids = batch[key]
            emb[f"{key}_text"] = self.text_features[ids]
            id_vec = self.item_emb(ids)
            if self.training and self.id_dropout > 0:
                keep = (torch.rand(ids.shape, device=ids.device) >= self.id_dropout).to(id_vec.dtype)
                id_vec = id_vec * keep.unsqueeze(-1)
            emb[f"{key}_id"] = id_vec
        return emb

    def forward_embedded(self, emb: dict[str, Tensor], batch: Any = None) -> dict[str, Tensor]:
        u = emb["user"]
        pos = self.text_proj(emb["pos_text"]) + emb["pos_id"]
        neg = self.text_proj(emb["neg_text"]) + emb["neg_id"]
        neg_u = u.unsqueeze(1) if neg.ndim == 3 else u
        return {"pos": (u * pos).sum(-1), "neg": (neg_u * neg).sum(-1)}

    def task_loss(self, out: dict[str, Tensor], batch: Any) -> Tensor:
        return bpr_loss(out["pos"], out["neg"])

    def item_vectors(self) -> Tensor:
        return self.text_proj(self.text_features) + self.item_emb.weight * self.id_available[:, None]

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_emb(users) @ self.item_vectors().T
