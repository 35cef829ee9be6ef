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

import json
import math
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
from zoo.export.spec import ExportError, merged, temperature_of
from zoo.inference import META_FILE, EnsemblePredictor, Manifest, ModuleRunner, Predictor, load, read_export
from zoo.inference.family import ExportSpec, Family, FamilyError, family_of
from zoo.inference.integrity import HASHES, folder_hashes, sha256
from zoo.inference.manifest import is_export_folder
from zoo.inference.runners import OnnxRunner, exported_program_runner, runner_for
from zoo.reporting.io import atomic_write_text
from zoo.version import __version__


def versions() -> dict[str, str]:
    import onnx
    import onnxruntime

    return {"zoo": __version__, "torch": torch.__version__, "onnx": onnx.__version__,
            "onnxruntime": onnxruntime.__version__}


def export_model(model: Any, datamodule: Any, fmt: str, out: str | Path, *, source: str | Path | None = None,
                 samples: int = 64, tolerance: float = 1e-4, overwrite: bool = False,
                 card: dict[str, Any] | None = None, trust: dict[str, Any] | None = None) -> dict[str, Any]:
    """Export a model bound to its datamodule through its family (:func:`zoo.inference.family.family_of`);
    returns the written ``zoo_export.json`` contents. ``card``: the run's model-card summary
    (:func:`zoo.reporting.card.summary`), kept under ``card`` for ``zoo serve``'s ``/info`` and page.
    ``trust``: the run's ``trust.json`` (``zoo test``), whose conformal threshold becomes ``conformal``."""
    out = check_out(fmt, out, overwrite)
    model.bind_data(datamodule)
    model = merged(model)
    try:
        family = family_of(model)
        spec = family.describe(model, datamodule, samples)
    except FamilyError as err:
        raise ExportError(str(err)) from None
    if not spec.samples:
        raise ExportError("the run's data yields no sample inputs to verify the export on")
    meta: dict[str, Any] = {"zoo_export": 1, "format": fmt, "task": family.task, "family": family.name,
                            "model_class": f"{type(model).__module__}.{type(model).__qualname__}",
                            "inputs": spec.inputs, "output": "output", "files": {fmt: FILES[fmt]},
                            "temperature": temperature_of(model), **spec.meta,
                            "versions": {**versions(), **family.asset_versions()}}
    if card:
        meta["card"] = card
    conformal = conformal_threshold(trust, meta["temperature"]) if not meta.get("multi_label") else None
    if conformal:
        meta["conformal"] = conformal
    if source is not None and Path(source).is_file():
        meta["source"] = {"checkpoint": str(source), "sha256": sha256(Path(source))}
    eager = family.graph(model, spec.inputs).eval()
    graph = spec.scorer if spec.scorer is not None else eager
    with staged(out) as tmp:
        meta["files"].update(family.write_assets(spec, tmp))
        if fmt == "onnx":
            write_onnx(graph, spec, tmp / FILES[fmt])
            runner: Any = OnnxRunner(tmp / FILES[fmt], spec.inputs)
        elif fmt == "torch_export":
            write_torch_export(graph, spec, tmp / FILES[fmt])
            runner = exported_program_runner(tmp / FILES[fmt], spec.inputs)
        elif spec.scorer is not None:  # a recommender's tables: plain tensors any torch can score with
            from safetensors.torch import save_file

            save_file({k: v.contiguous() for k, v in spec.scorer.state_dict().items()}, str(tmp / FILES[fmt]))
            runner = runner_for(tmp, Manifest.from_json(meta, tmp))
        else:
            write_safetensors(model, tmp, meta, spec.assets.get("tokenizer"))
            runner = ModuleRunner(family.graph(rebuild(tmp, meta), spec.inputs), spec.inputs)
        meta["verification"] = {"against": "eager model", "backend": runner.backend,
                                **verify(eager, runner, spec, tolerance)}
        if spec.raw:
            meta["verification"]["from_raw_inputs"] = _verify_raw(eager, runner, spec, tolerance, family,
                                                                  Manifest.from_json(meta, tmp))
        meta[HASHES] = folder_hashes(tmp)  # zoo serve checks them at start (zoo.inference.integrity)
        atomic_write_text(tmp / META_FILE, json.dumps(meta, indent=1))
    return meta


