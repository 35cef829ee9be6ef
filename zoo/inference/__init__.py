"""Running an exported zoo model with no training dependencies.

    from zoo.inference import load
    predictor = load("exported/bbc")                # a folder written by `zoo export`
    predictor.predict(["Shares rose after the earnings call"])

This layer imports only torch, onnxruntime, numpy, safetensors, PIL / torchvision (images), the transformers
tokenizer (text) and scikit-learn (the n-gram models' features, :mod:`zoo.inference.ngrams`) — never Lightning
nor zoo's tasks or data (an import-linter contract in ``pyproject.toml`` keeps it so, and a test imports it in a
process where Lightning cannot be imported).
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo.errors import ZooError
from zoo.inference.ensemble import ENSEMBLE_FILE, EnsemblePredictor, is_ensemble, load_ensemble, read_ensemble
from zoo.inference.families import FAMILIES, Family, InferenceInputError, iob_entities
from zoo.inference.ngrams import NgramTextClassification, is_ngram
from zoo.inference.runners import ExportFormatError, ModuleRunner, OnnxRunner, Runner, runner_for

META_FILE = "zoo_export.json"
CALIBRATIONS = ("temperature", "none")


def family_for(meta: dict[str, Any]) -> type[Family]:
    """The family that turns requests into the graph's inputs: the task's, or the n-gram featuriser for a
    ``fasttext`` / ``tfidf`` text classifier (whose graph reads bags of n-grams, not token ids)."""
    return NgramTextClassification if is_ngram(meta) else FAMILIES[meta["task"]]


def read_meta(folder: str | Path) -> dict[str, Any]:
    """``zoo_export.json`` of an export folder, with a clear error for anything else."""
    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ExportFormatError(f"{folder} is not a zoo export folder: it has no {META_FILE} (write one with "
                                "`zoo export RUN_DIR --format onnx --out DIR`)")
    try:
        meta = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ExportFormatError(f"{path} is not valid JSON: {err}") from None
    if meta.get("task") not in FAMILIES:
        raise ExportFormatError(f"{path}: task {meta.get('task')!r} is not one of {', '.join(FAMILIES)}")
    return meta


def read_folder_meta(folder: str | Path) -> dict[str, Any]:
    """What a folder to serve holds: ``zoo_export.json`` of one model, or ``zoo_ensemble.json`` of an exported
    ensemble with every member's ``zoo_export.json`` checked too (so a broken member stops before serving)."""
    if not is_ensemble(folder):
        return read_meta(folder)
    manifest = read_ensemble(folder)
    for m in manifest["members"]:
        read_meta(Path(folder) / m["folder"])
    return manifest


class Predictor:
    """An exported model: ``predict(list_of_inputs) -> list of answers``, one per input, in order.

    ``parse`` checks one input (raising :class:`InferenceInputError` naming the bad field) and ``run`` answers a
    list of parsed inputs in one forward pass (the server checks each request alone, then batches the good ones).
    """

    def __init__(self, folder: str | Path, meta: dict[str, Any], runner: Runner, calibration: str = "temperature") -> None:
        if calibration not in CALIBRATIONS:
            raise ZooError(f"calibration must be one of {', '.join(CALIBRATIONS)}, got {calibration!r}")
        self.folder, self.meta, self.runner = Path(folder), meta, runner
        self.family: Family = family_for(meta)(self.folder, meta)
        temperature = meta.get("temperature") or [1.0]
        self.calibration = calibration
        self.temperature = torch.tensor(temperature if calibration == "temperature" else [1.0], dtype=torch.float32)

    @property
    def task(self) -> str:
        return str(self.meta["task"])

    @property
    def backend(self) -> str:
        return self.runner.backend

    def parse(self, item: Any) -> Any:
        return self.family.parse(item)

    #: inputs per forward pass in :meth:`run` (a long list is answered in chunks of this size)
    batch_size = 64

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
        keys = ("task", "format", "model_class", "labels", "multi_label", "temperature", "versions", "source",
                "verification", "preprocessing", "inputs")
        info = {k: self.meta[k] for k in keys if k in self.meta}
        info["backend"], info["calibration"] = self.backend, self.calibration
        if "recsys" in self.meta:
            info["num_users"] = len(self.meta["recsys"]["user_ids"])
            info["num_items"] = len(self.meta["recsys"]["item_ids"]) - 1
        return info


def load(folder: str | Path, backend: str | None = None, calibration: str = "temperature",
         threads: int | None = None) -> Predictor | EnsemblePredictor:
    """The predictor of an ``onnx`` or ``torch_export`` folder (``backend``: ``onnx`` or ``torch``; default: the
    folder's own format), or of an ensemble exported in one of them. A ``safetensors`` folder needs zoo's task
    classes: :func:`zoo.export.load_predictor`."""
    if is_ensemble(folder):
        return load_ensemble(folder, lambda member: load(member, backend, calibration, threads), calibration)
    meta = read_meta(folder)
    return Predictor(folder, meta, runner_for(Path(folder), meta, backend, threads), calibration)


__all__ = ["CALIBRATIONS", "ENSEMBLE_FILE", "META_FILE", "EnsemblePredictor", "ExportFormatError",
           "InferenceInputError", "ModuleRunner", "OnnxRunner", "Predictor", "Runner", "family_for", "iob_entities",
           "is_ensemble", "load", "read_folder_meta", "read_meta"]
