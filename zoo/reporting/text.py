"""Text-specific test reports: worst-misclassified examples, per-label multi-label scores, entity-level NER report."""

from __future__ import annotations

import csv
import io
import json
from pathlib import Path
from typing import Any

from torch import Tensor

from zoo.reporting.io import atomic_write_text


def write_worst_examples(rows: list[dict[str, Any]], out_dir: Path, top: int = 25) -> list[Path]:
    """The misclassified test examples the model was most confident about (CSV + markdown table)."""
    total = len(rows)
    rows = sorted(rows, key=lambda r: -r["confidence"])[:top]
    fields = ["id", "true", "predicted", "confidence", "p_true", "text"]
    buf = io.StringIO()
    writer = csv.DictWriter(buf, fieldnames=fields, lineterminator="\n", extrasaction="ignore")
    writer.writeheader()
    writer.writerows(rows)
    lines = ["# Worst-misclassified test examples", "",
             f"The {len(rows)} most confident of {total} test errors, highest confidence first.", "",
             "| id | true | predicted | confidence | p(true) | text |", "|---|---|---|---|---|---|"]
    for r in rows:
        text = " ".join(str(r["text"]).split())
        text = (text[:160] + "...") if len(text) > 160 else text
        lines.append(f"| {r['id']} | {r['true']} | {r['predicted']} | {r['confidence']:.3f} | {r['p_true']:.3f} | "
                     f"{text.replace('|', '/')} |")
    out_dir.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(out_dir / "worst_misclassified.csv", buf.getvalue()),
            atomic_write_text(out_dir / "worst_misclassified.md", "\n".join(lines) + "\n")]


def multilabel_scores(stats: Tensor, class_names: list[str]) -> dict[str, Any]:
    """Per-label P/R/F1 from torchmetrics' ``MultilabelStatScores(average=None)`` rows ``[tp, fp, tn, fn, support]``."""
    out: dict[str, Any] = {"labels": {}}
    tp_all = fp_all = fn_all = 0.0
    f1s = []
    for name, row in zip(class_names, stats.double().tolist()):
        tp, fp, _, fn, support = row
        p = tp / (tp + fp) if tp + fp else 0.0
        r = tp / (tp + fn) if tp + fn else 0.0
        f = 2 * p * r / (p + r) if p + r else 0.0
        out["labels"][name] = {"precision": p, "recall": r, "f1": f, "support": int(support)}
        tp_all, fp_all, fn_all = tp_all + tp, fp_all + fp, fn_all + fn
        f1s.append(f)
    p = tp_all / (tp_all + fp_all) if tp_all + fp_all else 0.0
    r = tp_all / (tp_all + fn_all) if tp_all + fn_all else 0.0
    out["micro_avg"] = {"precision": p, "recall": r, "f1": 2 * p * r / (p + r) if p + r else 0.0}
    out["macro_avg"] = {"f1": sum(f1s) / max(1, len(f1s))}
    return out


def write_multilabel_report(stats: Tensor, class_names: list[str], out_dir: Path) -> list[Path]:
    scores = multilabel_scores(stats, class_names)
    width = max([len(n) for n in class_names] + [9])
    lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
    for name, s in scores["labels"].items():
        lines.append(f"{name:>{width}}  {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}")
    m = scores["micro_avg"]
    lines += ["", f"{'micro avg':>{width}}  {m['precision']:9.4f} {m['recall']:9.4f} {m['f1']:9.4f}",
              f"{'macro avg':>{width}}  {'':9} {'':9} {scores['macro_avg']['f1']:9.4f}"]
    out_dir.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(out_dir / "multilabel_report.txt", "\n".join(lines) + "\n"),
            atomic_write_text(out_dir / "multilabel_report.json", json.dumps(scores, indent=2))]


def write_entity_report(gold: list[list[str]], pred: list[list[str]], out_dir: Path) -> list[Path]:
    """seqeval's per-entity-type report (strict IOB2), as text and JSON."""
    from seqeval.metrics import classification_report
    from seqeval.scheme import IOB2

    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    text = classification_report(gold, pred, digits=4, **kw)
    table = classification_report(gold, pred, output_dict=True, **kw)
    table = {k: {m: (int(v) if m == "support" else float(v)) for m, v in d.items()} for k, d in table.items()}
    out_dir.mkdir(parents=True, exist_ok=True)
    return [atomic_write_text(out_dir / "entity_report.txt", text),
            atomic_write_text(out_dir / "entity_report.json", json.dumps(table, indent=2))]
