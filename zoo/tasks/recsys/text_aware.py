"""Text-aware recommender: an item is its ID embedding plus a projection of its text encoding (title, year, genres,
description), so an item with few or no training interactions still gets a meaningful vector.

* Frozen encoder (default): the text encoder runs once per distinct catalogue (cached on disk, see
  ``text_features``); the features are a buffer of the model, so a checkpoint ranks without re-encoding.
* ``text_peft`` (e.g. ``{method: lora, r: 8}``): the encoder is tuned with adapters on the recommendation loss.
  Each training step encodes the distinct items of its batch (most of a small catalogue), and each evaluation
  encodes the whole catalogue once, so this is for a GPU: on 2 CPU cores a MiniLM step of ml-100k takes seconds.
  Checkpoints hold the adapters, not the frozen encoder (rebuilt from ``text_encoder`` on load).
* Optionally (``mask_unseen_ids``) the ID embeddings of items without training positives are switched off at
  scoring time, and ``id_dropout`` drops item IDs during training so the text path learns to stand on its own.
  Both are off by default: on ml-100k they lowered every metric, including on rare items (see docs/recsys.md).
* Loss: BPR, like the ID-only ``bpr`` model it is compared with on cold items.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.recsys import BatchSpec, InteractionDataModule
from zoo.registry import MODELS
from zoo.tasks.adapters import AdapterCheckpoints
from zoo.tasks.recsys.base import RecommenderTask, RecsysModelError, bpr_loss, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    model = TextAwareRecommender(embedding_dim=16, text_encoder="hashing", text_dim=32, lr=0.01,
                                 cache_dir=str(tmp_dir) if tmp_dir else None)
    return model, synthetic_data(tmp_dir)


@MODELS.register("text_aware", tags=("recsys", "text"), tiny_case=tiny_case,
                 summary="ID + item-text (MiniLM) recommender that can rank items unseen in training")
class TextAwareRecommender(AdapterCheckpoints, RecommenderTask):
    """Args:
        text_encoder: ``minilm`` (packaged all-MiniLM-L6-v2), ``use_multilingual`` (USE multilingual v3, 16
            languages), a local HF encoder directory (or a saved USE one), or ``hashing``.
        text_dim: feature size for ``hashing`` (HF encoders give their hidden size; recorded automatically).
        max_length: tokens per item text.
        text_peft: adapters for the text encoder, as for text classifiers (``{method: lora, r: 8, target_modules:
            [query, value]}``); unset = frozen encoder with cached features.
        cache_dir: where encodings are cached (default ``$ZOO_CACHE_DIR`` or ``~/.cache/zoo``).
        projection_layers: hidden sizes of the text projection MLP (empty = linear).
        id_dropout: probability of dropping an item's ID embedding in a training example.
        mask_unseen_ids: at scoring time, ignore the ID embedding of items without training positives (it was
            only ever pushed down as a sampled negative); False keeps it.
    """

    def __init__(self, embedding_dim: int = 64, text_encoder: str = "minilm", text_dim: int | None = None,
                 max_length: int = 64, cache_dir: str | None = None, text_peft: dict[str, Any] | None = None,
                 projection_layers: tuple[int, ...] = (),
                 id_dropout: float = 0.0, mask_unseen_ids: bool = False, num_negatives: int = 1, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if not 0.0 <= id_dropout < 1.0:
            raise ValueError(f"--model.init_args.id_dropout must be in [0, 1), got {id_dropout}")
        self.embedding_dim, self.text_encoder, self.text_dim = embedding_dim, text_encoder, text_dim
        self.max_length, self.cache_dir = max_length, cache_dir
        self.projection_layers = tuple(projection_layers)
        self.id_dropout, self.num_negatives = id_dropout, num_negatives
        self.mask_unseen_ids = mask_unseen_ids
        self.text_peft = dict(text_peft) if text_peft else None
        if self.text_peft and text_encoder == "hashing":
            raise ValueError("--model.init_args.text_peft needs a Hugging Face text_encoder (minilm or a "
                             "directory), not 'hashing'")
        self._features: Tensor | None = None
        self._tokens: tuple[Tensor, Tensor] | None = None
        self._eval_items: tuple[int, Tensor] | None = None
        if self.has_sizes() and text_dim is not None:
            self.build()

    def prepare_data_dependent(self, datamodule: InteractionDataModule) -> None:
        texts = datamodule.item_texts
        if texts is None:
            raise RecsysModelError("text_aware needs item descriptions: set --data.init_args.items_path (or a "
                                   "dataset with items)")
        if self.text_peft:  # tokens only: the tuned encoder encodes them at every step
            from zoo.backbones.text import encoder_config, load_tokenizer

            enc = load_tokenizer(self.text_encoder)(texts, padding="max_length", truncation=True,
                                                    max_length=self.max_length, return_tensors="pt")
            self._tokens = (enc["input_ids"].long(), enc["attention_mask"].long())
            dim = int(encoder_config(self.text_encoder).hidden_size)
        else:
            from zoo.tasks.recsys.text_features import encode_texts

            self._features = encode_texts(texts, self.text_encoder, self.cache_dir, self.max_length,
                                          self.text_dim or 64)
            dim = self._features.shape[1]
        if self._built and dim != self.text_dim:
            raise RecsysModelError(f"the model was built for {self.text_dim}-d text features, the encoder gives {dim}")
        self.text_dim = dim
        self.hparams["text_dim"] = self.text_dim

    def after_build(self, datamodule: InteractionDataModule) -> None:
        with torch.no_grad():
            if self._features is not None:
                self.text_features.copy_(self._features.to(self.text_features))
            if self._tokens is not None:
                self.item_input_ids.copy_(self._tokens[0])
                self.item_attention_mask.copy_(self._tokens[1])
        if self.mask_unseen_ids:
            self.id_available = (self.item_popularity > 0).float()

    def build_network(self) -> None:
        d = self.embedding_dim
        self.user_emb = nn.Embedding(self.num_users, d)
        self.item_emb = nn.Embedding(self.num_items + 1, d)
        nn.init.xavier_normal_(self.user_emb.weight)
        nn.init.normal_(self.item_emb.weight, std=0.01)
        if self.text_peft:
            from zoo.backbones.text import build_encoder

            self.item_encoder = build_encoder(self.text_encoder, self.text_peft)
            self.register_buffer("item_input_ids", torch.zeros(self.num_items + 1, self.max_length, dtype=torch.long))
            self.register_buffer("item_attention_mask",
                                 torch.zeros(self.num_items + 1, self.max_length, dtype=torch.long))
        else:
            self.register_buffer("text_features", torch.zeros(self.num_items + 1, self.text_dim))
        self.register_buffer("id_available", torch.ones(self.num_items + 1), persistent=False)
        mods: list[nn.Module] = []
        width = self.text_dim
        for h in self.projection_layers:
            mods += [nn.Linear(width, h), nn.ReLU()]
            width = h
        mods.append(nn.Linear(width, d))
        self.text_proj = nn.Sequential(*mods)

    def train_batch_spec(self) -> BatchSpec:
        return BatchSpec(num_negatives=self.num_negatives)

    def sparse_tables(self) -> list[nn.Embedding]:
        return [self.user_emb, self.item_emb]

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos, neg = batch["pos"], batch["neg"]
        user, pos_id, neg_id = self.lookups([(self.user_emb, batch["user"]), (self.item_emb, pos),
                                             (self.item_emb, neg)])
        emb = {"user": user}
        if self.text_peft:  # encode each distinct item of the batch once, with gradients into the adapters
            unique, where = torch.unique(torch.cat([pos, neg.reshape(-1)]), return_inverse=True)
            vectors = self.encode_items(unique)[where]
            texts = {"pos": vectors[:len(pos)], "neg": vectors[len(pos):].view(*neg.shape, -1)}
        else:
            texts = {"pos": self.text_features[pos], "neg": self.text_features[neg]}
        for key, id_vec in (("pos", pos_id), ("neg", neg_id)):
            ids = batch[key]
            emb[f"{key}_text"] = texts[key]
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

    def encode_items(self, items: Tensor, chunk: int = 256) -> Tensor:
        """L2-normalised encodings of ``items``' texts by the adapted encoder (``text_peft``): mean-pooled token
        states, or the encoder's own sentence vector (``use_multilingual``)."""
        from zoo.backbones.text import sentence_vectors

        out = []
        for s in range(0, len(items), chunk):
            ids, mask = self.item_input_ids[items[s:s + chunk]], self.item_attention_mask[items[s:s + chunk]]
            width = max(1, int(mask.sum(1).max()))  # the longest text in the chunk, not max_length
            vectors = sentence_vectors(self.item_encoder, ids[:, :width], mask[:, :width])
            out.append(torch.nn.functional.normalize(vectors.float(), dim=-1))
        return torch.cat(out)

    def item_text_vectors(self) -> Tensor:
        if not self.text_peft:
            return self.text_features
        # scoring: the catalogue is encoded once per optimizer step, so once per evaluation
        if self._eval_items is None or self._eval_items[0] != self.global_step:
            with torch.no_grad():
                items = torch.arange(self.num_items + 1, device=self.device)
                self._eval_items = (self.global_step, self.encode_items(items))
        return self._eval_items[1]

    def item_vectors(self) -> Tensor:
        return self.text_proj(self.item_text_vectors()) + self.item_emb.weight * self.id_available[:, None]

    def uses_adapters(self) -> bool:
        """With ``text_peft`` checkpoints hold the adapters, not the frozen encoder (rebuilt from ``text_encoder``)."""
        return bool(self.text_peft)

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return self.user_emb(users), self.item_vectors()

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.user_emb(users) @ self.item_vectors().T
