"""Most popular: the baseline every recommender report should beat. Each item's score is one number, the same for
every user; bound to its data the score starts at ``log(1 + training count)``, so the model ranks by training
popularity before any training (evaluate it with ``zoo test`` and no checkpoint, or ``Trainer.test`` right after
``bind_data``). Fitting it (BPR loss on the item scores alone) keeps a popularity ordering: with no user factor,
BPR's optimum orders items by how often they are positives against uniform negatives.
"""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.data.recsys import InteractionDataModule
from zoo.registry import MODELS
from zoo.tasks.recsys.base import RecommenderTask, bpr_loss, synthetic_data


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    return MostPopular(lr=0.01), synthetic_data(tmp_dir)


@MODELS.register("most_popular", tags=("recsys",), tiny_case=tiny_case,
                 summary="most popular training items (baseline), same full-ranking evaluation")
class MostPopular(RecommenderTask):
    """No arguments of its own (those of every recommender apply). ``embed`` returns the item scores of the
    batch as [B, 1] vectors, so adversarial techniques perturb them like any other embedding."""

    #: the reference of recommenders' baseline comparison: ``zoo test`` does not compare it with itself
    #: (:class:`zoo.callbacks.baseline.BaselineComparison`)
    is_baseline = True

    def __init__(self, **kwargs: Any) -> None:
        super().__init__(**kwargs)
        if self.has_sizes():
            self.build()

    def build_network(self) -> None:
        self.item_score = nn.Embedding(self.num_items + 1, 1)
        nn.init.zeros_(self.item_score.weight)
        # whether the scores were set from counts: a checkpoint's trained scores are not reset when it is bound
        self.register_buffer("from_counts", torch.tensor(False))

    def after_build(self, datamodule: InteractionDataModule) -> None:
        if bool(self.from_counts):
            return
        with torch.no_grad():
            counts = datamodule.item_train_counts.to(self.item_score.weight)
            self.item_score.weight.copy_(torch.log1p(counts)[:, None])
            self.from_counts.fill_(True)

    def sparse_tables(self) -> list[nn.Embedding]:
        return [self.item_score]

    def embed(self, batch: dict[str, Tensor]) -> dict[str, Tensor]:
        pos, neg = self.lookups([(self.item_score, batch["pos"]), (self.item_score, batch["neg"])])
        return {"pos": pos, "neg": neg}

    def forward_embedded(self, emb: dict[str, Tensor], batch: Any = None) -> dict[str, Tensor]:
        return {"pos": emb["pos"].squeeze(-1), "neg": emb["neg"].squeeze(-1)}

    def task_loss(self, out: dict[str, Tensor], batch: Any) -> Tensor:
        return bpr_loss(out["pos"], out["neg"])

    def full_sort_scores(self, users: Tensor, history: Tensor | None = None) -> Tensor:
        return self.item_score.weight[:, 0][None, :].expand(len(users), -1)

    def retrieval_vectors(self, users: Tensor, history: Tensor | None = None) -> tuple[Tensor, Tensor]:
        return torch.ones(len(users), 1, device=self.device), self.item_score.weight
