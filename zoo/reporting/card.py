"""``MODEL_CARD.md`` in the Hugging Face model-card layout: YAML metadata with a ``model-index`` of the test metrics,
then data, training recipe and time, test metrics with the per-class table, calibration, conformal coverage, robust
accuracy, the baseline comparison, export verification, and intended use / limitations from the user's ``card:``
block. Built only from the files a run leaves behind, so ``zoo card RUN_DIR`` works on any finished run.
"""

from __future__ import annotations

import csv
import json
from pathlib import Path
from typing import Any

import yaml

from zoo.reporting.io import atomic_write_text

#: zoo metric name -> the metric ``type`` of a Hugging Face model-index (https://hf.co/metrics)
HF_METRIC = {"acc": "accuracy", "f1_macro": "f1", "f1_micro": "f1", "f1": "f1", "precision_macro": "precision",
             "recall_macro": "recall", "precision": "precision", "recall": "recall", "auroc": "roc_auc",
             "exact_match": "exact_match", "token_acc": "accuracy", "loss": "loss"}
#: export family (a task class's ``export_family``) -> (pipeline tag, readable name). Hugging Face has no pipeline
#: for recommenders: zoo states ``recommendation``
HF_TASK = {"text_classification": ("text-classification", "Text Classification"),
           "ngram_text_classification": ("text-classification", "Text Classification"),
           "token_classification": ("token-classification", "Token Classification"),
           "image_classification": ("image-classification", "Image Classification"),
           "recommendation": ("recommendation", "Recommendation")}
SECTIONS = ("Model details", "Data", "Training", "Test metrics", "Calibration", "Conformal prediction",
            "Selective prediction", "Robustness", "Baseline comparison", "Export", "Intended use", "Limitations")


def _newest(dirs: list[Path], name: str) -> Path | None:
    found = [p for d in dirs if d.is_dir() for p in d.rglob(name)]
    return max(found, key=lambda p: p.stat().st_mtime) if found else None


def _json(dirs: list[Path], name: str) -> Any:
    path = _newest(dirs, name)
    return json.loads(path.read_text(encoding="utf-8")) if path else None


def _yaml(dirs: list[Path], name: str) -> Any:
    path = _newest(dirs, name)
    return yaml.safe_load(path.read_text(encoding="utf-8")) if path else None


def _test_metrics(dirs: list[Path]) -> dict[str, float]:
    """``test_metrics.json`` (written at test end), else the last test/ values of the newest metrics.csv."""
    saved = _json(dirs, "test_metrics.json")
    if saved:
        return {k.split("/", 1)[1]: float(v) for k, v in saved.items() if k.startswith("test/")}
    found = sorted((p for d in dirs if d.is_dir() for p in d.rglob("metrics.csv")), key=lambda p: p.stat().st_mtime)
    for path in reversed(found):
        with path.open(encoding="utf-8") as fh:
            out: dict[str, float] = {}
            for row in csv.DictReader(fh):
                out.update({k.split("/", 1)[1]: float(v) for k, v in row.items() if k.startswith("test/") and v})
        if out:
            return out
    return {}


def collect(dirs: list[Path]) -> dict[str, Any]:
    """Everything a card shows, read from the run folders ``dirs`` (a fit run and / or its test run)."""
    config = _yaml(dirs, "config.yaml") or {}
    return {
        "config": config, "hparams": _yaml(dirs, "hparams.yaml") or {}, "metrics": _test_metrics(dirs),
        "per_class": (_json(dirs, "classification_report.json") or _json(dirs, "multilabel_report.json")
                      or _json(dirs, "entity_report.json")),
        "trust": _json(dirs, "trust.json"), "baseline": _json(dirs, "baseline.json"),
        "data": _json(dirs, "data_summary.json"), "training": _json(dirs, "training_summary.json"),
        "export": _json(dirs, "export_verification.json") or _json(dirs, "verification.json"),
        "card": config.get("card") or {},
    }


def _family(class_path: str) -> str | None:
    """The export family a task class names, from its dotted path (None when it cannot be imported)."""
    import importlib

    module, _, name = class_path.rpartition(".")
    if not module:
        return None
    try:
        return getattr(getattr(importlib.import_module(module), name, None), "export_family", None)
    except Exception:  # a card is still written for a class that no longer imports: the tag says less
        return None


def _task(info: dict[str, Any]) -> tuple[str, str, str]:
    """(class path, pipeline tag, readable task name): from the export family the fit recorded, else the one the
    task class names, else the class's own name."""
    model = (info.get("config") or {}).get("model") or {}
    class_path = str(model.get("class_path", "model")) if isinstance(model, dict) else "model"
    family = (info.get("training") or {}).get("export_family") or _family(class_path)
    if family in HF_TASK:
        return class_path, *HF_TASK[family]
    return class_path, "other", class_path.rsplit(".", 1)[-1]


