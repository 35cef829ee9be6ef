"""fbgemm's table-batched embeddings for a recommender's ID tables (``embedding_backend: fbgemm``).

All of a model's ID tables become one ``SplitTableBatchedEmbeddingBagsCodegen`` (TBE): a step's lookups are one
kernel call, and the table optimizer runs inside that call's backward (fbgemm's fused update, deduplicating the
batch's rows), so no gradient of a table is ever materialised and no optimizer walks the tables.

The model's ``nn.Embedding`` modules stay the place the weights live for everything but the training lookups:
their ``weight.data`` is made a view of the TBE's storage, so scoring, checkpoints (plain ``user_emb.weight``
tensors), export and serving read the same numbers without fbgemm, and a checkpoint loaded into them writes
straight into the TBE. fbgemm is imported only when training starts.

fbgemm's CPU kernels implement SGD, Adagrad and row-wise Adagrad; its Adam runs on CUDA only
(``Optimizer adam is not supported in CPU mode`` from fbgemm 1.9.0).
"""

from __future__ import annotations

import importlib.util
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ConfigError

#: embedding_optimizer -> fbgemm EmbOptimType member; the exact variants sum a row's gradients before updating it
FBGEMM_OPTIMIZERS = {"sgd": "EXACT_SGD", "adagrad": "EXACT_ADAGRAD", "rowwise_adagrad": "EXACT_ROWWISE_ADAGRAD",
                     "adam": "ADAM"}
#: what fbgemm's CPU build implements (its TBE refuses the others in CPU mode)
CPU_OPTIMIZERS = ("sgd", "adagrad", "rowwise_adagrad")


def fbgemm_available() -> bool:
    return importlib.util.find_spec("fbgemm_gpu") is not None


def fbgemm_supports(optimizer: str, device: torch.device) -> bool:
    return optimizer in FBGEMM_OPTIMIZERS and (device.type == "cuda" or optimizer in CPU_OPTIMIZERS)


class FusedTables:
    """One TBE over ``tables`` (kept outside the module tree: the model's state dict holds the plain tables)."""

    def __init__(self, tables: list[nn.Embedding], optimizer: str, lr: float, eps: float = 1e-8,
                 betas: tuple[float, float] = (0.9, 0.999)) -> None:
        if not fbgemm_available():
            raise ConfigError("model.embedding_backend: fbgemm needs the fbgemm_gpu module (the fbgemm-gpu-cpu "
                              "package on CPU, fbgemm-gpu on CUDA; make venv installs it): not installed")
        from fbgemm_gpu.split_embedding_configs import EmbOptimType
        from fbgemm_gpu.split_table_batched_embeddings_ops_common import EmbeddingLocation, PoolingMode
        from fbgemm_gpu.split_table_batched_embeddings_ops_training import (
            ComputeDevice,
            SplitTableBatchedEmbeddingBagsCodegen,
        )

        device = tables[0].weight.device
        if not fbgemm_supports(optimizer, device):
            raise ConfigError(f"fbgemm on {device.type} has no fused {optimizer!r} update (its CPU kernels: "
                              f"{', '.join(CPU_OPTIMIZERS)}; Adam on CUDA only); set model.init_args."
                              "embedding_optimizer to one of those, or embedding_backend: torch")
        on_cuda = device.type == "cuda"
        where = (EmbeddingLocation.DEVICE, ComputeDevice.CUDA) if on_cuda else (EmbeddingLocation.HOST,
                                                                                ComputeDevice.CPU)
        self.optimizer = optimizer
        self.dims = [t.embedding_dim for t in tables]
        # sum pooling over bags of one index (or none): the CPU build's fastest path; pooling NONE ran slower
        self.tbe = SplitTableBatchedEmbeddingBagsCodegen(
            [(t.num_embeddings, t.embedding_dim, *where) for t in tables],
            optimizer=getattr(EmbOptimType, FBGEMM_OPTIMIZERS[optimizer]), learning_rate=lr, eps=eps,
            beta1=betas[0], beta2=betas[1], pooling_mode=PoolingMode.SUM,
            device=device)
        self.lr = lr
        with torch.no_grad():
            for table, view in zip(tables, self.tbe.split_embedding_weights(), strict=True):
                view.copy_(table.weight)
                table.weight.data = view  # the same Parameter object, now reading the TBE's storage
        self.tables = tables

    def set_lr(self, lr: float) -> None:
        if lr != self.lr:
            self.tbe.set_learning_rate(lr)
            self.lr = lr

    def lookup(self, requests: list[tuple[int, Tensor]]) -> list[Tensor]:
        """Vectors of ``(table position, indices of any shape)`` requests, from one TBE call: each table is one
        feature whose bags are its requests' indices, one per bag, padded with empty bags to the longest."""
        per_table: list[list[int]] = [[] for _ in self.dims]
        for n, (t, _) in enumerate(requests):
            per_table[t].append(n)
        flat = [idx.reshape(-1) for _, idx in requests]
        counts = [sum(flat[n].numel() for n in reqs) for reqs in per_table]
        width = max(counts)
        device = flat[0].device
        values = torch.cat([flat[n] for reqs in per_table for n in reqs]).long()
        bags = torch.arange(width, device=device)
        starts, base = [], 0
        for count in counts:
            starts.append(base + bags.clamp(max=count))
            base += count
        offsets = torch.cat([*starts, torch.tensor([base], device=device)])
        out = self.tbe(values, offsets)  # [width, sum(dims)]
        result: list[Tensor] = [torch.empty(0)] * len(requests)
        col = 0
        for t, reqs in enumerate(per_table):
            row = 0
            for n in reqs:
                k = flat[n].numel()
                result[n] = out[row:row + k, col:col + self.dims[t]].view(*requests[n][1].shape, self.dims[t])
                row += k
            col += self.dims[t]
        return result

    # -- optimizer state (travels in the Lightning optimizer state, for --resume) ---------------------------
    def state_dict(self) -> dict[str, Any]:
        states = self.tbe.split_optimizer_states() if self.optimizer != "sgd" else []
        return {"optimizer": self.optimizer, "iter": int(self.tbe.iter.item()), "lr": self.lr,
                "states": [[s.detach().cpu().clone() for s in table] for table in states]}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        from zoo.tasks.recsys.optim import OptimizerStateError

        if state.get("optimizer") != self.optimizer:
            raise OptimizerStateError(f"the checkpoint's fused table optimizer is {state.get('optimizer')!r}, this "
                                      f"run's is {self.optimizer!r}: resume with the same embedding_optimizer")
        with torch.no_grad():
            if state["states"]:
                for table, saved in zip(self.tbe.split_optimizer_states(), state["states"], strict=True):
                    for live, value in zip(table, saved, strict=True):
                        live.copy_(value.view_as(live))
            self.tbe.iter.fill_(state["iter"])
        self.set_lr(state["lr"])


