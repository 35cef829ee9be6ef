"""Selective prediction: answer only when confident, send the rest to a person.

Sorting the test examples by confidence gives, for each coverage (fraction answered), the error rate among the
answered ones: the risk-coverage curve (El-Yaniv & Wiener, 2010). Its area (AURC) is the mean risk over all
coverages; lower is better.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import torch
from torch import Tensor


def risk_coverage(confidence: Tensor, correct: Tensor) -> tuple[Tensor, Tensor, Tensor]:
    """``(coverage, risk, threshold)`` when answering the k most confident examples, k = 1..N."""
    order = confidence.float().argsort(descending=True)
    conf = confidence.float()[order]
    wrong = 1.0 - correct.float()[order]
    k = torch.arange(1, len(conf) + 1, dtype=torch.float32)
    return k / len(conf), wrong.cumsum(0) / k, conf


def aurc(confidence: Tensor, correct: Tensor) -> float:
    """Area under the risk-coverage curve (the mean of the risks at every coverage step)."""
    if len(confidence) == 0:
        return float("nan")
    return float(risk_coverage(confidence, correct)[1].mean())


def threshold_for_accuracy(confidence: Tensor, correct: Tensor, target: float) -> dict[str, Any] | None:
    """The lowest confidence threshold whose answered examples reach ``target`` accuracy, with the fraction
    answered; ``None`` when not even the single most confident answer does. Ties share a threshold, so only
    cut points between distinct confidences count."""
    if not 0.0 < target <= 1.0:
        raise ValueError(f"target accuracy must be in (0, 1], got {target}")
    if len(confidence) == 0:
        return None
    cov, risk, conf = risk_coverage(confidence, correct)
    last_of_tie = torch.ones_like(conf, dtype=torch.bool)
    last_of_tie[:-1] = conf[1:] < conf[:-1]
    ok = ((1.0 - risk) >= target - 1e-9) & last_of_tie
    if not bool(ok.any()):
        return None
    i = int(torch.nonzero(ok).flatten()[-1])
    return {"threshold": float(conf[i]), "coverage": float(cov[i]), "accuracy": float(1.0 - risk[i]),
            "target": target}


def statement(result: dict[str, Any] | None, target: float) -> str:
    """The one line a person acts on."""
    if result is None:
        return (f"no confidence threshold reaches {target:g} accuracy on the test split: send every input to a "
                "person")
    return (f"answer {100 * result['coverage']:.0f} % of inputs automatically at {target:g} accuracy (confidence "
            f">= {result['threshold']:.4f}), send the rest to a person")


def plot_risk_coverage(curves: dict[str, tuple[Tensor, Tensor]], path: Path) -> Path:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.reporting.io import save_figure

    fig, ax = plt.subplots(figsize=(5, 4))
    for name, (cov, risk) in curves.items():
        ax.plot(cov.tolist(), risk.tolist(), label=name)
    ax.set_xlabel("coverage (fraction answered)")
    ax.set_ylabel("risk (error rate among answered)")
    ax.set_xlim(0, 1)
    ax.set_ylim(bottom=0)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title("risk-coverage")
    return save_figure(fig, path)


__all__ = ["aurc", "plot_risk_coverage", "risk_coverage", "statement", "threshold_for_accuracy"]
