"""``ZooTask``: the LightningModule every zoo model derives from.

The contract itself (the three methods, the traits a technique may read, the one training step) lives in
:mod:`zoo.contract`; this class adds what zoo's own tasks share on top of it: optimizer and schedule, building
the network once the data has stated its sizes (:meth:`ZooTask.bind_data`), and checkpoints that record which
task wrote them.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo.checkpoints import (
    CheckpointMismatchError,
    check_checkpoint_task,
    checkpoint_meta,
    load_checkpoint,
    peek,
)
from zoo.compat import attached_trainer
from zoo.contract import CONTRACT, batch_size_of, contract_stub, contract_training_step, implements_contract
from zoo.distributed import in_process_group
from zoo.errors import ConfigError

OPTIMIZERS = ("adamw", "adam", "sgd")
SCHEDULERS = ("none", "cosine", "linear")
Optimizer = Literal["adamw", "adam", "sgd"]
Scheduler = Literal["none", "cosine", "linear"]


class ZooTask(pl.LightningModule):
    """Base class of every zoo model. Subclasses implement ``embed``, ``forward_embedded`` and ``task_loss``.

    Args:
        lr: peak learning rate.
        weight_decay: decoupled weight decay, not applied to biases and norm weights.
        optimizer: ``adamw``, ``adam`` or ``sgd`` (momentum 0.9).
        scheduler: ``none``, ``cosine`` (with linear warm-up) or ``linear`` (warm-up then linear decay).
        warmup_ratio: fraction of the training steps spent warming up.
    """

    #: metric that checkpointing and early stopping watch by default, and its direction
    monitor: str = "val/loss"
    monitor_mode: str = "min"

    def __init__(
        self,
        *,
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "none",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ConfigError(f"--model.init_args.lr must be > 0, got {lr}")
        if optimizer not in OPTIMIZERS:
            raise ConfigError(f"--model.init_args.optimizer must be one of {', '.join(OPTIMIZERS)}; got {optimizer!r}")
        if scheduler not in SCHEDULERS:
            raise ConfigError(f"--model.init_args.scheduler must be one of {', '.join(SCHEDULERS)}; got {scheduler!r}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ConfigError(f"--model.init_args.warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.scheduler_name = scheduler
        self.warmup_ratio = warmup_ratio
        self._built = False
        self._bound_to: int | None = None

    # -- the contract ---------------------------------------------------------------------------------
    @contract_stub
    def embed(self, batch: Any) -> Tensor | dict[str, Tensor]:
        raise NotImplementedError

    @contract_stub
    def forward_embedded(self, emb: Tensor | dict[str, Tensor], batch: Any) -> Any:
        raise NotImplementedError

    @contract_stub
    def task_loss(self, out: Any, batch: Any) -> Tensor:
        raise NotImplementedError

    def forward(self, batch: Any) -> Any:
        return self.forward_embedded(self.embed(batch), batch)

    # -- data -> model, once ------------------------------------------------------------------------------
    def bind_data(self, datamodule: Any) -> None:
        """The one place the data reaches the model: read sizes / vocabularies / id maps from ``datamodule``
        (:meth:`configure_from_data`), then build the network once (:meth:`build`). Idempotent for the same
        datamodule. The CLI calls it right after instantiating model and data (so callbacks such as
        ``BackboneFinetuning`` see the built network in their own ``setup``); ``setup`` calls it for a
        ``Trainer.fit(model, datamodule)`` from Python."""
        key = id(datamodule) if datamodule is not None else None
        if self._built and key == self._bound_to:
            return
        self.configure_from_data(datamodule)
        self.build()
        self._bound_to = key

    def configure_from_data(self, datamodule: Any) -> None:
        """Read what the network depends on from ``datamodule`` (None when there is none) and check it against
        what the model was built for."""

    def build_network(self) -> None:
        """Create the layers; called once, when everything they depend on is known."""

    def build(self) -> None:
        """Build the network if it is not built yet (idempotent)."""
        if not self._built:
            self.build_network()
            self._built = True

    # -- hooks subclasses use for metrics (optional hooks of zoo.contract.ZooTaskProtocol) -----------------
    def update_metrics(self, stage: str, out: Any, batch: Any) -> None:
        """Update this stage's metrics with a step's output."""

    def log_epoch_metrics(self, stage: str) -> None:
        """Log this stage's metric objects (called at each epoch end)."""

    def write_test_report(self, out_dir: Any) -> list[Any]:
        """Write a human-readable test report under ``out_dir``; returns the written paths."""
        return []

    def regularization_terms(self) -> dict[str, Tensor]:
        """Penalties of the model itself, added to the loss once per training step as ``train/loss_<name>``."""
        return {}

    # -- the one training step ------------------------------------------------------------------------
    def training_step(self, batch: Any, batch_idx: int) -> Tensor:
        return contract_training_step(self, batch)

    def _eval_step(self, stage: str, batch: Any) -> Any:
        out = self(batch)
        loss = self.task_loss(out, batch)
        self.log(f"{stage}/loss", loss, prog_bar=stage == "val", batch_size=batch_size_of(batch), sync_dist=True)
        self.update_metrics(stage, out, batch)
        return out

    def validation_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("val", batch)

    def test_step(self, batch: Any, batch_idx: int) -> None:
        self._eval_step("test", batch)

    def on_train_epoch_end(self) -> None:
        self.log_epoch_metrics("train")

    def on_validation_epoch_end(self) -> None:
        self.log_epoch_metrics("val")

    def on_test_epoch_end(self) -> None:
        self.log_epoch_metrics("test")

    def setup(self, stage: str) -> None:
        from zoo.scale import destroy_process_group_at_exit, stop_gpu_probing_without_gpus

        if in_process_group():
            destroy_process_group_at_exit()
        stop_gpu_probing_without_gpus()
        trainer = attached_trainer(self)
        self.bind_data(trainer.datamodule if trainer is not None else None)

    # -- optimisation ---------------------------------------------------------------------------------
    def parameter_groups(self) -> list[dict[str, Any]]:
        decay, no_decay = [], []
        for name, p in self.named_parameters():
            if not p.requires_grad:
                continue
            (no_decay if p.ndim <= 1 or name.endswith(".bias") else decay).append(p)
        groups = [{"params": decay, "weight_decay": self.weight_decay}]
        if no_decay:
            groups.append({"params": no_decay, "weight_decay": 0.0})
        return groups

    def configure_optimizers(self) -> Any:
        groups = self.parameter_groups()
        fused = {"fused": True} if self._can_fuse_optimizer(groups) else {}
        if self.optimizer_name == "sgd":
            opt = torch.optim.SGD(groups, lr=self.lr, momentum=0.9, nesterov=True, **fused)
        elif self.optimizer_name == "adam":
            opt = torch.optim.Adam(groups, lr=self.lr, **fused)
        else:
            opt = torch.optim.AdamW(groups, lr=self.lr, **fused)
        return self.scheduled(opt)

    def scheduled(self, opt: torch.optim.Optimizer) -> Any:
        """``opt`` with the configured per-step learning-rate schedule (warm-up, then linear or cosine decay)."""
        if self.scheduler_name == "none":
            return opt
        total = max(1, int(self.trainer.estimated_stepping_batches))
        warmup = int(self.warmup_ratio * total)
        schedule = _cosine if self.scheduler_name == "cosine" else _linear
        sched = torch.optim.lr_scheduler.LambdaLR(opt, lambda step: schedule(step, warmup, total))
        return {"optimizer": opt, "lr_scheduler": {"scheduler": sched, "interval": "step"}}

    def _can_fuse_optimizer(self, groups: list[dict[str, Any]]) -> bool:
        """torch's fused optimizer kernels (one kernel for all parameters instead of a Python loop over them) run
        on dense floating-point CPU and CUDA tensors; DeepSpeed brings its own optimizer, so keep the plain one."""
        from lightning.pytorch.strategies import DeepSpeedStrategy

        trainer = attached_trainer(self)
        if trainer is not None and isinstance(trainer.strategy, DeepSpeedStrategy):
            return False
        params = [p for g in groups for p in g["params"]]
        return bool(params) and all(p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda")
                                    for p in params)

    # -- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo"] = checkpoint_meta(self)

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_task(checkpoint, type(self), source="checkpoint")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Like Lightning's, but refuses a checkpoint of another task class with a clear message, and loads
        with ``weights_only=True`` (zoo checkpoints hold only tensors and plain values)."""
        if isinstance(checkpoint_path, str | bytes) or hasattr(checkpoint_path, "__fspath__"):
            check_checkpoint_task(peek(checkpoint_path), cls, source=str(checkpoint_path))
        kwargs.setdefault("weights_only", True)
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)


def _cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, 1.0 - (step - warmup) / max(1, total - warmup))


__all__ = ["CONTRACT", "OPTIMIZERS", "SCHEDULERS", "CheckpointMismatchError", "Optimizer", "Scheduler", "ZooTask",
           "implements_contract", "load_checkpoint"]
