"""Row-wise (sparse) updates for ID embedding tables.

A dense optimizer updates every row of every table at every step (Adam keeps and rewrites a moment per row even
when its gradient is zero), so a step's cost grows with the number of users and items instead of the batch.
With ``sparse_embeddings`` (the default), a recommender's ID tables produce sparse row gradients
(``nn.Embedding(sparse=True)``) and are stepped by :class:`RowWiseOptimizer` (lazy Adam, as ``torch.optim.SparseAdam``,
for Adam / AdamW; SGD with momentum for SGD: both touch only the rows of the batch); the dense layers keep the
dense optimizer.

Lightning steps one optimizer per training step under automatic optimisation (several need manual optimisation,
which would take the one training step of ``zoo.contract`` away from Lightning), so :class:`DenseSparseOptimizer`
presents the two as one ``torch.optim.Optimizer``: one closure call, one ``step`` of each, one state dict,
and one list of parameter groups shared with both (learning-rate schedulers and monitors see every group).
"""

from __future__ import annotations

import math
from typing import Any

import torch
from torch import Tensor, nn

from zoo.compat import sparse_rows
from zoo.errors import ZooError


class OptimizerStateError(ZooError, ValueError):
    """A checkpoint's optimizer state that does not fit the optimizer (dense state for sparse ID tables)."""


class DenseSparseOptimizer(torch.optim.Optimizer):
    """A dense optimizer (may be None when every parameter is an ID table) and a sparse one, stepped together."""

    def __init__(self, dense: torch.optim.Optimizer | None, sparse: torch.optim.Optimizer) -> None:
        self.parts = [o for o in (dense, sparse) if o is not None]
        self.dense, self.sparse = dense, sparse
        params = [p for o in self.parts for g in o.param_groups for p in g["params"]]
        super().__init__(params, {"lr": sparse.defaults["lr"]})
        # the sub-optimizers' own group dicts: a scheduler changing a group's lr changes it where it is used
        self.param_groups = [g for o in self.parts for g in o.param_groups]

    @property  # type: ignore[override]
    def state(self) -> dict[Any, Any]:
        # each part's per-parameter dicts, not copies: Lightning moves optimizer state to the device in place
        return {p: s for o in self.parts for p, s in o.state.items()}

    @state.setter
    def state(self, value: Any) -> None:  # torch.optim.Optimizer.__init__ assigns an empty state
        pass

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        # a loss term on a whole table (L2-SP, a technique's regulariser) makes its gradient dense: the row-wise
        # optimizer then updates every non-zero row, which is still correct
        for o in self.parts:
            o.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        for o in self.parts:
            o.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict() if self.dense is not None else None,
                "sparse": self.sparse.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        if set(state_dict) != {"dense", "sparse"}:
            raise OptimizerStateError("the checkpoint's optimizer state is of a dense optimizer and this model "
                                      "trains its ID tables with sparse updates; resume with "
                                      "model.init_args.sparse_embeddings: false, or start from the weights only")
        if self.dense is not None and state_dict["dense"] is not None:
            self.dense.load_state_dict(state_dict["dense"])
        self.sparse.load_state_dict(state_dict["sparse"])
        self.param_groups = [g for o in self.parts for g in o.param_groups]


