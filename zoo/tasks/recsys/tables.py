"""How a recommender's ID tables are read and updated in training (``RecommenderTask`` inherits it): the lookups
of a step (:meth:`IdTables.lookups`), the choice of ``embedding_backend`` and the optimizers it implies (dense,
row-wise :mod:`zoo.tasks.recsys.optim`, or fbgemm's fused update :mod:`zoo.tasks.recsys.fused`)."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.compat import attached_trainer
from zoo.tasks.recsys.errors import RecsysModelError


class IdTables:
    """Mixed into :class:`~zoo.tasks.recsys.base.RecommenderTask`, whose attributes (``sparse_tables``,
    ``embedding_backend``, ``embedding_optimizer``, ``lr``, ...) it reads."""

    _fused: Any
    sparse_tables: Any
    embedding_backend: str
    embedding_optimizer: str
    optimizer_name: str
    weight_decay: float
    lr: float
    training: bool

    def lookups(self, requests: list[tuple[nn.Embedding, Tensor]]) -> list[Tensor]:
        """The rows of ``(table, indices)`` requests (tables of ``sparse_tables``), as a training step reads
        them: one fused fbgemm call under the fbgemm backend (its backward updates the tables), else each
        table's lookup (``index_select`` on dense tables: its backward is one ``index_add_``, about 3x cheaper on
        CPU than ``nn.Embedding``'s; the padding row is never a training index, so nothing is lost; one sparse
        lookup per row-wise table)."""
        if self._fused is not None and self.training and torch.is_grad_enabled():
            positions = {id(t): n for n, t in enumerate(self._fused.tables)}
            return self._fused.lookup([(positions[id(t)], idx) for t, idx in requests])
        out: list[Tensor | None] = [None] * len(requests)
        sparse: dict[int, list[int]] = {}
        for n, (t, idx) in enumerate(requests):
            if t.sparse:
                sparse.setdefault(id(t), []).append(n)
            else:
                out[n] = t.weight.index_select(0, idx.reshape(-1)).view(*idx.shape, -1)
        # a row-wise table's requests in one lookup: one sparse gradient per table, not a sum of several that
        # autograd would concatenate; and without padding_idx, whose masking of every index in nn.Embedding's
        # sparse backward cost more than the lookup (the padding row is never a training index)
        for ns in sparse.values():
            table = requests[ns[0]][0]
            flat = [requests[n][1].reshape(-1) for n in ns]
            rows = nn.functional.embedding(torch.cat(flat) if len(flat) > 1 else flat[0], table.weight, sparse=True)
            for n, part in zip(ns, rows.split([len(f) for f in flat]), strict=True):
                out[n] = part.view(*requests[n][1].shape, -1)
        return out  # type: ignore[return-value]

    def table_optimizer(self) -> str:
        """The update of the ID tables, as fbgemm names it (``embedding_optimizer``, or what ``optimizer``
        means for rows)."""
        if self.embedding_optimizer != "auto":
            return self.embedding_optimizer
        return "sgd" if self.optimizer_name == "sgd" else "adam"

    def resolve_embedding_backend(self) -> str:
        """``torch``, ``fbgemm`` or ``torchrec`` for this run (see ``embedding_backend``)."""
        from zoo.tasks.recsys.fused import fbgemm_available, fbgemm_supports

        tables = self.sparse_tables()
        sharding = self._sharding_strategy()
        if sharding or self.embedding_backend == "torchrec":
            return self._check_torchrec(sharding, tables)
        if self.embedding_backend == "torch" or (self.embedding_backend == "auto" and not tables):
            return "torch"
        name = type(self).__name__
        single = self._single_device()
        if self.embedding_backend == "fbgemm":
            if not tables:
                raise RecsysModelError(f"--model.init_args.embedding_backend: fbgemm: {name} has no ID table "
                                       f"read by lookups "
                                       "alone (its training reads whole tables); use embedding_backend: torch")
            odd = [t.embedding_dim for t in tables if t.embedding_dim % 4]
            if odd:
                raise RecsysModelError(f"--model.init_args.embedding_backend: fbgemm needs table widths that "
                                       f"are multiples of 4; "
                                       f"{name} has {odd[0]}: use embedding_backend: torch")
            if not single:
                raise RecsysModelError("model.embedding_backend: fbgemm updates the tables inside one process; "
                                       "under a multi-process strategy use embedding_backend: torch")
            if self.weight_decay > 0:
                raise RecsysModelError("model.embedding_backend: fbgemm has no weight decay on the ID tables; set "
                                       "model.init_args.weight_decay: 0 or embedding_backend: torch")
            return "fbgemm"
        # measured on CPU (docs/recsys.md, "ID-table backends"): fbgemm 1.9.0's CPU kernels were no faster than the
        # torch path (row-wise Adagrad 2-3x slower, SGD level), so auto keeps torch there; on CUDA, where fbgemm's
        # kernels are made to run, it takes them (not measured here: no GPU)
        use = (single and self.weight_decay == 0 and self.embedding_optimizer != "auto"
               and all(t.embedding_dim % 4 == 0 for t in tables) and tables[0].weight.device.type == "cuda"
               and fbgemm_available() and fbgemm_supports(self.table_optimizer(), tables[0].weight.device))
        return "fbgemm" if use else "torch"

    def _check_torchrec(self, sharding: bool, tables: list[nn.Embedding]) -> str:
        overlay = "recipes/overlays/strategy/torchrec.yaml"
        if not sharding:
            raise RecsysModelError(f"--model.init_args.embedding_backend: torchrec shards the ID tables over the "
                                   f"processes of TorchRec's strategy: add --config {overlay}")
        if self.embedding_backend not in ("auto", "torchrec"):
            raise RecsysModelError(f"{overlay} shards the ID tables with TorchRec; --model.init_args."
                                   f"embedding_backend: {self.embedding_backend} asks otherwise: use auto or torchrec")
        if not tables:
            raise RecsysModelError(f"{overlay}: {type(self).__name__} has no ID table read by lookups alone (its "
                                   "training reads whole tables); use recipes/overlays/strategy/ddp.yaml")
        if self.weight_decay > 0:
            raise RecsysModelError(f"{overlay}: TorchRec's fused table updates have no weight decay; set "
                                   "--model.init_args.weight_decay 0")
        return "torchrec"

    def _sharding_strategy(self) -> bool:
        trainer = attached_trainer(self)
        return trainer is not None and getattr(trainer.strategy, "shards_id_tables", False)

    def shard_id_tables(self, device: torch.device, local_world_size: int) -> None:
        """Called by :class:`~zoo.tasks.recsys.sharded.TorchRecStrategy` on every rank before DDP wraps the model:
        the ID tables become TorchRec shards updated in the backward, which no optimizer or DDP sees."""
        from zoo.tasks.recsys.sharded import ShardedTables

        self.resolve_embedding_backend()  # its checks, before any collective
        self._fused = ShardedTables(self._tables_updated_in_backward(), self.table_optimizer(), self.lr, device,
                                    local_world_size)

    def _tables_updated_in_backward(self) -> list[nn.Embedding]:
        """The ID tables, handed to a fused backend (fbgemm, TorchRec) that updates them inside its backward: no
        optimizer and no autograd gradient of theirs sees them."""
        tables = self.sparse_tables()
        for t in tables:
            t.sparse = False
            t.weight.requires_grad_(False)
        return tables

    def _single_device(self) -> bool:
        trainer = attached_trainer(self)
        if trainer is None:
            return True
        from lightning.pytorch.strategies import SingleDeviceStrategy

        return isinstance(trainer.strategy, SingleDeviceStrategy)

    def _fused_optimizers(self) -> Any:
        from zoo.tasks.recsys.fused import FusedTables

        self._fused = FusedTables(self._tables_updated_in_backward(), self.table_optimizer(), self.lr)
        return self._table_and_dense_optimizers(self._fused)

    def _table_and_dense_optimizers(self, tables: Any) -> Any:
        from zoo.tasks.recsys.fused import FusedTableOptimizer

        dense = None
        groups = [g for g in self.parameter_groups() if g["params"]]
        if groups:
            fused = {"fused": True} if self._can_fuse_optimizer(groups) else {}
            kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}.get(self.optimizer_name, torch.optim.AdamW)
            extra = {"momentum": 0.9, "nesterov": True} if self.optimizer_name == "sgd" else {}
            dense = kind(groups, lr=self.lr, **extra, **fused)
        return self.scheduled(FusedTableOptimizer(dense, tables))

    def configure_optimizers(self) -> Any:
        from zoo.tasks.recsys.sharded import ShardedTables

        if isinstance(self._fused, ShardedTables) and self._sharding_strategy():
            return self._table_and_dense_optimizers(self._fused)  # sharded by the strategy, before DDP
        self._fused = None
        for t in self.sparse_tables():
            t.weight.requires_grad_(True)
        if self.resolve_embedding_backend() == "fbgemm":
            return self._fused_optimizers()
        tables = [t for t in self.sparse_tables() if t.sparse]
        if tables and not self._sparse_strategy():
            for t in tables:
                t.sparse = False
            tables = []
        if not tables:
            return super().configure_optimizers()
        from zoo.tasks.recsys.optim import DenseSparseOptimizer, sparse_optimizer

        sparse_ids = {id(t.weight) for t in tables}
        groups = [{**g, "params": [p for p in g["params"] if id(p) not in sparse_ids]} for g in self.parameter_groups()]
        groups = [g for g in groups if g["params"]]
        dense = None
        if groups:
            fused = {"fused": True} if self._can_fuse_optimizer(groups) else {}
            kind = {"sgd": torch.optim.SGD, "adam": torch.optim.Adam}.get(self.optimizer_name, torch.optim.AdamW)
            extra = {"momentum": 0.9, "nesterov": True} if self.optimizer_name == "sgd" else {}
            dense = kind(groups, lr=self.lr, **extra, **fused)
        opt = DenseSparseOptimizer(dense, sparse_optimizer(self.optimizer_name, [t.weight for t in tables], self.lr,
                                                           self.embedding_optimizer))
        return self.scheduled(opt)

    def _sparse_strategy(self) -> bool:
        """Sparse gradients work on one device and under DDP; sharded strategies need dense ones."""
        trainer = attached_trainer(self)
        if trainer is None:
            return True
        from lightning.pytorch.strategies import DDPStrategy, DeepSpeedStrategy, SingleDeviceStrategy

        strategy = trainer.strategy
        return isinstance(strategy, SingleDeviceStrategy | DDPStrategy) and not isinstance(strategy, DeepSpeedStrategy)

