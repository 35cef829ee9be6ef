"""``zoo export ENSEMBLE_DIR``: a ``zoo ensemble`` directory (its ``ensemble.json``) as an exported ensemble.

Each member of weight above 0 goes through the single-model export (:func:`zoo.export.export_model`, verified
against its eager model) into ``members/<i>/``, ``i`` being its place in ``ensemble.json``; members of weight 0
are never run, so they are not exported. ``zoo_ensemble.json`` records the members (run, folder, temperature,
weight), the class names, the source's hash and the verification: the exported ensemble
(:class:`zoo.inference.ensemble.EnsemblePredictor`, fed each row's raw text as ``zoo serve`` feeds it) against the
PyTorch ensemble (``Ensemble.combine`` over the members' eager logits) on the first ``--samples`` rows of the test
split, under the same limits as a single model's export.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch

from zoo.export.formats import verify
from zoo.export.spec import ExportError
from zoo.inference.ensemble import ENSEMBLE_FILE, EnsemblePredictor
from zoo.inference.family import ExportSpec
from zoo.reporting.io import atomic_write_text
from zoo.tasks.ensemble import FILE, Ensemble, Member


def is_ensemble_dir(path: str | Path) -> bool:
    return (Path(path) / FILE).is_file()


def export_ensemble(source: str | Path, fmt: str, out: str | Path, *, samples: int = 64, tolerance: float = 1e-4,
                    overwrite: bool = False, record: bool = True) -> dict[str, Any]:
    """Export the ensemble directory ``source``; returns the written ``zoo_ensemble.json`` contents (the
    verification figures also go to ``export_report.json`` in ``source``, unless ``record`` is false)."""
    from zoo.export import check_out, export_model, load_predictor, record_report, sha256, staged, versions

    source = Path(source)
    out = check_out(fmt, out, overwrite)
    ens = Ensemble.load(source)
    active = ens.active()
    manifest: dict[str, Any] = {
        "zoo_ensemble": 1, "format": fmt, "labels": list(ens.class_names), "members": [],
        "not_exported": [{"index": i, "run": m.run, "weight": m.weight} for i, m in enumerate(ens.members)
                         if m.weight <= 0],
        "source": {"ensemble": str(source / FILE), "sha256": sha256(source / FILE)}, "versions": versions()}
    with staged(out) as tmp:
        for i, m in enumerate(ens.members):
            if m.weight <= 0:
                continue
            folder = f"members/{i}"
            meta = export_model(m.model(), m.datamodule(), fmt, tmp / folder, source=m.checkpoint, samples=samples,
                                tolerance=tolerance)
            manifest["task"] = meta["task"]
            manifest["members"].append({"index": i, "run": m.run, "folder": folder, "temperature": m.temperature,
                                        "weight": m.weight, "model_class": meta["model_class"]})
        predictor = EnsemblePredictor(tmp, manifest, [load_predictor(tmp / m["folder"]) for m in manifest["members"]])
        manifest["verification"] = {"against": "PyTorch ensemble (Ensemble.combine)", "backend": predictor.backend,
                                    **_verify(ens, active, predictor, samples, tolerance)}
        atomic_write_text(tmp / ENSEMBLE_FILE, json.dumps(manifest, indent=1))
    if record:
        record_report(source, fmt, out, manifest["verification"])
    return manifest


def _verify(ens: Ensemble, active: list[Member], predictor: EnsemblePredictor, samples: int,
            tolerance: float) -> dict[str, Any]:
    """The exported ensemble on the raw texts of the first ``samples`` test rows (and of the first 3, another
    batch shape) against ``Ensemble.combine`` on the same rows; :func:`zoo.export.formats.verify` judges."""
    outs = ens.outputs("test", members=active)
    texts = outs[0].texts
    if not texts:
        raise ExportError(f"the test batches of {active[0].run} carry no raw texts to verify the exported ensemble "
                          "on; zoo export handles ensembles of text classifiers")
    n = min(samples, len(texts))
    expected = ens.combine(outs, active)[:n]
    parsed = [predictor.parse({"text": t}) for t in texts[:n]]
    rows = torch.arange(n)
    spec = ExportSpec(["row"], {}, {}, [{"row": rows}, {"row": rows[:3]}])

    def exported(feeds: dict[str, torch.Tensor]) -> torch.Tensor:
        return predictor.probabilities([parsed[i] for i in feeds["row"].tolist()])

    return verify(lambda r: expected[r], exported, spec, tolerance, what=" (the ensemble, fed from raw texts)")


__all__ = ["export_ensemble", "is_ensemble_dir"]