class RowWiseOptimizer(torch.optim.Optimizer):
    """Adam ("lazy", as ``torch.optim.SparseAdam``: same arithmetic, same state names) or SGD with Nesterov momentum
    on the rows of a sparse gradient, with dense index ops. Hand-written because torch's SparseAdam and sparse SGD
    go through sparse-tensor arithmetic: on CPU SparseAdam took 294 ms for one BPR step over 120k rows (coalesce,
    sparse add and index), as long as dense Adam over every row; this takes a few ms. The update of the weights
    is scaled before ``index_add_``: torch's CPU ``index_add_`` with an ``alpha`` takes a per-row loop, about 4x
    slower than without one."""

    KINDS = ("adam", "sgd", "adagrad", "rowwise_adagrad")

    def __init__(self, params: Any, lr: float, kind: str = "adam", betas: tuple[float, float] = (0.9, 0.999),
                 eps: float = 1e-8, momentum: float = 0.9) -> None:
        if kind not in self.KINDS:
            raise ValueError(f"RowWiseOptimizer kind must be one of {', '.join(self.KINDS)}, got {kind!r}")
        super().__init__(params, {"lr": lr, "betas": betas, "eps": eps, "momentum": momentum})
        self.kind = kind

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()
        for group in self.param_groups:
            for p in group["params"]:
                if p.grad is None:
                    continue
                rows, grad = _rows(p.grad)
                {"adam": self._adam, "sgd": self._sgd, "adagrad": self._adagrad,
                 "rowwise_adagrad": self._rowwise_adagrad}[self.kind](p, rows, grad, group)
        return loss

    def _adam(self, p: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state.update(step=0, exp_avg=torch.zeros_like(p), exp_avg_sq=torch.zeros_like(p))
        state["step"] += 1
        beta1, beta2 = group["betas"]
        m, v = state["exp_avg"].index_select(0, rows), state["exp_avg_sq"].index_select(0, rows)
        m.mul_(beta1).add_(grad, alpha=1 - beta1)
        v.mul_(beta2).addcmul_(grad, grad, value=1 - beta2)
        state["exp_avg"].index_copy_(0, rows, m)
        state["exp_avg_sq"].index_copy_(0, rows, v)
        step_size = group["lr"] * math.sqrt(1 - beta2 ** state["step"]) / (1 - beta1 ** state["step"])
        p.index_add_(0, rows, m.div_(v.sqrt_().add_(group["eps"])).mul_(-step_size))

    def _sgd(self, p: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        mu = group["momentum"]
        if mu == 0:
            p.index_add_(0, rows, grad.mul(-group["lr"]))
            return
        state = self.state[p]
        if not state:
            state["momentum_buffer"] = torch.zeros_like(p)
        buf = state["momentum_buffer"].index_select(0, rows).mul_(mu).add_(grad)
        state["momentum_buffer"].index_copy_(0, rows, buf)
        p.index_add_(0, rows, grad.add(buf, alpha=mu).mul_(-group["lr"]))  # Nesterov, as the dense SGD


    # Adagrad and row-wise Adagrad as fbgemm's fused kernels compute them (eps outside the square root; row-wise:
    # one accumulator per row, the mean of the row's squared gradient), so the two backends agree step for step
    def _adagrad(self, p: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["sum"] = torch.zeros_like(p)
        acc = state["sum"].index_select(0, rows).addcmul_(grad, grad)
        state["sum"].index_copy_(0, rows, acc)
        p.index_add_(0, rows, grad.div(acc.sqrt_().add_(group["eps"])).mul_(-group["lr"]))

    def _rowwise_adagrad(self, p: Tensor, rows: Tensor, grad: Tensor, group: dict[str, Any]) -> None:
        state = self.state[p]
        if not state:
            state["sum"] = torch.zeros(p.shape[0], dtype=p.dtype, device=p.device)
        acc = state["sum"].index_select(0, rows).add_(grad.pow(2).mean(1))
        state["sum"].index_copy_(0, rows, acc)
        p.index_add_(0, rows, grad.div(acc.sqrt_().add_(group["eps"])[:, None]).mul_(-group["lr"]))


def _rows(grad: Tensor) -> tuple[Tensor, Tensor]:
    """(distinct rows, their summed gradient) of a row-sparse gradient (uncoalesced: a row may repeat), or of a
    dense one (its non-zero rows)."""
    if grad.is_sparse:
        index, values = sparse_rows(grad)
    else:
        index = grad.abs().sum(1).nonzero().flatten()
        values = grad.index_select(0, index)
    rows, inverse = torch.unique(index, return_inverse=True)
    summed = torch.zeros(len(rows), values.shape[1], dtype=values.dtype, device=values.device)
    return rows, summed.index_add_(0, inverse, values)


def sparse_optimizer(name: str, params: list[nn.Parameter], lr: float,
                     table_optimizer: str = "auto") -> torch.optim.Optimizer:
    """The row-wise counterpart of ``optimizer``: ``adam`` / ``adamw`` -> lazy Adam, ``sgd`` -> SGD with Nesterov
    momentum 0.9 (as the dense one), both on the rows of the batch only (a row's moments are not decayed on
    steps that do not touch it). ``table_optimizer`` (``model.embedding_optimizer``) other than ``auto`` names
    the update as fbgemm's fused kernels do it: ``sgd`` (plain, no momentum), ``adam``, ``adagrad``,
    ``rowwise_adagrad``."""
    if table_optimizer == "auto":
        return RowWiseOptimizer(params, lr=lr, kind="sgd" if name == "sgd" else "adam")
    return RowWiseOptimizer(params, lr=lr, kind=table_optimizer, momentum=0.0)
