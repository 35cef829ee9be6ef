"""A task family zoo does not ship, defined entirely here: a "nearest direction" scorer that reads a request's
vector of 4 numbers and answers which of two directions it points to. Nothing under zoo/ knows about it; it
plugs into export and serving through the family contract alone (``export_family`` on the task, a
``@register_family`` class), which is what tests/export/test_family_contract.py proves."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.inference.family import ExportSpec, Family, output_axes, register_family, sample_batches
from zoo.inference.requests import InferenceInputError, request_field
from zoo.tasks.base import ZooTask

DIRECTIONS = ["left", "right"]


class ToyVectors:
    """The smallest datamodule export needs: test batches of ``vector`` tensors."""

    def __init__(self, n: int = 24, seed: int = 0) -> None:
        self.x = torch.randn(n, 4, generator=torch.Generator().manual_seed(seed))

    def test_dataloader(self) -> list[dict[str, Tensor]]:
        return [{"vector": chunk} for chunk in self.x.split(8)]


class ToyScorer(ZooTask):
    """A linear scorer under zoo's task contract; its class names the family it exports through."""

    export_family = "toy_vectors"

    def __init__(self, width: int = 4, lr: float = 1e-3) -> None:
        super().__init__(lr=lr)
        self.save_hyperparameters()
        self.class_names = DIRECTIONS

    def build_network(self) -> None:
        self.linear = nn.Linear(self.hparams.width, len(DIRECTIONS))

    def embed(self, batch: dict[str, Tensor]) -> Tensor:
        return batch["vector"]

    def forward_embedded(self, emb: Tensor, batch: Any) -> Tensor:
        return self.linear(emb)

    def task_loss(self, out: Tensor, batch: dict[str, Tensor]) -> Tensor:
        return nn.functional.cross_entropy(out, batch["label"])


@register_family
class ToyVectorFamily(Family):
    """``{"vector": [4 numbers]}`` -> ``{"direction": ..., "scores": [...]}``."""

    name = "toy_vectors"
    task = "toy_direction"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        return ExportSpec(["vector"], output_axes(["vector"], {0: "batch"}, {0: "batch"}),
                          {"labels": list(model.class_names), "preprocessing": {"width": 4}},
                          sample_batches(datamodule, ["vector"], samples))

    def parse(self, item: Any) -> Tensor:
        vector = request_field(item, "vector", list, "a list of 4 numbers")
        if len(vector) != self.pre["width"] or not all(isinstance(v, int | float) for v in vector):
            raise InferenceInputError("vector", f"expected {self.pre['width']} numbers, got {vector!r:.60}")
        return torch.tensor(vector, dtype=torch.float32)

    def collate(self, items: list[Tensor]) -> dict[str, Tensor]:
        return {"vector": torch.stack(items)}

    def answers(self, out: Tensor | None, items: list[Any], temperature: Tensor) -> list[dict[str, Any]]:
        probs = (out.float() / temperature).softmax(-1)
        return [{"direction": self.meta.labels[int(p.argmax())], "scores": [round(float(x), 6) for x in p]}
                for p in probs]

    def info(self) -> dict[str, Any]:
        return {"width": self.pre["width"]}
