"""Temperature scaling and calibration figures (expected calibration error, NLL, reliability diagram).

Temperature scaling (Guo et al., 2017) divides the logits by one positive scalar (one per label for multi-label)
chosen to minimise the negative log-likelihood on held-out data; it never changes the arg-max, so accuracy stays.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor


def _flat(logits: Tensor, targets: Tensor, multi_label: bool) -> tuple[Tensor, Tensor]:
    """Rows of logits and targets with ignored positions (-100: sub-tokens, padding) dropped."""
    logits = logits.float()
    if multi_label:
        return logits.reshape(-1, logits.shape[-1]), targets.float().reshape(-1, logits.shape[-1])
    logits, targets = logits.reshape(-1, logits.shape[-1]), targets.reshape(-1).long()
    keep = targets != -100
    return logits[keep], targets[keep]


def nll(logits: Tensor, targets: Tensor, multi_label: bool = False) -> float:
    """Mean negative log-likelihood of ``targets`` (cross-entropy; binary cross-entropy per label for multi-label)."""
    logits, targets = _flat(logits, targets, multi_label)
    if multi_label:
        return float(F.binary_cross_entropy_with_logits(logits, targets))
    return float(F.cross_entropy(logits, targets))


#: the bisection searches 1 / T in [1 / _B_MAX, _B_MAX]
_B_MAX = 1e2


def fit_temperature(logits: Tensor, targets: Tensor, multi_label: bool = False, steps: int = 60) -> Tensor:
    """The temperature(s) minimising the NLL of ``targets`` given ``logits / T``: shape ``[1]``, or ``[C]`` for
    multi-label (one per label), within [0.01, 100]. A label whose validation examples are all on the right side
    of the decision boundary keeps T = 1: on separable data the NLL falls without end as T -> 0, so the minimiser
    says nothing about how confident to be, and the floor it reaches makes every later mistake near-certain (a
    multi-label recipe's test NLL rose from 0.09 to 0.30 with three labels at T = 0.01).

    The NLL is convex in ``b = 1 / T`` (a log-sum-exp of ``b z`` minus a linear term), so its derivative is
    increasing and a bisection on it (in log space, every label at once) finds the minimum exactly; Guo et al.'s
    L-BFGS takes seconds on a busy CPU for what this does in milliseconds."""
    logits, targets = _flat(logits.detach(), targets.detach(), multi_label)
    n = logits.shape[-1] if multi_label else 1
    lo, hi = torch.full((n,), -math.log(_B_MAX)), torch.full((n,), math.log(_B_MAX))
    if len(logits) == 0:
        return torch.ones(n)
    for _ in range(steps):
        mid = (lo + hi) / 2
        b = mid.exp()
        if multi_label:
            slope = (((logits * b).sigmoid() - targets) * logits).mean(0)
        else:
            z = logits * b
            slope = ((z.softmax(-1) * logits).sum(-1) - logits.gather(-1, targets.view(-1, 1)).squeeze(-1)).mean()
            slope = slope.reshape(1)
        up = slope > 0  # past the minimum: smaller b
        hi = torch.where(up, mid, hi)
        lo = torch.where(up, lo, mid)
    b = ((lo + hi) / 2).exp()
    separable = b >= 0.99 * _B_MAX  # still descending at the floor T = 1 / _B_MAX
    return torch.where(separable, torch.ones_like(b), 1.0 / b).float()


def temperature_at_bound(temperature: Tensor) -> bool:
    """Whether a fitted temperature sits at the search bound (T = 100 or 0.01): the minimiser ran out of range,
    so the validation logits said next to nothing about confidence (a fit of a few steps gives T = 100)."""
    t = temperature.detach().float().flatten()
    return bool(((t >= 0.99 * _B_MAX) | (t <= 1.01 / _B_MAX)).any())


def ece(probs: Tensor, targets: Tensor, multi_label: bool = False, n_bins: int = 15) -> float:
    """Expected calibration error (torchmetrics, L1, equal-width bins of the top-class confidence; for
    multi-label every (example, label) is one binary prediction)."""
    from torchmetrics.functional.classification import binary_calibration_error, multiclass_calibration_error

    if multi_label:
        return float(binary_calibration_error(probs.reshape(-1), targets.reshape(-1).round().long(), n_bins=n_bins))
    probs, targets = probs.reshape(-1, probs.shape[-1]), targets.reshape(-1).long()
    keep = targets != -100
    return float(multiclass_calibration_error(probs[keep], targets[keep], num_classes=probs.shape[-1], n_bins=n_bins))


def reliability_bins(probs: Tensor, targets: Tensor, multi_label: bool = False, n_bins: int = 15
                     ) -> tuple[Tensor, Tensor, Tensor]:
    """``(confidence, accuracy, count)`` per equal-width confidence bin, the points of a reliability diagram."""
    if multi_label:
        conf = probs.reshape(-1)
        correct = ((conf >= 0.5).long() == targets.reshape(-1).round().long()).float()
        conf = torch.where(conf >= 0.5, conf, 1 - conf)
    else:
        probs, targets = probs.reshape(-1, probs.shape[-1]), targets.reshape(-1).long()
        keep = targets != -100
        conf, pred = probs[keep].max(-1)
        correct = (pred == targets[keep]).float()
    idx = (conf * n_bins).long().clamp(max=n_bins - 1)
    count = torch.bincount(idx, minlength=n_bins).float()
    mean_conf = torch.bincount(idx, conf, minlength=n_bins) / count.clamp(min=1)
    acc = torch.bincount(idx, correct, minlength=n_bins) / count.clamp(min=1)
    return mean_conf, acc, count


def plot_reliability(curves: dict[str, tuple[Tensor, Tensor, Tensor]], path: Path, title: str = "") -> Path:
    """One reliability diagram with a line per entry of ``curves`` (e.g. before / after temperature scaling)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    from zoo.reporting.io import save_figure

    fig, ax = plt.subplots(figsize=(5, 5))
    ax.plot([0, 1], [0, 1], color="grey", linestyle="--", linewidth=1, label="perfect calibration")
    for name, (conf, acc, count) in curves.items():
        used = count > 0
        line = ax.plot(conf[used].tolist(), acc[used].tolist(), label=name, alpha=0.7)[0]
        # a bin of three examples says little: marker area shows how many fell in each bin
        share = count[used] / count[used].sum()
        ax.scatter(conf[used].tolist(), acc[used].tolist(), s=(10 + 400 * share).tolist(), color=line.get_color())
    ax.set_xlabel("confidence")
    ax.set_ylabel("accuracy")
    ax.set_xlim(0, 1)
    ax.set_ylim(0, 1)
    ax.set_title(title or "reliability diagram (marker area: share of examples)")
    ax.legend(loc="upper left")
    ax.grid(alpha=0.3)
    return save_figure(fig, path)


def calibration_summary(logits: Tensor, targets: Tensor, temperature: Tensor, multi_label: bool = False
                        ) -> dict[str, Any]:
    """ECE and NLL before and after dividing ``logits`` by ``temperature``, and the probabilities of both."""
    t = temperature.to(logits.device).float()
    out: dict[str, Any] = {"temperature": [round(float(x), 4) for x in t.flatten()]}
    for name, scaled in (("before", logits.float()), ("after", logits.float() / t)):
        probs = scaled.sigmoid() if multi_label else scaled.softmax(-1)
        out[f"ece_{name}"] = ece(probs, targets, multi_label)
        out[f"nll_{name}"] = nll(scaled, targets, multi_label)
        out[f"probs_{name}"] = probs
    return out


__all__ = ["calibration_summary", "ece", "fit_temperature", "nll", "plot_reliability", "reliability_bins",
           "temperature_at_bound"]
