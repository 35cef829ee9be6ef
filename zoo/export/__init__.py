"""``zoo export``: a trained model as a self-contained, verified folder.

    from zoo.export import export_run, export_model, load_predictor
    export_run("runs/bbc_news_lora/version_0", "onnx", "exported/bbc")
    load_predictor("exported/bbc").predict(["Shares rose after the earnings call"])
    export_source("runs/bbc_ensemble", "onnx", "exported/bbc_ensemble")   # a `zoo ensemble` directory too

The folder holds the artefact (``model.onnx``, ``model.pt2`` or ``model.safetensors``), ``zoo_export.json``
(task, names, preprocessing, versions, the source checkpoint's hash, verification figures) and what the
predictor needs beside it (tokenizer files, the n-gram models' TF-IDF vocabulary and idf, the recommender's seen
items / histories / popularity). Export runs the artefact on sample inputs from the run's data and refuses to write
it when it disagrees with the eager model. An ensemble directory (``ensemble.json``) exports each member so, and is
verified against the PyTorch ensemble (:mod:`zoo.export.ensemble`).
"""

from __future__ import annotations

import hashlib
import json
import shutil
import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import Any

import torch

from zoo.export.formats import (
    FILES,
    FORMATS,
    rebuild,
    verify,
    write_onnx,
    write_safetensors,
    write_torch_export,
)
from zoo.export.sources import load_run
from zoo.export.spec import ExportError, Graph, describe, merged, temperature_of
from zoo.inference import (
    ENSEMBLE_FILE,
    META_FILE,
    EnsemblePredictor,
    ModuleRunner,
    Predictor,
    family_for,
    load,
    read_meta,
)
from zoo.inference.ensemble import load_ensemble
from zoo.inference.runners import OnnxRunner, exported_program_runner, runner_for
from zoo.reporting.io import atomic_write_text
from zoo.version import __version__


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"zoo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def sha256(path: Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for block in iter(lambda: fh.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


def export_model(model: Any, datamodule: Any, fmt: str, out: str | Path, *, source: str | Path | None = None,
                 samples: int = 64, tolerance: float = 1e-4, overwrite: bool = False) -> dict[str, Any]:
    """Export a model bound to its datamodule; returns the written ``zoo_export.json`` contents."""
    out = check_out(fmt, out, overwrite)
    model.bind_data(datamodule)
    model = merged(model)
    spec = describe(model, datamodule, samples)
    if not spec.samples:
        raise ExportError("the run's data yields no sample inputs to verify the export on")
    tables = spec.meta.pop("tables", None)
    tokenizer = spec.meta.pop("tokenizer", None)
    featurizer = spec.meta.pop("featurizer", None)
    meta: dict[str, Any] = {"zoo_export": 1, "format": fmt, "task": spec.task,
                            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                            "inputs": spec.inputs, "output": "output", "files": {fmt: FILES[fmt]},
                            "temperature": temperature_of(model), **spec.meta, "versions": versions()}
    if source is not None and Path(source).is_file():
        meta["source"] = {"checkpoint": str(source), "sha256": sha256(Path(source))}
    eager = Graph(model, spec.inputs, recsys=spec.task == "recommendation").eval()
    graph = spec.scorer if spec.scorer is not None else eager
    with staged(out) as tmp:
        if tokenizer is not None:
            tokenizer.save_pretrained(str(tmp / "tokenizer"))
            meta["files"]["tokenizer"] = "tokenizer"
        if tables is not None:
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in tables.items()}, str(tmp / "recsys.safetensors"))
            meta["files"]["recsys"] = "recsys.safetensors"
        if featurizer is not None:  # settings in zoo_export.json; TF-IDF's vocabulary (JSON) and idf (safetensors)
            import sklearn

            meta["files"].update(featurizer.save(tmp))
            meta["versions"]["scikit-learn"] = sklearn.__version__
        if fmt == "onnx":
            write_onnx(graph, spec, tmp / FILES[fmt])
            runner: Any = OnnxRunner(tmp / FILES[fmt], spec.inputs)
        elif fmt == "torch_export":
            write_torch_export(graph, spec, tmp / FILES[fmt])
            runner = exported_program_runner(tmp / FILES[fmt], spec.inputs)
        elif spec.scorer is not None:  # a recommender's tables: plain tensors any torch can score with
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in spec.scorer.state_dict().items()}, str(tmp / FILES[fmt]))
            runner = runner_for(tmp, meta)
        else:
            write_safetensors(model, tmp, meta, tokenizer)
            runner = ModuleRunner(Graph(rebuild(tmp, meta), spec.inputs, spec.task == "recommendation"), spec.inputs)
        meta["verification"] = {"against": "eager model", "backend": runner.backend,
                                **verify(eager, runner, spec, tolerance)}
        if spec.raw:
            meta["verification"]["from_raw_inputs"] = _verify_raw(eager, runner, spec, tolerance, tmp, meta)
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1))
    return meta


