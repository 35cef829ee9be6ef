"""Running an exported zoo model with no training dependencies.

    from zoo.inference import load
    predictor = load("exported/bbc")                # a folder written by `zoo export`
    predictor.predict(["Shares rose after the earnings call"])

:func:`load` is the one place that decides how an export folder runs (onnxruntime, a ``torch.export`` program,
a recommender's tables, or a rebuilt ``safetensors`` model when the caller passes ``rebuild``); the family that
reads requests and shapes answers comes from the open registry of :mod:`zoo.inference.family`.

This layer imports only torch, onnxruntime, numpy, safetensors, PIL / torchvision (images), the transformers
tokenizer (text) and scikit-learn (the n-gram models' features, :mod:`zoo.inference.ngrams`) — never Lightning
nor zoo's tasks or data (an import-linter contract in ``pyproject.toml`` keeps it so, and a test imports it in a
process where Lightning cannot be imported).
"""

from __future__ import annotations

from collections.abc import Callable
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError
from zoo.inference.ensemble import ENSEMBLE_FILE, EnsemblePredictor, is_ensemble
from zoo.inference.families import FAMILIES, iob_entities
from zoo.inference.family import ExportSpec, Family, FamilyError, family_of, register_family
from zoo.inference.manifest import META_FILE, EnsembleManifest, Manifest, read_export, read_manifest
from zoo.inference.requests import InferenceInputError
from zoo.inference.runners import ExportFormatError, ModuleRunner, OnnxRunner, Runner, runner_for

CALIBRATIONS = ("temperature", "none")

#: ``rebuild(folder, manifest) -> nn.Module``: the eager model of a ``safetensors`` export (zoo.export passes
#: its own; the inference layer cannot build zoo's task classes)
Rebuild = Callable[[Path, Manifest], torch.nn.Module]


class Predictor:
    """An exported model: ``predict(list_of_inputs) -> list of answers``, one per input, in order.

    ``parse`` checks one input (raising :class:`InferenceInputError` naming the bad field) and ``run`` answers a
    list of parsed inputs in one forward pass (the server checks each request alone, then batches the good ones).
    """

    #: inputs per forward pass in :meth:`run` (a long list is answered in chunks of this size)
    batch_size = 64

    def __init__(self, manifest: Manifest, runner: Runner, calibration: str = "temperature") -> None:
        if calibration not in CALIBRATIONS:
            raise ZooError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
        self.folder, self.meta, self.runner = manifest.folder, manifest, runner
        self.family: Family = FAMILIES.get(manifest.family)(manifest.folder, manifest)
        self.calibration = calibration
        temperature = manifest.temperature if calibration == "temperature" else [1.0]
        self.temperature = torch.tensor(temperature, dtype=torch.float32)

    @property
    def task(self) -> str:
        return self.meta.task

    @property
    def backend(self) -> str:
        return self.runner.backend

    def parse(self, item: Any) -> Any:
        return self.family.parse(item)

    def parse_many(self, items: list[Any]) -> list[Any]:
        """:meth:`parse` of each request, batched where the family can: a parsed item or the
        :class:`InferenceInputError` it raised, per request."""
        return self.family.parse_many(items)

    def run(self, parsed: list[Any]) -> list[dict[str, Any]]:
        answers: list[dict[str, Any]] = []
        for start in range(0, len(parsed), self.batch_size):
            chunk = parsed[start:start + self.batch_size]
            feeds = self.family.collate(chunk)
            out = self.runner(feeds) if len(next(iter(feeds.values()))) else None
            answers += self.family.answers(out, chunk, self.temperature)
        return answers

    def predict(self, inputs: list[Any]) -> list[dict[str, Any]]:
        if not isinstance(inputs, list | tuple):
            raise InferenceInputError("inputs", f"expected a list of inputs, got {type(inputs).__name__}")
        return self.run([self.parse(x) for x in inputs])

    def info(self) -> dict[str, Any]:
        """What ``/info`` shows: task, labels, versions, the export's verification figures."""
        keys = ("task", "family", "format", "model_class", "labels", "multi_label", "temperature", "versions",
                "source", "verification", "preprocessing", "inputs")
        info = {k: self.meta[k] for k in keys if k in self.meta}
        info["backend"], info["calibration"] = self.backend, self.calibration
        return {**info, **self.family.info()}


def load(source: str | Path | Manifest | EnsembleManifest, backend: str | None = None,
         calibration: str = "temperature", threads: int | None = None, *,
         rebuild: Rebuild | None = None) -> Predictor | EnsemblePredictor:
    """The predictor of an export folder or exported ensemble (or of its manifest, already read by
    :func:`~zoo.inference.manifest.read_export`). ``backend``: ``onnx`` or ``torch`` (default: the folder's own
    format). A ``safetensors`` model needs ``rebuild`` (:func:`zoo.export.load_predictor` passes zoo's)."""
    export = source if isinstance(source, Manifest | EnsembleManifest) else read_export(source)
    if isinstance(export, EnsembleManifest):
        members = [load(m, backend, calibration, threads, rebuild=rebuild) for m in export.members]
        return EnsemblePredictor(export.folder, export.raw, members, calibration)
    rebuilt = (lambda: FAMILIES.get(export.family).graph(rebuild(export.folder, export), export.inputs)) \
        if rebuild is not None else None
    return Predictor(export, runner_for(export.folder, export, backend, threads, rebuilt), calibration)


__all__ = ["CALIBRATIONS", "ENSEMBLE_FILE", "FAMILIES", "META_FILE", "EnsembleManifest", "EnsemblePredictor",
           "ExportFormatError", "ExportSpec", "Family", "FamilyError", "InferenceInputError", "Manifest",
           "ModuleRunner", "OnnxRunner", "Predictor", "Rebuild", "Runner", "family_of", "iob_entities", "is_ensemble",
           "load", "read_export", "read_manifest", "register_family"]
