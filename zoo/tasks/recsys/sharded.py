"""TorchRec sharding of a recommender's ID tables (``recipes/overlays/strategy/torchrec.yaml``).

:class:`TorchRecStrategy` is Lightning's DDP with one change: before DDP wraps the model, the recommender's ID
tables (its ``sparse_tables``) become one TorchRec ``EmbeddingCollection`` under ``DistributedModelParallel``,
sharded over the processes by TorchRec's planner (row-wise or table-wise), with the table optimizer fused into the
backward by fbgemm. DDP then keeps only the dense layers (towers, MLPs); a model without any (BPR) is not wrapped.
Gloo on CPU, NCCL on GPU, as the ddp strategy.

The model's ``nn.Embedding`` modules stay the tables everything else reads: each evaluation, checkpoint and the
end of training first gather the shards into them (:meth:`ShardedTables.pull`, every rank gets the whole tables),
so validation ranks every item as in one process, and checkpoints hold plain unsharded tables under the same keys
as a torch-backend model: they load, test, export and serve in one process without torchrec or fbgemm. The fused
optimizer's state (row-wise Adagrad's accumulators) is gathered into the checkpoint the same way, and scattered back
into the shards on ``--resume``.

TorchRec divides the gradients its all-to-all returns to a shard's owner by the world size (its default
``gradient_division``), so a sharded table sees the mean over the global batch, as DDP gives the dense layers.
"""

from __future__ import annotations

import atexit
import importlib
import importlib.util
from typing import Any

import torch
import torch.distributed as dist
from lightning.pytorch.strategies import DDPStrategy
from torch import Tensor, nn

from zoo.compat import ddp_ignore
from zoo.errors import ConfigError
from zoo.tasks.recsys.errors import RecsysModelError

#: embedding_optimizer -> the TorchRec optimizer class that ``apply_optimizer_in_backward`` maps to fbgemm's kernel
TORCHREC_OPTIMIZERS = {"sgd": ("torchrec.optim.optimizers", "SGD"),
                       "adagrad": ("torchrec.optim.optimizers", "Adagrad"),
                       "rowwise_adagrad": ("torchrec.optim.rowwise_adagrad", "RowWiseAdagrad"),
                       "adam": ("torchrec.optim.optimizers", "Adam")}
OVERLAY = "recipes/overlays/strategy/torchrec.yaml"


def torchrec_available() -> bool:
    return importlib.util.find_spec("torchrec") is not None and importlib.util.find_spec("fbgemm_gpu") is not None


