"""How far two outputs of one model (or of a teacher and a student) are apart, for any task."""

from __future__ import annotations

from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.contract import is_float_tensor


def output_divergence(p: Any, q: Any, temperature: float = 1.0, symmetric: bool = True) -> Tensor:
    """How far two outputs of the same model are apart, for any task.

    Logits (last dim > 1) are compared as class distributions with KL at ``temperature`` (scaled by T^2, as in
    Hinton et al.), symmetric when asked (R-Drop); scores (recommendation, regression) by mean squared error.
    With ``symmetric=False`` this is ``KL(p || q)`` with ``p`` the target (distillation: teacher first).
    """
    if isinstance(p, dict):
        terms = [output_divergence(p[k], q[k], temperature, symmetric) for k in p if is_float_tensor(p[k])]
        return torch.stack(terms).sum()
    p, q = p.float(), q.float()
    if p.ndim >= 2 and p.shape[-1] > 1:
        logp = F.log_softmax(p / temperature, -1).flatten(0, -2)
        logq = F.log_softmax(q / temperature, -1).flatten(0, -2)
        kl_pq = F.kl_div(logq, logp, log_target=True, reduction="batchmean")
        if symmetric:
            kl_pq = 0.5 * (kl_pq + F.kl_div(logp, logq, log_target=True, reduction="batchmean"))
        return kl_pq * temperature**2
    return F.mse_loss(q, p)


__all__ = ["output_divergence"]
