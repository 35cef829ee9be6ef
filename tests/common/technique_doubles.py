"""Small ZooTask test doubles standing in for the text and recommendation tasks in technique tests.

- ``TinyTextClassifier``: token ids -> nn.Embedding -> masked mean -> dropout -> linear; ``embed`` returns the
  token embeddings (what FGM perturbs for BERT).
- ``TinyRecommender``: BPR over user / item embeddings; ``embed`` returns ``{"user": ..., "item": ...}`` (APR).

Their dropout is seeded by sample index and forward count, not by the global RNG, so a DDP run and a single
process run with the same global batch draw the same masks (used by the DDP equivalence test).
"""

from __future__ import annotations

from typing import Any

import lightning.pytorch as pl
import torch
import torch.nn.functional as F
from torch import Tensor, nn
from torch.utils.data import DataLoader, Dataset

from zoo.tasks.base import ZooTask
from zoo.tasks.classification import ClassificationTask


def sample_seeded_dropout(x: Tensor, idx: Tensor, counter: int, p: float) -> Tensor:
    if p <= 0:
        return x
    cols = torch.arange(x.shape[-1], device=x.device, dtype=torch.float64)
    u = torch.frac(torch.sin(idx[:, None].double() * 12.9898 + cols * 78.233 + counter * 3.71) * 43758.5453).abs()
    keep = (u >= p).to(x.dtype)
    return x * keep / (1.0 - p)


class ListDataset(Dataset):
    def __init__(self, items: list[dict[str, Any]]) -> None:
        self.items = items

    def __len__(self) -> int:
        return len(self.items)

    def __getitem__(self, i: int) -> dict[str, Any]:
        return self.items[i]


class ListDataModule(pl.LightningDataModule):
    """Fixed train / val / test lists, no shuffling (DDP runs see the same global batches as one process)."""

    def __init__(self, train: list, val: list, test: list, batch_size: int = 8, class_names: list[str] | None = None):
        super().__init__()
        self.train, self.val, self.test = train, val, test
        self.batch_size = batch_size
        if class_names is not None:
            self.class_names = class_names

    def _loader(self, items: list) -> DataLoader:
        dataset = ListDataset(items)
        sampler = None
        if torch.distributed.is_available() and torch.distributed.is_initialized():
            # Lightning's own distributed sampler always shuffles training data; keep the order instead
            from torch.utils.data.distributed import DistributedSampler

            sampler = DistributedSampler(dataset, shuffle=False)
        return DataLoader(dataset, batch_size=self.batch_size, shuffle=False, sampler=sampler)

    def train_dataloader(self) -> DataLoader:
        return self._loader(self.train)

    def val_dataloader(self) -> DataLoader:
        return self._loader(self.val)

    def test_dataloader(self) -> DataLoader:
        return self._loader(self.test)

    def predict_dataloader(self) -> DataLoader:
        return self._loader(self.test)


class TinyTextClassifier(ClassificationTask):
    def __init__(self, vocab_size: int = 40, dim: int = 16, num_classes: int | None = 3,
                 class_names: list[str] | None = None, dropout: float = 0.2, lr: float = 0.05,
                 optimizer: str = "adamw") -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, lr=lr, optimizer=optimizer)
        self.save_hyperparameters()
        self.vocab_size, self.dim, self.dropout = vocab_size, dim, dropout
        self._forwards = 0
        if self.num_classes is not None:
            self.build()

    def build_classifier(self, num_classes: int) -> None:
        self.tokens = nn.Embedding(self.vocab_size, self.dim)
        self.head = nn.Linear(self.dim, num_classes)

    def embed(self, batch: dict[str, Any]) -> Tensor:
        return self.tokens(batch["input_ids"])

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        mask = batch["attention_mask"].unsqueeze(-1).to(emb.dtype)
        pooled = (emb * mask).sum(1) / mask.sum(1).clamp(min=1.0)
        if self.training:
            self._forwards += 1
            pooled = sample_seeded_dropout(pooled, batch["idx"], self._forwards, self.dropout)
        return self.head(pooled)