class ShardedTables:
    """``tables`` (plain ``nn.Embedding``) sharded over the default process group; the plain tables stay the
    model's and are written back by :meth:`pull`. Built on every rank at once (its planning is collective)."""

    def __init__(self, tables: list[nn.Embedding], optimizer: str, lr: float, device: torch.device,
                 local_world_size: int, eps: float = 1e-8) -> None:
        from zoo.tasks.recsys.fused import CPU_OPTIMIZERS, fbgemm_supports

        if not torchrec_available():
            raise ConfigError(f"{OVERLAY} needs torchrec and fbgemm_gpu (make venv installs torchrec and "
                              "fbgemm-gpu-cpu; on CUDA, make venv FBGEMM=fbgemm-gpu): not installed")
        if not fbgemm_supports(optimizer, device):
            raise ConfigError(f"{OVERLAY}: fbgemm on {device.type} has no fused {optimizer!r} table update (its CPU "
                              f"kernels: {', '.join(CPU_OPTIMIZERS)}; Adam on CUDA only): add "
                              "--model.init_args.embedding_optimizer rowwise_adagrad (or sgd, adagrad)")
        import torchrec
        from torchrec.distributed.embedding import EmbeddingCollectionSharder
        from torchrec.distributed.model_parallel import DistributedModelParallel
        from torchrec.distributed.planner import EmbeddingShardingPlanner, ParameterConstraints, Topology
        from torchrec.distributed.types import ShardingType
        from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward

        self.tables, self.optimizer, self.lr = tables, optimizer, lr
        self.names = [f"t{n}" for n in range(len(tables))]
        configs = [torchrec.EmbeddingConfig(name=name, embedding_dim=t.embedding_dim, num_embeddings=t.num_embeddings,
                                            feature_names=[name]) for name, t in zip(self.names, tables, strict=True)]
        # on the meta device: DistributedModelParallel allocates each rank's shards only; pull/push fill them
        collection = torchrec.EmbeddingCollection(tables=configs, device=torch.device("meta"))
        module, cls = TORCHREC_OPTIMIZERS[optimizer]
        args = {"lr": lr} if optimizer == "sgd" else {"lr": lr, "eps": eps}
        apply_optimizer_in_backward(getattr(importlib.import_module(module), cls), collection.parameters(), args)
        sharders = [EmbeddingCollectionSharder()]
        # row- or table-wise only: their shards are disjoint blocks of rows, which pull() and the optimizer state
        # gather add up; column-wise shards would split row-wise Adagrad's per-row state, data-parallel copy it
        kinds = [ShardingType.ROW_WISE.value, ShardingType.TABLE_WISE.value]
        planner = EmbeddingShardingPlanner(
            topology=Topology(world_size=dist.get_world_size(), local_world_size=local_world_size,
                              compute_device=device.type),
            constraints={name: ParameterConstraints(sharding_types=kinds) for name in self.names})
        self.plan = planner.collective_plan(collection, sharders, dist.GroupMember.WORLD)
        self.dmp = DistributedModelParallel(collection, device=device, plan=self.plan, sharders=sharders)
        self.dirty = False
        self.push()

    # -- weights: plain tables <-> shards ------------------------------------------------------------------
    def _weights(self) -> list[Any]:
        state = self.dmp.state_dict()
        return [next(v for k, v in state.items() if k.endswith(f"embeddings.{name}.weight")) for name in self.names]

    @torch.no_grad()
    def push(self) -> None:
        """Rank 0's plain tables into every shard (the start of training, and after a checkpoint is loaded)."""
        for table, sharded in zip(self.tables, self._weights(), strict=True):
            dist.broadcast(table.weight.data, src=0)
            for shard in sharded.local_shards():
                shard.tensor.copy_(_block(table.weight.data, shard.metadata))
        self.dirty = False

    @torch.no_grad()
    def pull(self) -> None:
        """The shards into every rank's plain tables; collective, so every rank calls it at the same point."""
        if not self.dirty:
            return
        for table, sharded in zip(self.tables, self._weights(), strict=True):
            table.weight.data.copy_(_gather(sharded, table.weight.data))
        self.dirty = False

    def close(self) -> None:
        """Free TorchRec's modules now, while the process group they talk through is alive (not at exit)."""
        import gc

        self.dmp = None
        gc.collect()

    def set_lr(self, lr: float) -> None:
        if lr != self.lr:
            optimizer = self.dmp.fused_optimizer
            for group in optimizer.param_groups:
                group["lr"] = lr
            optimizer.step()  # TorchRec's fused optimizers hand param_groups' lr to fbgemm in step()
            self.lr = lr

    def lookup(self, requests: list[tuple[int, Tensor]]) -> list[Tensor]:
        """Vectors of ``(table position, indices of any shape)`` requests: each table is one feature holding all
        its requests' indices as one sequence (a batch of one), so every rank's input has the same shape."""
        from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

        per_table: list[list[int]] = [[] for _ in self.names]
        for n, (t, _) in enumerate(requests):
            per_table[t].append(n)
        flat = [idx.reshape(-1).long() for _, idx in requests]
        values = [torch.cat([flat[n] for n in reqs]) if reqs else flat[0][:0] for reqs in per_table]
        lengths = torch.tensor([len(v) for v in values], dtype=torch.long, device=flat[0].device)
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=self.names, values=torch.cat(values), lengths=lengths)
        out = self.dmp(kjt)
        self.dirty = True
        result: list[Tensor] = [torch.empty(0)] * len(requests)
        for name, reqs in zip(self.names, per_table, strict=True):
            rows = out[name].values()
            start = 0
            for n in reqs:
                k = flat[n].numel()
                result[n] = rows[start:start + k].view(*requests[n][1].shape, rows.shape[-1])
                start += k
        return result

    # -- optimizer state (gathered into the checkpoint, scattered back on --resume) ------------------------
    def _states(self) -> dict[str, Any]:
        return {name: value for per_param in self.dmp.fused_optimizer.state.values()
                for name, value in per_param.items()}

    def state_dict(self) -> dict[str, Any]:
        states = {}
        for name, value in self._states().items():
            if hasattr(value, "local_shards"):
                like = torch.empty(value.size(), dtype=value.dtype, device=self.tables[0].weight.device)
                states[name] = _gather(value, like).cpu()
            else:
                states[name] = value.detach().cpu().clone()
        return {"optimizer": self.optimizer, "lr": self.lr, "sharded": True, "states": states}

    @torch.no_grad()
    def load_state_dict(self, state: dict[str, Any]) -> None:
        from zoo.tasks.recsys.optim import OptimizerStateError

        if not state.get("sharded") or state.get("optimizer") != self.optimizer:
            raise OptimizerStateError(f"the checkpoint's table optimizer is {state.get('optimizer')!r} "
                                      f"({'sharded' if state.get('sharded') else 'not sharded'}), this run's is "
                                      f"{self.optimizer!r} under {OVERLAY}: resume with the same strategy and "
                                      "embedding_optimizer, or start from the weights only")
        live = self._states()
        if set(live) != set(state["states"]):
            raise OptimizerStateError(f"the checkpoint's table optimizer state has {sorted(state['states'])}, this "
                                      f"run's {sorted(live)}: resume with the same model")
        for name, value in live.items():
            saved = state["states"][name]
            if hasattr(value, "local_shards"):
                for shard in value.local_shards():
                    shard.tensor.copy_(_block(saved.to(shard.tensor.device), shard.metadata))
            else:
                value.copy_(saved)
        self.set_lr(state["lr"])