class FusedTableOptimizer(torch.optim.Optimizer):
    """What Lightning steps when the ID tables are updated inside fbgemm's backward: the dense layers' optimizer
    (None when the model has only tables) and one parameter group for the tables, whose ``lr`` (changed by a
    scheduler) is handed to the TBE before each step's backward."""

    def __init__(self, dense: torch.optim.Optimizer | None, fused: FusedTables) -> None:
        self.dense, self.fused = dense, fused
        tables = [t.weight for t in fused.tables]
        super().__init__(tables, {"lr": fused.lr})
        self.table_group = self.param_groups[0]
        self.param_groups = ([*dense.param_groups] if dense is not None else []) + [self.table_group]

    @property  # type: ignore[override]
    def state(self) -> dict[Any, Any]:
        return self.dense.state if self.dense is not None else {}

    @state.setter
    def state(self, value: Any) -> None:  # torch.optim.Optimizer.__init__ assigns an empty state
        pass

    @torch.no_grad()
    def step(self, closure: Any = None) -> Any:  # type: ignore[override]
        self.fused.set_lr(self.table_group["lr"])
        loss = None
        if closure is not None:
            with torch.enable_grad():
                loss = closure()  # the backward inside it updates the tables
        if self.dense is not None:
            self.dense.step()
        return loss

    def zero_grad(self, set_to_none: bool = True) -> None:
        if self.dense is not None:
            self.dense.zero_grad(set_to_none=set_to_none)

    def state_dict(self) -> dict[str, Any]:
        return {"dense": self.dense.state_dict() if self.dense is not None else None, "fused": self.fused.state_dict()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        from zoo.tasks.recsys.optim import OptimizerStateError

        if set(state_dict) != {"dense", "fused"}:
            raise OptimizerStateError("the checkpoint's optimizer state is not of the fused (fbgemm) tables: resume "
                                      "with the embedding_backend it was trained with, or start from the weights only")
        if self.dense is not None and state_dict["dense"] is not None:
            self.dense.load_state_dict(state_dict["dense"])
        self.fused.load_state_dict(state_dict["fused"])
        self.table_group["lr"] = self.fused.lr
