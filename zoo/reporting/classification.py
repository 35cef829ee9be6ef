"""Per-class precision / recall / F1 and a confusion-matrix picture, derived from one confusion matrix.

Working from the (rank-synchronised) confusion matrix keeps reports exact under DDP and needs no stored
predictions.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.reporting.io import atomic_write_text, save_figure


def per_class_scores(confusion: Tensor, class_names: list[str]) -> dict[str, Any]:
    """Rows are true classes, columns predictions (torchmetrics' convention)."""
    cm = confusion.double()
    tp = cm.diag()
    support = cm.sum(1)
    predicted = cm.sum(0)
    precision = torch.where(predicted > 0, tp / predicted.clamp(min=1), torch.zeros_like(tp))
    recall = torch.where(support > 0, tp / support.clamp(min=1), torch.zeros_like(tp))
    denom = precision + recall
    f1 = torch.where(denom > 0, 2 * precision * recall / denom.clamp(min=1e-12), torch.zeros_like(tp))
    names = class_names if len(class_names) == cm.shape[0] else [str(i) for i in range(cm.shape[0])]
    classes = {
        name: {"precision": float(p), "recall": float(r), "f1": float(f), "support": int(s)}
        for name, p, r, f, s in zip(names, precision, recall, f1, support)
    }
    total = float(support.sum())
    weights = support / max(total, 1.0)
    return {
        "classes": classes,
        "accuracy": float(tp.sum() / max(total, 1.0)),
        "macro_avg": {"precision": float(precision.mean()), "recall": float(recall.mean()), "f1": float(f1.mean()),
                      "support": int(total)},
        "weighted_avg": {
            "precision": float((precision * weights).sum()),
            "recall": float((recall * weights).sum()),
            "f1": float((f1 * weights).sum()),
            "support": int(total),
        },
        "confusion_matrix": cm.long().tolist(),
        "class_names": names,
    }


def format_report(scores: dict[str, Any]) -> str:
    names = list(scores["classes"])
    width = max([len(n) for n in names] + [len("weighted avg")])
    lines = [f"{'':>{width}}  precision    recall  f1-score   support", ""]
    for name, s in scores["classes"].items():
        lines.append(f"{name:>{width}}  {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}")
    lines.append("")
    total = scores["macro_avg"]["support"]
    lines.append(f"{'accuracy':>{width}}  {'':9} {'':9} {scores['accuracy']:9.4f} {total:9d}")
    for key, label in (("macro_avg", "macro avg"), ("weighted_avg", "weighted avg")):
        s = scores[key]
        lines.append(f"{label:>{width}}  {s['precision']:9.4f} {s['recall']:9.4f} {s['f1']:9.4f} {s['support']:9d}")
    return "\n".join(lines) + "\n"


def plot_confusion_matrix(confusion: Tensor, class_names: list[str], path: Path, normalize: bool = True) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    cm = confusion.double()
    shown = cm / cm.sum(1, keepdim=True).clamp(min=1) if normalize else cm
    n = cm.shape[0]
    size = min(4 + 0.45 * n, 20)
    fig, ax = plt.subplots(figsize=(size, size))
    im = ax.imshow(shown.numpy(), cmap="Blues", vmin=0, vmax=1 if normalize else None)
    fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
    ax.set_xticks(range(n), class_names, rotation=45, ha="right")
    ax.set_yticks(range(n), class_names)
    ax.set_xlabel("predicted")
    ax.set_ylabel("true")
    ax.set_title("confusion matrix (rows normalised)" if normalize else "confusion matrix")
    if n <= 25:
        for i in range(n):
            for j in range(n):
                count = int(cm[i, j])
                if count:
                    ax.text(j, i, str(count), ha="center", va="center", fontsize=8,
                            color="white" if shown[i, j] > 0.5 else "black")
    return save_figure(fig, path, dpi=110)


def write_classification_report(confusion: Tensor, class_names: list[str], out_dir: Path) -> list[Path]:
    scores = per_class_scores(confusion, class_names)
    out_dir.mkdir(parents=True, exist_ok=True)
    txt = atomic_write_text(out_dir / "classification_report.txt", format_report(scores))
    js = atomic_write_text(out_dir / "classification_report.json", json.dumps(scores, indent=2))
    png = plot_confusion_matrix(confusion, scores["class_names"], out_dir / "confusion_matrix.png")
    return [txt, js, png]
