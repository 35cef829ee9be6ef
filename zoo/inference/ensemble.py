"""An exported ensemble (``zoo export ENSEMBLE_DIR``): one export folder per member of weight above 0 under
``members/<i>/`` and ``zoo_ensemble.json`` (members, their temperatures and weights, class names, verification).

Each member reads a request with its own family (its tokenizer or n-gram featuriser) and runs its own exported
graph; the answer is the mixture ``sum_k w_k softmax(z_k / T_k)``, computed by :func:`combine`, the same function
``zoo ensemble`` (:class:`zoo.tasks.ensemble.Ensemble`) predicts with, so both give the same probabilities.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.inference.requests import InferenceInputError, probability_answers
from zoo.inference.runners import ExportFormatError

ENSEMBLE_FILE = "zoo_ensemble.json"


def calibrated(logits: Tensor, temperature: float) -> Tensor:
    """``softmax(logits / T)``: one member's calibrated probabilities."""
    return (logits / temperature).softmax(-1)


def combine(logits: Sequence[Tensor], temperatures: Sequence[float], weights: Sequence[float]) -> Tensor:
    """The weighted mixture ``sum_k w_k softmax(z_k / T_k)`` of the members' ``[N, C]`` logits; a member of weight
    0 adds nothing (its logits may be anything), so with one weight of 1 this is exactly that member's
    ``softmax(z / T)``."""
    return torch.stack([w * calibrated(z, t) for z, t, w in zip(logits, temperatures, weights) if w > 0]).sum(0)


def is_ensemble(folder: str | Path) -> bool:
    return (Path(folder) / ENSEMBLE_FILE).is_file()


def read_ensemble(folder: str | Path) -> dict[str, Any]:
    """``zoo_ensemble.json`` of an exported ensemble, each member's folder checked to be there."""
    folder = Path(folder)
    path = folder / ENSEMBLE_FILE
    try:
        manifest = json.loads(path.read_text(encoding="utf-8"))
        members = manifest["members"]
        checked = [(str(m["folder"]), float(m["temperature"]), float(m["weight"])) for m in members]
        labels = [str(x) for x in manifest["labels"]]
    except (OSError, ValueError, KeyError, TypeError) as err:
        raise ExportFormatError(f"{path}: not a zoo ensemble export ({type(err).__name__}: {err}); re-export it "
                                "with `zoo export ENSEMBLE_DIR --format F --out DIR`") from None
    if not checked or not labels:
        raise ExportFormatError(f"{path}: lists no members or no labels; re-export the ensemble")
    for name, _, _ in checked:
        if not (folder / name).is_dir():
            raise ExportFormatError(f"{path}: member folder {name} is missing; copy the whole export folder, or "
                                    "re-export the ensemble with `zoo export ENSEMBLE_DIR --format F --out DIR`")
    return manifest


class EnsemblePredictor:
    """The ensemble behind ``zoo serve`` and ``load``: ``parse`` a request once per member, ``run`` a batch
    through every member's graph and answer with the mixture, as a single classifier answers."""

    #: inputs per forward pass of each member in :meth:`run`
    batch_size = 64

    def __init__(self, folder: str | Path, manifest: dict[str, Any], members: list[Any],
                 calibration: str = "temperature") -> None:
        self.folder, self.meta, self.members = Path(folder), manifest, members
        self.labels = [str(x) for x in manifest["labels"]]
        for spec, member in zip(manifest["members"], members):
            if list(member.meta.get("labels", [])) != self.labels:
                raise ExportFormatError(f"{self.folder / spec['folder']}: predicts {member.meta.get('labels')}, "
                                        f"but the ensemble's classes are {self.labels}; re-export the ensemble")
        # calibration "none": the members' raw softmax, as a single predictor switches its temperature off
        self.temperatures = [float(m["temperature"]) if calibration == "temperature" else 1.0
                             for m in manifest["members"]]
        self.weights = [float(m["weight"]) for m in manifest["members"]]

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def backend(self) -> str:
        return "+".join(sorted({m.backend for m in self.members}))

    def parse(self, item: Any) -> list[Any]:
        return [m.parse(item) for m in self.members]

    def probabilities(self, parsed: list[list[Any]]) -> Tensor:
        """The ``[N, C]`` mixture of parsed items (each as :meth:`parse` returns it)."""
        chunks = []
        for start in range(0, len(parsed), self.batch_size):
            chunk = parsed[start:start + self.batch_size]
            logits = []
            for k, m in enumerate(self.members):
                items = [p[k] for p in chunk]
                logits.append(m.family.logits(m.runner(m.family.collate(items)), items).float())
            chunks.append(combine(logits, self.temperatures, self.weights))
        return torch.cat(chunks) if chunks else torch.zeros(0, len(self.labels))

    def run(self, parsed: list[list[Any]]) -> list[dict[str, Any]]:
        # the first member's parsed item carries the request's top_k (every member reads the same request)
        return probability_answers(self.probabilities(parsed), [p[0] for p in parsed], self.labels)

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        if not isinstance(inputs, list | tuple):
            raise InferenceInputError("inputs", f"expected a list of inputs, got {type(inputs).__name__}")
        return self.run([self.parse(x) for x in inputs])


__all__ = ["ENSEMBLE_FILE", "EnsemblePredictor", "calibrated", "combine", "is_ensemble", "read_ensemble"]
