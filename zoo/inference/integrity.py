"""Checking an export folder before it is served: its files are the ones ``zoo export`` wrote (SHA-256 recorded in
``zoo_export.json``), and what the manifest says (label count, image channels) fits the graph's input and output
shapes. A folder that fails stops ``zoo serve`` with one line, instead of passing ``/health`` and answering 500.
"""

from __future__ import annotations

import hashlib
from pathlib import Path
from typing import Any

from zoo.inference.manifest import META_FILE, EnsembleManifest, Manifest
from zoo.inference.runners import ExportFormatError

#: ``zoo_export.json``'s key for ``{relative path: sha256}`` of every other file of the folder
HASHES = "sha256"


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def folder_hashes(folder: Path) -> dict[str, str]:
    """SHA-256 of every file under ``folder`` but the manifest, by path relative to it (what export records)."""
    return {p.relative_to(folder).as_posix(): sha256(p) for p in sorted(folder.rglob("*"))
            if p.is_file() and p.name != META_FILE}


def check_hashes(manifest: Manifest) -> None:
    """Each file the manifest records has its recorded SHA-256 (an export written before zoo recorded them has
    none to check: only the shapes are checked then)."""
    recorded = manifest.get(HASHES)
    if recorded is None:
        return
    where = manifest.folder / META_FILE
    if not isinstance(recorded, dict):
        raise ExportFormatError(f"{where}: '{HASHES}' should map file names to SHA-256 digests; re-export the model")
    for name, digest in recorded.items():
        path = manifest.folder / str(name)
        if not path.is_file():
            raise ExportFormatError(f"{path}: missing from the export folder ({where} lists it); re-export the model")
        if sha256(path) != digest:
            raise ExportFormatError(f"{path}: its SHA-256 differs from the one {META_FILE} records (the file changed "
                                    "after export); re-export the model")


def _onnx_shapes(path: Path) -> tuple[list[list[Any]], list[list[Any]]]:
    """Input and output shapes of an ONNX graph (an int per fixed dimension, a name or None per free one), read
    from the protobuf without building a session."""
    import onnx

    graph = onnx.load(str(path), load_external_data=False).graph

    def dims(values: Any) -> list[list[Any]]:
        return [[d.dim_value if d.HasField("dim_value") else (d.dim_param or None)
                 for d in v.type.tensor_type.shape.dim] for v in values]

    initializers = {i.name for i in graph.initializer}
    return dims([v for v in graph.input if v.name not in initializers]), dims(graph.output)


def check_shapes(manifest: Manifest) -> None:
    """The manifest's label count and image channels against the graph (ONNX) or the recorded hyper-parameters
    (``safetensors``); a ``torch_export`` program is covered by its hash."""
    where = manifest.folder / META_FILE
    labels = len(manifest.labels)
    channels = manifest.preprocessing.get("channels")
    if manifest.format == "onnx" and "onnx" in manifest.files:
        inputs, outputs = _onnx_shapes(manifest.folder / manifest.files["onnx"])
        classes = outputs[0][-1] if outputs and outputs[0] else None
        if labels and isinstance(classes, int) and classes and classes != labels:
            raise ExportFormatError(f"{where}: lists {labels} labels, but the graph answers {classes} scores per "
                                    "input; re-export the model")
        first = inputs[0] if inputs else []
        if isinstance(channels, int) and len(first) == 4 and isinstance(first[1], int) and first[1] != channels:
            raise ExportFormatError(f"{where}: preprocessing.channels is {channels}, but the graph takes {first[1]}"
                                    "-channel images; re-export the model")
    hparams = manifest.get("hparams")
    if manifest.format == "safetensors" and isinstance(hparams, dict):
        classes, in_channels = hparams.get("num_classes"), hparams.get("in_channels")
        if labels and isinstance(classes, int) and classes != labels:
            raise ExportFormatError(f"{where}: lists {labels} labels, but the model was built for {classes} "
                                    "classes; re-export the model")
        if isinstance(channels, int) and isinstance(in_channels, int) and channels != in_channels:
            raise ExportFormatError(f"{where}: preprocessing.channels is {channels}, but the model takes "
                                    f"{in_channels}-channel images; re-export the model")


def check_export(export: Manifest | EnsembleManifest) -> None:
    """Every check above, on one export or on each member of an exported ensemble."""
    for manifest in export.members if isinstance(export, EnsembleManifest) else [export]:
        check_hashes(manifest)
        check_shapes(manifest)


__all__ = ["HASHES", "check_export", "check_hashes", "check_shapes", "folder_hashes", "sha256"]
