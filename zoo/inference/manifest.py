"""``zoo_export.json`` read once into a typed :class:`Manifest`, and which loader an export folder needs.

Every reader (the predictor, ``zoo serve`` and its workers, the exported ensemble) takes the manifest from
:func:`read_export`; a folder that is not a complete export stops there with one message naming the file and
the field, before anything is served.
"""

from __future__ import annotations

import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from zoo.inference.runners import ExportFormatError

META_FILE = "zoo_export.json"
FORMATS = ("safetensors", "onnx", "torch_export")


@dataclass(frozen=True)
class Manifest:
    """One exported model. The common fields are typed; a family's own sections (``recsys``, ``thresholds``,
    ...) are read with ``manifest["key"]`` / ``manifest.get("key")`` from :attr:`raw`."""

    folder: Path
    format: str
    task: str
    family: str
    model_class: str
    inputs: list[str]
    files: dict[str, str]
    temperature: list[float]
    labels: list[str]
    preprocessing: dict[str, Any]
    raw: dict[str, Any] = field(repr=False)

    @classmethod
    def from_json(cls, raw: dict[str, Any], folder: str | Path, where: str | None = None) -> Manifest:
        """Check and type ``raw`` (the parsed ``zoo_export.json`` of ``folder``); ``where`` names it in errors."""
        where = where or str(Path(folder) / META_FILE)

        def need(key: str, kind: type | tuple[type, ...], what: str) -> Any:
            value = raw.get(key)
            if not isinstance(value, kind):
                raise ExportFormatError(f"{where}: '{key}' should be {what}, got {value!r:.80}; re-export the model")
            return value

        if not isinstance(raw, dict):
            raise ExportFormatError(f"{where}: expected a JSON object, got {type(raw).__name__}")
        fmt = need("format", str, f"one of {', '.join(FORMATS)}")
        if fmt not in FORMATS:
            raise ExportFormatError(f"{where}: format {fmt!r} is not one of {', '.join(FORMATS)}")
        inputs = need("inputs", list, "a list of input names")
        files = need("files", dict, "an object of file names")
        temperature = raw.get("temperature") or [1.0]
        try:
            temps = [float(t) for t in temperature]
        except (TypeError, ValueError):
            raise ExportFormatError(f"{where}: 'temperature' should be a list of numbers, "
                                    f"got {temperature!r:.80}") from None
        labels = raw.get("labels") or []
        if not isinstance(labels, list):
            raise ExportFormatError(f"{where}: 'labels' should be a list of class names")
        return cls(folder=Path(folder), format=fmt, task=need("task", str, "the kind of task"),
                   family=need("family", str, "the name of a registered export family"),
                   model_class=str(raw.get("model_class", "?")), inputs=[str(n) for n in inputs],
                   files={str(k): str(v) for k, v in files.items()}, temperature=temps,
                   labels=[str(x) for x in labels], preprocessing=dict(raw.get("preprocessing") or {}), raw=raw)

    def __getitem__(self, key: str) -> Any:
        return self.raw[key]

    def __contains__(self, key: object) -> bool:
        return key in self.raw

    def get(self, key: str, default: Any = None) -> Any:
        return self.raw.get(key, default)

    @property
    def tables_only(self) -> bool:
        """A recommender exported as its user and item tables: scored with plain tensors, in any format."""
        return self.raw.get("scorer") == "tables"

    def needs_rebuild(self, backend: str | None = None) -> bool:
        """Whether running this export needs zoo's task classes (a ``safetensors`` model rebuilt and loaded with
        its weights), as opposed to a graph that runs on torch / onnxruntime alone."""
        return self.format == "safetensors" and not self.tables_only and backend != "onnx"


@dataclass(frozen=True)
class EnsembleManifest:
    """An exported ensemble (``zoo_ensemble.json``) with each member's :class:`Manifest`."""

    folder: Path
    raw: dict[str, Any] = field(repr=False)
    members: list[Manifest]

    @property
    def format(self) -> str:
        return str(self.raw["format"])

    def needs_rebuild(self, backend: str | None = None) -> bool:
        return any(m.needs_rebuild(backend) for m in self.members)


def is_export_folder(path: str | Path) -> bool:
    """A folder written by ``zoo export`` (one model or an ensemble), as opposed to a run or ensemble directory."""
    from zoo.inference.ensemble import ENSEMBLE_FILE

    return (Path(path) / META_FILE).is_file() or (Path(path) / ENSEMBLE_FILE).is_file()


def read_manifest(folder: str | Path) -> Manifest:
    """``zoo_export.json`` of an export folder, with a clear error for anything else."""
    from zoo.inference.family import FAMILIES, FamilyError

    path = Path(folder) / META_FILE
    if not path.is_file():
        raise ExportFormatError(f"{folder} is not a zoo export folder: it has no {META_FILE} (write one with "
                                "`zoo export RUN_DIR --format onnx --out DIR`)")
    try:
        raw = json.loads(path.read_text(encoding="utf-8"))
    except (ValueError, UnicodeDecodeError) as err:
        raise ExportFormatError(f"{path} is not valid JSON: {err}") from None
    manifest = Manifest.from_json(raw, folder, str(path))
    try:
        family = FAMILIES.get(manifest.family)
    except FamilyError as err:
        raise ExportFormatError(f"{path}: {err}") from None
    if family.task != manifest.task:
        raise ExportFormatError(f"{path}: family {manifest.family!r} answers {family.task} requests, but the "
                                f"file says task {manifest.task!r}; re-export the model")
    return manifest


def read_export(folder: str | Path) -> Manifest | EnsembleManifest:
    """What an export folder holds, read once: one model's :class:`Manifest`, or an exported ensemble's manifest
    with every member's (so a broken member stops before serving)."""
    from zoo.inference.ensemble import is_ensemble, read_ensemble

    if not is_ensemble(folder):
        return read_manifest(folder)
    raw = read_ensemble(folder)
    return EnsembleManifest(Path(folder), raw, [read_manifest(Path(folder) / m["folder"]) for m in raw["members"]])


__all__ = ["FORMATS", "META_FILE", "EnsembleManifest", "Manifest", "is_export_folder", "read_export",
           "read_manifest"]