def text_items(n: int, vocab_size: int = 40, length: int = 6, num_classes: int = 3, seed: int = 0) -> list[dict]:
    """Class c sequences are mostly drawn from token block c."""
    g = torch.Generator().manual_seed(seed)
    block = vocab_size // num_classes
    items = []
    for i in range(n):
        label = i % num_classes
        ids = torch.randint(label * block, (label + 1) * block, (length,), generator=g)
        noise = torch.rand(length, generator=g) < 0.3
        ids = torch.where(noise, torch.randint(0, vocab_size, (length,), generator=g), ids)
        mask = torch.ones(length, dtype=torch.long)
        mask[length - i % 3:] = 0 if i % 3 else 1
        items.append({"input_ids": ids, "attention_mask": mask, "label": label, "idx": i, "id": f"t{i}"})
    return items


def text_case(tmp_dir: Any = None, batch_size: int = 8, n_train: int = 48, **kw: Any) -> tuple[Any, Any]:
    model = TinyTextClassifier(**kw)
    data = ListDataModule(text_items(n_train), text_items(16, seed=1), text_items(16, seed=2), batch_size,
                          class_names=["a", "b", "c"])
    return model, data


class TinyRecommender(ZooTask):
    """BPR matrix factorisation; a batch is ``{"user", "pos", "neg", "idx"}``."""

    def __init__(self, n_users: int = 12, n_items: int = 20, dim: int = 8, dropout: float = 0.2,
                 lr: float = 0.05) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.users = nn.Embedding(n_users, dim)
        self.items = nn.Embedding(n_items, dim)
        self.dropout = dropout
        self._forwards = 0

    def embed(self, batch: dict[str, Any]) -> dict[str, Tensor]:
        items = torch.stack([batch["pos"], batch["neg"]], dim=1)
        return {"user": self.users(batch["user"]), "item": self.items(items)}

    def forward_embedded(self, emb: dict[str, Tensor], batch: dict[str, Any]) -> dict[str, Tensor]:
        user = emb["user"]
        if self.training:
            self._forwards += 1
            user = sample_seeded_dropout(user, batch["idx"], self._forwards, self.dropout)
        scores = (user.unsqueeze(1) * emb["item"]).sum(-1)
        return {"pos": scores[:, 0], "neg": scores[:, 1]}

    def task_loss(self, out: dict[str, Tensor], batch: Any) -> Tensor:
        return -F.logsigmoid(out["pos"] - out["neg"]).mean()


def recsys_items(n: int, n_users: int = 12, n_items: int = 20, seed: int = 0) -> list[dict]:
    g = torch.Generator().manual_seed(seed)
    out = []
    for i in range(n):
        user = i % n_users
        pos = (user + int(torch.randint(0, 3, (1,), generator=g))) % n_items
        neg = (pos + 5 + int(torch.randint(0, n_items - 6, (1,), generator=g))) % n_items
        out.append({"user": user, "pos": pos, "neg": neg, "idx": i})
    return out


def recsys_case(tmp_dir: Any = None, batch_size: int = 8) -> tuple[Any, Any]:
    return TinyRecommender(), ListDataModule(recsys_items(48), recsys_items(16, seed=1), recsys_items(16, seed=2),
                                             batch_size)


class PlainContractModule(pl.LightningModule):
    """A user's own LightningModule (not a ZooTask) with the three contract methods."""

    def __init__(self, vocab_size: int = 40, dim: int = 16, num_classes: int = 3) -> None:
        super().__init__()
        self.tokens = nn.Embedding(vocab_size, dim)
        self.head = nn.Linear(dim, num_classes)

    def embed(self, batch: dict[str, Any]) -> Tensor:
        return self.tokens(batch["input_ids"])

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.head(emb.mean(1))

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        return F.cross_entropy(out, batch["label"])

    def training_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        from zoo.contract import contract_training_step

        return contract_training_step(self, batch)

    def configure_optimizers(self) -> Any:
        return torch.optim.SGD(self.parameters(), lr=0.1)
