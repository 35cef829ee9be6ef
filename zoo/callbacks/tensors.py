"""Small helpers shared by the technique functions: ``emb`` and task outputs may be a tensor or a dict of tensors."""

from __future__ import annotations

from collections.abc import Callable, Iterator
from contextlib import contextmanager
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn


def is_float_tensor(x: Any) -> bool:
    return isinstance(x, Tensor) and x.is_floating_point()


def tree_map(fn: Callable[..., Any], *trees: Any) -> Any:
    """Apply ``fn`` to every floating tensor leaf (several trees of the same shape side by side); other leaves,
    e.g. integer attention masks, are taken from the first tree unchanged."""
    first = trees[0]
    if isinstance(first, dict):
        return {k: tree_map(fn, *(t[k] for t in trees)) for k in first}
    if is_float_tensor(first):
        return fn(*trees)
    return first


def float_leaves(tree: Any) -> list[Tensor]:
    if isinstance(tree, dict):
        return [leaf for v in tree.values() for leaf in float_leaves(v)]
    return [tree] if is_float_tensor(tree) else []


def rebuild(tree: Any, leaves: Iterator[Any]) -> Any:
    """Put ``leaves`` back into the float-tensor positions of ``tree`` (inverse of ``float_leaves``)."""
    return tree_map(lambda _: next(leaves), tree)


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


def detach(tree: Any) -> Any:
    if isinstance(tree, dict):
        return {k: detach(v) for k, v in tree.items()}
    return tree.detach() if isinstance(tree, Tensor) else tree


@contextmanager
def frozen_buffers(module: nn.Module) -> Iterator[None]:
    """Extra forwards (adversarial, R-Drop, SMART) must not move BatchNorm running statistics: they describe the
    clean data the model is evaluated on. Restoring them afterwards would not do: the in-place update bumps the
    tensors' version and breaks the clean forward's graph, so norm layers stop tracking for the block (they
    still normalise with batch statistics in train mode, as in the clean forward)."""
    from torch.nn.modules.batchnorm import _NormBase

    norms = [m for m in module.modules() if isinstance(m, _NormBase) and m.track_running_stats]
    for m in norms:
        m.track_running_stats = False
    try:
        yield
    finally:
        for m in norms:
            m.track_running_stats = True
