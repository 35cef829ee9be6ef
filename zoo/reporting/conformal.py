"""Split conformal prediction sets for single-label classifiers (LAC and APS scores).

A non-conformity score is computed for each calibration example's true class; the threshold is the
``ceil((n + 1)(1 - alpha)) / n`` empirical quantile, so a new exchangeable example's set contains its true class
with probability at least ``1 - alpha`` (Vovk et al.; Angelopoulos & Bates, "A Gentle Introduction to Conformal
Prediction"). Scores:

* ``lac`` (least ambiguous set-valued classifier, Sadinle et al. 2019): ``1 - p_y``; smallest sets on average.
* ``aps`` (adaptive prediction sets, Romano et al. 2020): the probability mass of the classes ranked above ``y``
  (plus a uniform share of ``p_y`` on the calibration split); sets grow with the model's uncertainty.

Written here rather than taken from MAPIE / crepes: both wrap scikit-learn estimators, while zoo holds torch
probabilities and needs only these few tensor lines.
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor

METHODS = ("lac", "aps")


def _check(method: str) -> str:
    if method not in METHODS:
        raise ValueError(f"conformal method must be one of {', '.join(METHODS)}; got {method!r}")
    return method


def class_scores(probs: Tensor, method: str = "lac", u: Tensor | None = None) -> Tensor:
    """``[N, C]`` non-conformity score of every class for every example. APS: the mass ranked strictly above the
    class, plus ``u`` (one uniform draw per example) times the class's own probability when ``u`` is given."""
    probs = probs.float()
    if _check(method) == "lac":
        return 1.0 - probs
    sorted_p, order = probs.sort(-1, descending=True)
    above = torch.empty_like(sorted_p).scatter_(-1, order, sorted_p.cumsum(-1) - sorted_p)
    return above if u is None else above + u.view(-1, *[1] * (probs.dim() - 1)) * probs


def true_class_scores(probs: Tensor, labels: Tensor, method: str = "lac", seed: int = 0) -> Tensor:
    """Calibration scores. APS uses the randomised score of Romano et al. (seeded, so reproducible): with the
    deterministic inclusive score a confident model's calibration scores all sit near 1 and every set fills up
    with classes of negligible mass. Sets are then built with ``u = 0`` (:func:`prediction_sets`), which only
    lowers scores: never smaller sets, so the coverage guarantee holds, conservatively."""
    u = torch.rand(len(probs), generator=torch.Generator().manual_seed(seed)) if method == "aps" else None
    return class_scores(probs, method, u).gather(-1, labels.long().view(-1, 1)).squeeze(-1)


def quantile(scores: Tensor, coverage: float) -> float:
    """The conformal threshold for ``coverage`` from calibration scores (``inf`` when there are too few of them:
    then every set is every class, which is the only set that keeps the promise)."""
    if not 0.0 < coverage < 1.0:
        raise ValueError(f"coverage must be in (0, 1), got {coverage}")
    n = len(scores)
    rank = math.ceil((n + 1) * coverage)
    if rank > n:
        return float("inf")
    return float(scores.float().sort().values[rank - 1])


def prediction_sets(probs: Tensor, threshold: float, method: str = "lac") -> Tensor:
    """``[N, C]`` bool: the classes in each example's set. Never empty: the top class is always in it."""
    members = class_scores(probs, method) <= threshold + 1e-7
    top = probs.argmax(-1, keepdim=True)
    return members.scatter(-1, top, True)


def coverage_bound(n_cal: int, n_test: int, coverage: float, z: float = 2.576) -> float:
    """How far below ``coverage`` the empirical test coverage may fall by chance (about 99 %): the coverage
    given a calibration set follows Beta(l, n + 1 - l) with ``l = ceil((n + 1) coverage)``; the test
    coverage adds binomial noise over ``n_test`` examples."""
    if n_cal < 1 or n_test < 1:
        return 1.0
    ell = min(math.ceil((n_cal + 1) * coverage), n_cal)
    a, b = ell, n_cal + 1 - ell
    var_beta = a * b / ((a + b) ** 2 * (a + b + 1))
    return z * math.sqrt(var_beta + coverage * (1 - coverage) / n_test)


def evaluate(cal_probs: Tensor, cal_labels: Tensor, test_probs: Tensor, test_labels: Tensor,
             levels: tuple[float, ...] = (0.8, 0.9, 0.95), methods: tuple[str, ...] = METHODS,
             class_names: list[str] | None = None) -> list[dict[str, Any]]:
    """One row per (method, target level): empirical test coverage overall and per class, mean set size,
    the finite-sample bound and whether the shortfall exceeds it."""
    rows = []
    names = class_names or [str(i) for i in range(test_probs.shape[-1])]
    for method in methods:
        cal = true_class_scores(cal_probs, cal_labels, method)
        for level in levels:
            q = quantile(cal, level)
            sets = prediction_sets(test_probs, q, method)
            hit = sets.gather(-1, test_labels.long().view(-1, 1)).squeeze(-1).float()
            covered = float(hit.mean()) if len(hit) else float("nan")
            per_class = {}
            for k, name in enumerate(names):
                mask = test_labels == k
                if bool(mask.any()):
                    per_class[name] = round(float(hit[mask].mean()), 4)
            bound = coverage_bound(len(cal), len(hit), level)
            rows.append({"method": method, "target": level, "threshold": q, "coverage": covered,
                         "mean_set_size": float(sets.sum(-1).float().mean()) if len(hit) else float("nan"),
                         "bound": bound, "short": bool(covered < level - bound), "per_class": per_class,
                         "n_cal": len(cal), "n_test": len(hit)})
    return rows


__all__ = ["METHODS", "class_scores", "coverage_bound", "evaluate", "prediction_sets", "quantile",
           "true_class_scores"]