def check_out(fmt: str, out: str | Path, overwrite: bool) -> Path:
    if fmt not in FORMATS:
        raise ExportError(f"--format must be one of {', '.join(FORMATS)}, got {fmt!r}")
    out = Path(out)
    if out.exists() and not out.is_dir():
        raise ExportError(f"--out {out} is a file; give a folder to write the export into")
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


def _verify_raw(eager: Any, runner: Any, spec: ExportSpec, tolerance: float, family: type[Family],
                manifest: Manifest) -> dict[str, Any]:
    """The predictor's own path: the sample batches' raw inputs read by the family from the folder just written
    (the n-gram featuriser rebuilt from its settings / vocabulary), run by the exported graph, against the eager
    model on the data's own inputs; so preprocessing that does not travel intact fails the export too."""
    reader = family(manifest.folder, manifest)
    feeds = [reader.collate([reader.parse(x) for x in batch]) for batch in spec.raw]
    result = verify(eager, runner, spec, tolerance, exported_feeds=feeds, what=" fed from raw inputs")
    return {k: v for k, v in result.items() if k not in ("tolerance", "allowed_abs_diff")}


#: the coverage an answer's prediction set promises, when ``zoo test`` measured it (its default levels: 0.8, 0.9, 0.95)
SET_COVERAGE = 0.9


def conformal_threshold(trust: dict[str, Any] | None, temperature: list[float]) -> dict[str, Any] | None:
    """``zoo test``'s split-conformal LAC threshold at :data:`SET_COVERAGE` (calibrated on the validation split),
    for single-label answers' prediction sets; None when the test report is not of this model: its calibration
    temperature must be the exported one, else the threshold was measured on other probabilities."""
    if not trust or trust.get("kind") != "single":
        return None
    rows = [r for r in trust.get("conformal") or [] if r.get("method") == "lac"
            and abs(float(r.get("target", 0)) - SET_COVERAGE) < 1e-9 and math.isfinite(float(r["threshold"]))]
    tested = (trust.get("calibration") or {}).get("temperature") or [1.0]
    same = len(tested) == len(temperature) and all(abs(a - b) <= 1e-3 * max(1.0, abs(b))
                                                   for a, b in zip(tested, temperature))
    if not rows or not same:
        return None
    return {"method": "lac", "coverage": SET_COVERAGE, "threshold": float(rows[0]["threshold"]),
            "n_cal": int(rows[0].get("n_cal", 0)), "test_coverage": float(rows[0]["coverage"])}


def export_run(source: str | Path, fmt: str, out: str | Path, *, record: bool = True, **kwargs: Any) -> dict[str, Any]:
    """Export a run directory (``<root>/<recipe>/version_N``) or a checkpoint file; the verification figures also
    go to ``export_report.json`` in the run directory (unless ``record`` is false: a throw-away export)."""
    from zoo.reporting.card import collect, summary

    model, datamodule, ckpt, run_dir = load_run(source)
    info = collect([run_dir]) if run_dir is not None else None
    card = summary(info) if info is not None else None
    meta = export_model(model, datamodule, fmt, out, source=ckpt, card=card,
                        trust=info["trust"] if info is not None else None, **kwargs)
    if run_dir is not None and record:
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


@contextmanager
def prepared(path: str | Path) -> Iterator[Path]:
    """An export folder for ``path`` for the length of the block: ``path`` itself when it is one, else a
    ``safetensors`` export of the run directory / checkpoint / ``zoo ensemble`` directory in a temporary folder,
    removed when the block ends (however it ends)."""
    if is_export_folder(path):
        yield Path(path)
        return
    with tempfile.TemporaryDirectory(prefix="zoo_export_") as tmp:
        # a throw-away folder: the run's export_report.json keeps pointing at the user's own exports
        export_source(path, "safetensors", Path(tmp) / "model", record=False)
        yield Path(tmp) / "model"


def load_predictor(path: str | Path, backend: str | None = None, calibration: str = "temperature",
                   threads: int | None = None) -> Predictor | EnsemblePredictor:
    """A predictor for any export folder or exported ensemble, in any format (a ``safetensors`` model is rebuilt
    with zoo's task classes), or for a run directory / checkpoint / ensemble directory (exported on the fly to a
    temporary folder, removed once the predictor holds what it needs)."""
    with prepared(path) as folder:
        return load(read_export(folder), backend, calibration, threads, rebuild=rebuild)


__all__ = ["FORMATS", "ExportError", "export_model", "export_run", "export_source", "is_export_folder",
           "load_predictor", "prepared"]