def _dataset(config: dict[str, Any]) -> str:
    """The dataset's name for the card: ``card.dataset_name`` when given, a built-in dataset's name, else the
    training file relative to the working directory (its file name when it lies elsewhere): never an absolute
    path, which says where the author keeps files rather than what the data is."""
    given = (config.get("card") or {}).get("dataset_name")
    if given:
        return str(given)
    data = (config.get("data") or {}).get("init_args") or {}
    name = (data.get("dataset") or data.get("train") or data.get("folder") or data.get("csv")
            or data.get("interactions"))
    if not name:
        return "custom"
    path = Path(str(name))
    if not path.is_absolute():
        return str(name)
    try:
        return str(path.resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return path.name


def metadata(info: dict[str, Any], name: str) -> dict[str, Any]:
    class_path, tag, task_name = _task(info)
    dataset = _dataset(info["config"])
    results_metrics = [{"type": HF_METRIC.get(k, k.replace("@", "_at_")), "value": round(float(v), 6),
                        "name": f"test/{k}"} for k, v in sorted(info["metrics"].items()) if k != "loss"]
    meta: dict[str, Any] = {"library_name": "zoo", "tags": ["zoo", tag], "pipeline_tag": tag,
                            "datasets": [dataset], "metrics": sorted({m["type"] for m in results_metrics})}
    license_ = (info["card"] or {}).get("license")
    if license_:
        meta["license"] = license_
    meta["model-index"] = [{"name": name, "results": [{
        "task": {"type": tag, "name": task_name},
        "dataset": {"name": dataset, "type": dataset, "split": "test"},
        "metrics": results_metrics or [{"type": "loss", "value": float(info["metrics"].get("loss", 0.0)),
                                        "name": "test/loss"}]}]}]
    return meta


def _precision(configured: Any, used: Any) -> str:
    """``auto`` with what it resolved to on the training machine (``training_summary.json``)."""
    return f"{configured} ({used} on the training machine)" if configured == "auto" and used else str(configured)


def _table(rows: list[list[Any]], head: list[str]) -> list[str]:
    out = ["| " + " | ".join(head) + " |", "|" + "---|" * len(head)]
    out += ["| " + " | ".join(f"{c:.4f}" if isinstance(c, float) else str(c) for c in r) + " |" for r in rows]
    return out


def _per_class(per_class: Any) -> list[str]:
    if not isinstance(per_class, dict):
        return ["No per-class report was found."]
    table = per_class.get("classes") or per_class.get("labels") or {
        k: v for k, v in per_class.items() if isinstance(v, dict) and "avg" not in k}
    rows = [[name, float(s.get("precision", 0)), float(s.get("recall", 0)),
             float(s.get("f1", s.get("f1-score", 0))), int(s.get("support", 0))] for name, s in table.items()]
    return _table(rows, ["class", "precision", "recall", "f1", "support"])


def _text(value: Any, fallback: str) -> list[str]:
    if not value:
        return [fallback]
    return [f"- {v}" for v in value] if isinstance(value, list) else [str(value)]


def render(info: dict[str, Any], name: str) -> str:
    meta = metadata(info, name)
    cfg, card = info["config"], info["card"] or {}
    class_path, _, task_name = _task(info)
    model_args = (cfg.get("model") or {}).get("init_args") or {}
    lines = ["---", yaml.safe_dump(meta, sort_keys=False, allow_unicode=True).strip(), "---", "",
             f"# {name}", "", str(card.get("summary") or f"A {task_name.lower()} model trained with zoo."), "",
             "## Model details", "", f"- class: `{class_path}`"]
    lines += [f"- {k}: `{v}`" for k, v in model_args.items() if v is not None and not isinstance(v, dict | list)][:12]
    lines += ["", "## Data", "", f"- dataset: `{_dataset(cfg)}`"]
    data = info["data"] or {}
    for key in ("sizes", "label_distribution", "truncated", "unknown_token_rate"):
        if key in data:
            lines.append(f"- {key.replace('_', ' ')}: {json.dumps(data[key])}")
    base = info["baseline"] or {}
    if base.get("unknown_token_rate") is not None and "unknown_token_rate" not in data:
        lines.append(f"- unknown-token rate (training split): {100 * base['unknown_token_rate']:.2f} %")
    training = info["training"] or {}
    trainer = cfg.get("trainer") or {}
    lines += ["", "## Training", "",
              f"- max_epochs: {trainer.get('max_epochs')}, precision: "
              f"{_precision(trainer.get('precision'), training.get('precision'))}, "
              f"seed: {cfg.get('seed_everything')}"]
    if training:
        lines.append(f"- trained {training.get('epochs')} epochs, {training.get('steps')} steps in "
                     f"{training.get('minutes')} min on {training.get('machine', 'CPU')}")
        kept = training.get("kept")
        if kept:
            value = "" if kept.get("value") is None else f", {kept['monitor']} {kept['value']:.4f}"
            lines.append(f"- kept checkpoint: `{kept['checkpoint']}`, epoch {kept['epoch']}{value} (the weights "
                         "tested, exported and served)")
    lines += ["", "## Test metrics", ""]
    lines += _table([[f"test/{k}", float(v)] for k, v in sorted(info["metrics"].items())], ["metric", "value"])
    lines += ["", "Per class:", "", *_per_class(info["per_class"])]
    trust = info["trust"] or {}
    lines += ["", "## Calibration", ""]
    if trust.get("calibration"):
        c = trust["calibration"]
        lines += _table([["before", c["ece_before"], c["nll_before"]], ["after temperature scaling", c["ece_after"],
                                                                      c["nll_after"]]], ["", "ECE", "NLL"])
        lines += ["", f"Temperature {c['temperature']} fitted on the validation split; applied by predict and serve "
                  "(`--calibration none` switches it off)."]
    else:
        lines.append("Not measured (no trust.json).")
    lines += ["", "## Conformal prediction", ""]
    if trust.get("conformal"):
        lines += _table([[r["method"], r["target"], r["coverage"], r["mean_set_size"], "yes" if r["short"] else "no"]
                         for r in trust["conformal"]], ["score", "target", "coverage", "mean set size", "short"])
    else:
        lines.append("Not applicable or not measured (single-label classifiers only).")
    lines += ["", "## Selective prediction", ""]
    sel = trust.get("selective")
    lines += [f"AURC {sel['aurc']:.4f}." + (f" {sel['statement']}." if sel.get("statement") else "")] if sel else [
        "Not measured."]
    lines += ["", "## Robustness", ""]
    robust = {k: v for k, v in info["metrics"].items() if "robust" in k or "adv" in k}
    lines += _table([[f"test/{k}", float(v)] for k, v in robust.items()], ["metric", "value"]) if robust else [
        "`adversarial_evaluation` did not run."]
    lines += ["", "## Baseline comparison", ""]
    if base.get("rows"):
        lines += [f"Reference: {base['reference']}.", ""]
        lines += _table([[r["metric"], r["model"], r["reference"], r["difference"]] for r in base["rows"]],
                        ["metric", "model", "reference", "difference"])
        lines += ["", "The model beats the reference." if base.get("beats") else
                  "**The model does not beat the reference by the margin** "
                  f"({', '.join(base.get('causes', []))})."]
    else:
        lines.append("No baseline comparison was found.")
    lines += ["", "## Export", ""]
    lines += [f"Export verification: {json.dumps(info['export'])}"] if info["export"] else ["Not exported."]
    lines += ["", "## Intended use", "", *_text(card.get("intended_use"), "Not stated: add `card: {intended_use: "
                                                   "...}` to the recipe.")]
    lines += ["", "## Limitations", "", *_text(card.get("limitations"), "Not stated: add `card: {limitations: ...}` "
                                                "to the recipe.")]
    return "\n".join(lines) + "\n"


def summary(info: dict[str, Any]) -> dict[str, Any]:
    """The card's headline in a few JSON fields (task, data, test metrics, baseline verdict): what ``zoo export``
    records under ``card`` and ``zoo serve`` shows in ``/info`` and on its page."""
    _, _, task_name = _task(info)
    out: dict[str, Any] = {"task": task_name, "dataset": _dataset(info["config"]),
                           "summary": (info["card"] or {}).get("summary"),
                           "metrics": {k: round(float(v), 6) for k, v in sorted(info["metrics"].items())
                                       if k != "loss"}}
    base = info["baseline"] or {}
    if base.get("rows"):
        out["headline"] = base.get("headline")
        out["baseline"] = {"reference": base.get("reference"), "beats": base.get("beats"),
                           "rows": [{k: r[k] for k in ("metric", "model", "reference")} for r in base["rows"]]}
    return out


def _run_name(out_dir: Path) -> str:
    """``runs/<recipe>/version_N[/test]`` -> ``<recipe>``: the logger names runs after their recipe."""
    for part in reversed(out_dir.resolve().parts):
        if not part.startswith("version_") and part not in ("test", "predict") and not part.startswith("test_"):
            return part
    return "zoo model"


def write_model_card(out_dir: Path, sources: list[Path] | None = None, name: str | None = None) -> Path:
    """Write ``out_dir/MODEL_CARD.md`` from the artifacts under ``sources`` (default: ``out_dir``)."""
    out_dir = Path(out_dir)
    dirs = [Path(d) for d in (sources or [out_dir])]
    info = collect(dirs)
    title = name or str((info["card"] or {}).get("name") or _run_name(out_dir))
    return atomic_write_text(out_dir / "MODEL_CARD.md", render(info, title))


__all__ = ["SECTIONS", "collect", "metadata", "render", "summary", "write_model_card"]