def _block(full: Tensor, meta: Any) -> Tensor:
    index = tuple(slice(o, o + s) for o, s in zip(meta.shard_offsets, meta.shard_sizes, strict=True))
    return full[index]


def _gather(sharded: Any, like: Tensor) -> Tensor:
    """The whole of a ShardedTensor of disjoint shards on every rank: each writes its shards into zeros, and a sum
    over ranks assembles them (x + 0 is exact, so the values are bit-identical)."""
    full = torch.zeros_like(like)
    for shard in sharded.local_shards():
        _block(full, shard.metadata).copy_(shard.tensor)
    dist.all_reduce(full)
    return full


def _wait_for_all_then_destroy() -> None:
    """At exit: wait until every rank is there, then destroy the process groups. A gloo rank that exited while the
    other was still busy (rank 0 writes the run's plots) aborted 1 run in 5-8 at interpreter teardown ("terminate
    called without an active exception", SIGABRT), after a fit that had succeeded. The wait is bounded (gloo's
    monitored barrier), so a rank that died does not hang the others."""
    from datetime import timedelta

    if not (dist.is_available() and dist.is_initialized()):
        return
    try:
        if dist.get_backend() == "gloo":
            dist.monitored_barrier(timeout=timedelta(seconds=120))
        dist.destroy_process_group()
    except Exception:  # noqa: BLE001 - at exit, a peer already gone is not worth a traceback over a finished run
        pass


class TorchRecStrategy(DDPStrategy):
    """DDP for the dense layers, TorchRec ``DistributedModelParallel`` for a recommender's ID tables (module
    docstring). Takes :class:`~lightning.pytorch.strategies.DDPStrategy`'s arguments."""

    #: what a recommender asks to learn that its tables are sharded here (zoo.tasks.recsys.tables)
    shards_id_tables = True

    def _tables(self) -> ShardedTables | None:
        tables = getattr(self.lightning_module, "_fused", None)
        return tables if isinstance(tables, ShardedTables) else None

    def configure_ddp(self) -> None:
        module = self.lightning_module
        shard = getattr(module, "shard_id_tables", None)
        if shard is None:
            raise RecsysModelError(f"{OVERLAY} shards a recommender's ID tables; {type(module).__name__} is not a "
                                   "recommender: use recipes/overlays/strategy/ddp.yaml")
        shard(self.root_device, len(self.parallel_devices or [self.root_device]))
        # registered after zoo.scale's teardown of the default group (ZooTask.setup), so it runs before it
        atexit.unregister(_wait_for_all_then_destroy)
        atexit.register(_wait_for_all_then_destroy)
        ids = {id(t.weight) for t in self._tables().tables}
        ddp_ignore(module, [n for n, p in module.named_parameters() if id(p) in ids])
        if any(p.requires_grad for p in module.parameters()):
            super().configure_ddp()
        # else (BPR: nothing but tables) there is no gradient for DDP to reduce, and DDP refuses such a module

    def lightning_module_state_dict(self) -> dict[str, Any]:
        tables = self._tables()
        if tables is not None:
            tables.pull()  # every rank dumps the checkpoint (Lightning), so the gather is collective
        return super().lightning_module_state_dict()

    def on_validation_start(self) -> None:
        tables = self._tables()
        if tables is not None:
            tables.pull()
        super().on_validation_start()

    def on_train_end(self) -> None:
        tables = self._tables()
        if tables is not None:
            tables.pull()
            self._trained = True
        super().on_train_end()

    def teardown(self) -> None:
        module = self.lightning_module
        if getattr(self, "_trained", False) and module is not None:
            # the shards are in the plain tables now; TorchRec's modules and their gloo / NCCL work are let go while
            # both ranks are here (one rank freeing them as the other exits aborted 1 gloo run in 5: SIGABRT)
            module._fused.close()
            module._fused = None
            self._trained = False
            self.barrier()
        super().teardown()