def check_out(fmt: str, out: str | Path, overwrite: bool) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and any(out.iterdir()) and not overwrite:
        raise ExportError(f"--out {out} exists and is not empty; choose another folder or pass --overwrite")
    return out


@contextmanager
def staged(out: Path) -> Iterator[Path]:
    """A temporary sibling of ``out`` to write into, renamed to ``out`` when the block succeeds and removed when it
    fails, so a failed export leaves nothing behind."""
    out.parent.mkdir(parents=True, exist_ok=True)
    tmp = Path(tempfile.mkdtemp(prefix=f".{out.name}.", dir=out.parent))
    try:
        yield tmp
        if out.exists():
            shutil.rmtree(out)
        tmp.rename(out)
    finally:
        if tmp.exists():
            shutil.rmtree(tmp, ignore_errors=True)


def _verify_raw(eager: Any, runner: Any, spec: Any, tolerance: float, folder: Path,
                meta: dict[str, Any]) -> dict[str, Any]:
    """The predictor's own path: the sample batches' raw inputs prepared from the folder just written (the n-gram
    featuriser rebuilt from its settings / vocabulary), run by the exported graph, against the eager model on the
    data's own inputs; so a featuriser that does not travel intact fails the export too."""
    family = family_for(meta)(folder, meta)
    feeds = [family.collate([family.parse(x) for x in batch]) for batch in spec.raw]
    result = verify(eager, runner, spec, tolerance, exported_feeds=feeds, what=" fed from raw inputs")
    return {k: v for k, v in result.items() if k not in ("tolerance", "allowed_abs_diff")}


def export_run(source: str | Path, fmt: str, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """Export a run directory (``<root>/<recipe>/version_N``) or a checkpoint file; the verification figures also
    go to ``export_report.json`` in the run directory."""
    model, datamodule, ckpt, run_dir = load_run(source)
    meta = export_model(model, datamodule, fmt, out, source=ckpt, **kwargs)
    if run_dir is not None:
        record_report(run_dir, fmt, out, meta["verification"])
    return meta


def record_report(folder: Path, fmt: str, out: str | Path, verification: dict[str, Any]) -> None:
    """``export_report.json`` in the exported run (or ensemble) directory: each format's folder and figures."""
    report = folder / "export_report.json"
    try:
        entries = json.loads(report.read_text()) if report.is_file() else {}
    except ValueError:
        entries = {}
    entries[fmt] = {"out": str(out), "verification": verification}
    atomic_write_text(report, json.dumps(entries, indent=2))


def export_source(source: str | Path, fmt: str, out: str | Path, **kwargs: Any) -> dict[str, Any]:
    """``zoo export SOURCE``: a run directory or checkpoint (:func:`export_run`), or a ``zoo ensemble`` directory
    (recognised by its ``ensemble.json``: :func:`zoo.export.ensemble.export_ensemble`)."""
    from zoo.export.ensemble import export_ensemble, is_ensemble_dir

    if is_ensemble_dir(source):
        return export_ensemble(source, fmt, out, **kwargs)
    return export_run(source, fmt, out, **kwargs)


def load_predictor(path: str | Path, backend: str | None = None, calibration: str = "temperature",
                   threads: int | None = None) -> Predictor | EnsemblePredictor:
    """A predictor for any export folder (a ``safetensors`` one is rebuilt with zoo's task classes) or exported
    ensemble, or for a run directory / checkpoint / ensemble directory (exported on the fly to a temporary
    safetensors folder)."""
    path = Path(path)
    if (path / ENSEMBLE_FILE).is_file():
        return load_ensemble(path, lambda member: load_predictor(member, backend, calibration, threads), calibration)
    if (path / META_FILE).is_file():
        meta = read_meta(path)
        if meta["format"] != "safetensors" or backend == "onnx" or meta.get("scorer") == "tables":
            return load(path, backend, calibration, threads)
        if threads:
            torch.set_num_threads(threads)
        model = rebuild(path, meta)
        return Predictor(path, meta, ModuleRunner(Graph(model, meta["inputs"], meta["task"] == "recommendation"),
                                                  meta["inputs"]), calibration)
    folder = Path(tempfile.mkdtemp(prefix="zoo_serve_"))
    export_source(path, "safetensors", folder / "model", overwrite=True)
    return load_predictor(folder / "model", backend, calibration, threads)


__all__ = ["FORMATS", "ExportError", "export_model", "export_run", "export_source", "load_predictor"]
