"""``ZooTask``: the contract that lets every technique work on every task.

A task splits its forward pass where the input becomes continuous::

    emb  = task.embed(batch)                 # token embeddings, pixels in [0, 1], user/item vectors
    out  = task.forward_embedded(emb, batch) # logits or scores
    loss = task.task_loss(out, batch)        # scalar

``training_step`` is written once, here. Technique callbacks (:class:`zoo.callbacks.base.ZooTechnique`) may
rewrite the batch and add named loss terms; the sum is returned and Lightning runs one backward.
"""

from __future__ import annotations

import math
from typing import Any, Literal

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo import __version__
from zoo.errors import ConfigError, ZooError

CONTRACT = ("embed", "forward_embedded", "task_loss")


class CheckpointMismatchError(ZooError, ValueError):
    """A checkpoint written by another task class."""


def implements_contract(module: Any) -> list[str]:
    """Names of the contract methods ``module`` lacks (an empty list means it has them all)."""
    missing = []
    for name in CONTRACT:
        fn = getattr(module, name, None)
        base_fn = getattr(ZooTask, name)
        if fn is None or getattr(fn, "__func__", None) is base_fn:
            missing.append(name)
    return missing


def with_grad(emb: Any) -> Any:
    """Make ``emb`` (a tensor or a dict of tensors) something ``torch.autograd.grad`` can differentiate to."""
    if isinstance(emb, dict):
        return {k: with_grad(v) for k, v in emb.items()}
    if isinstance(emb, Tensor) and emb.is_floating_point() and not emb.requires_grad:
        return emb.detach().requires_grad_(True)
    return emb


def batch_size_of(batch: Any) -> int:
    if isinstance(batch, Tensor):
        return batch.shape[0]
    if isinstance(batch, dict):
        for v in batch.values():
            if isinstance(v, Tensor) and v.ndim > 0:
                return v.shape[0]
    if isinstance(batch, list | tuple) and batch:
        return batch_size_of(batch[0])
    return 1


def task_class_path(obj: Any) -> str:
    cls = obj if isinstance(obj, type) else type(obj)
    return f"{cls.__module__}.{cls.__qualname__}"


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
        lr: float = 1e-3,
        weight_decay: float = 0.0,
        optimizer: Literal["adamw", "adam", "sgd"] = "adamw",
        scheduler: Literal["none", "cosine", "linear"] = "none",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__()
        if lr <= 0:
            raise ConfigError(f"lr must be > 0, got {lr}")
        if optimizer not in ("adamw", "adam", "sgd"):
            raise ConfigError(f"optimizer must be one of adamw, adam, sgd; got {optimizer!r}")
        if scheduler not in ("none", "cosine", "linear"):
            raise ConfigError(f"scheduler must be one of none, cosine, linear; got {scheduler!r}")
        if not 0.0 <= warmup_ratio < 1.0:
            raise ConfigError(f"warmup_ratio must be in [0, 1), got {warmup_ratio}")
        self.lr = lr
        self.weight_decay = weight_decay
        self.optimizer_name = optimizer
        self.scheduler_name = scheduler
        self.warmup_ratio = warmup_ratio

    # -- the contract ---------------------------------------------------------------------------------
    def embed(self, batch: Any) -> Tensor | dict[str, Tensor]:
        raise NotImplementedError

    def forward_embedded(self, emb: Tensor | dict[str, Tensor], batch: Any) -> Any:
        raise NotImplementedError

    def task_loss(self, out: Any, batch: Any) -> Tensor:
        raise NotImplementedError

    def forward(self, batch: Any) -> Any:
        return self.forward_embedded(self.embed(batch), batch)

    # -- hooks subclasses use for metrics -------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        """Called in ``setup`` with the trainer's datamodule (or None): build what depends on the data."""

    def update_metrics(self, stage: str, out: Any, batch: Any) -> None:
        """Update this stage's metrics with a step's output."""

    def log_epoch_metrics(self, stage: str) -> None:
        """Log this stage's metric objects (called at each epoch end)."""

    def write_test_report(self, out_dir: Any) -> list[Any]:
        """Write a human-readable test report under ``out_dir``; returns the written paths."""
        return []

    def regularisation_terms(self) -> dict[str, Tensor]:
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

        if torch.distributed.is_available() and torch.distributed.is_initialized():
            destroy_process_group_at_exit()
        stop_gpu_probing_without_gpus()
        trainer = self._trainer
        self.configure_from_data(getattr(trainer, "datamodule", None) if trainer is not None else None)

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

        if isinstance(getattr(self._trainer, "strategy", None), DeepSpeedStrategy):
            return False
        params = [p for g in groups for p in g["params"]]
        return bool(params) and all(p.is_floating_point() and not p.is_sparse and p.device.type in ("cpu", "cuda")
                                    for p in params)

    # -- checkpoints ----------------------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo"] = {"task": task_class_path(self), "zoo_version": __version__}

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        check_checkpoint_task(checkpoint, type(self), source="checkpoint")

    @classmethod
    def load_from_checkpoint(cls, checkpoint_path: Any, map_location: Any = None, **kwargs: Any) -> Any:  # type: ignore[override]
        """Like Lightning's, but refuses a checkpoint of another task class with a clear message, and loads
        with ``weights_only=True`` (zoo checkpoints hold only tensors and plain values)."""
        if isinstance(checkpoint_path, str | bytes) or hasattr(checkpoint_path, "__fspath__"):
            peek = torch.load(checkpoint_path, map_location="cpu", weights_only=True, mmap=True)
            check_checkpoint_task(peek, cls, source=str(checkpoint_path))
        kwargs.setdefault("weights_only", True)
        return super().load_from_checkpoint(checkpoint_path, map_location=map_location, **kwargs)


def active_techniques(module: pl.LightningModule) -> list[Any]:
    """The technique callbacks of ``module``'s trainer whose warm-up / frequency / probability gates let them run now."""
    from zoo.callbacks.base import ZooTechnique

    trainer = module._trainer
    if trainer is None:
        return []
    return [cb for cb in trainer.callbacks if isinstance(cb, ZooTechnique) and cb.is_active(module)]


def step_log_moment(module: pl.LightningModule) -> str:
    """Which per-step training values to log now: ``"all"``, ``"loss"`` (only the progress bar's total) or ``""``.

    Step-level values reach a logger only every ``log_every_n_steps``, but each ``self.log`` call costs
    Lightning's bookkeeping on every step (about a fifth of a small recommender's step on CPU). So the terms are
    logged on the steps a logger will see, on the last batch of an epoch and the last step of the run (so
    ``callback_metrics`` ends each epoch with the same values as always), and the total on every step only
    while a progress bar shows it.
    """
    trainer = module._trainer
    connector = getattr(trainer, "_logger_connector", None)
    if trainer is None or connector is None:
        return "all"
    epoch_loop = trainer.fit_loop.epoch_loop
    if (connector.should_update_logs or epoch_loop.batch_progress.is_last_batch
            or (trainer.max_steps > 0 and trainer.global_step + 1 >= trainer.max_steps)):
        return "all"
    return "loss" if trainer.progress_bar_callback is not None else ""


def contract_training_step(module: pl.LightningModule, batch: Any) -> Tensor:
    """The one training step of the zoo contract, usable from any LightningModule that implements ``embed``,
    ``forward_embedded`` and ``task_loss``: ``def training_step(self, batch, i): return contract_training_step(self, batch)``.

    Techniques may rewrite the batch (mixup), the embedding (mixup on token embeddings) and add named loss
    terms; the terms are summed, each logged as ``train/loss_<name>``, and the sum is returned so Lightning
    runs a single backward.
    """
    techniques = active_techniques(module)
    for technique in techniques:
        batch = technique.transform_batch(module, batch)
    emb = module.embed(batch)
    for technique in techniques:
        emb = technique.transform_embedding(module, batch, emb)
    if any(t.needs_embedding_grad for t in techniques):
        emb = with_grad(emb)
    out = module.forward_embedded(emb, batch)
    loss = module.task_loss(out, batch)
    terms: dict[str, Tensor] = {"task": loss}
    regularisation = getattr(module, "regularisation_terms", None)
    if callable(regularisation):  # the model's own penalties (AdaLoRA orthogonality), once per step
        terms.update(regularisation())
    for technique in techniques:
        for key, value in technique.loss_terms(module, batch, emb, out, loss).items():
            if key in terms:
                raise ConfigError(f"two techniques both add a loss term named {key!r}")
            terms[key] = value
    total = torch.stack([t.float() for t in terms.values()]).sum()
    when = step_log_moment(module)
    if when:
        bs = batch_size_of(batch)
        module.log("train/loss", total, prog_bar=True, batch_size=bs)
        if when == "all":
            for key, value in terms.items():
                module.log(f"train/loss_{key}", value.detach(), batch_size=bs)
    update_metrics = getattr(module, "update_metrics", None)
    if callable(update_metrics):
        update_metrics("train", _detach(out), batch)
    return total


def check_checkpoint_task(checkpoint: dict[str, Any], cls: type, source: str) -> None:
    meta = checkpoint.get("zoo")
    if meta is None:
        raise CheckpointMismatchError(f"{source} was not written by zoo (no 'zoo' entry); expected a {cls.__name__} checkpoint")
    saved = meta.get("task", "?")
    if not issubclass(cls, _resolve(saved)) and saved != task_class_path(cls):
        raise CheckpointMismatchError(
            f"{source} is a checkpoint of {saved}, not of {task_class_path(cls)}; "
            f"load it with {saved.rsplit('.', 1)[-1]}.load_from_checkpoint or zoo.load_checkpoint"
        )


def _resolve(path: str) -> type:
    import importlib

    module, _, name = path.rpartition(".")
    try:
        obj = importlib.import_module(module)
        for part in name.split("."):
            obj = getattr(obj, part)
        return obj if isinstance(obj, type) else type(None)
    except (ImportError, AttributeError):
        return type(None)


def load_checkpoint(path: Any, map_location: Any = "cpu", **kwargs: Any) -> ZooTask:
    """Load any zoo checkpoint with the task class recorded in it."""
    peek = torch.load(path, map_location="cpu", weights_only=True, mmap=True)
    meta = peek.get("zoo")
    if meta is None:
        raise CheckpointMismatchError(f"{path} was not written by zoo (no 'zoo' entry)")
    cls = _resolve(meta["task"])
    if not (isinstance(cls, type) and issubclass(cls, ZooTask)):
        raise CheckpointMismatchError(f"{path} names task class {meta['task']}, which cannot be imported")
    return cls.load_from_checkpoint(path, map_location=map_location, **kwargs)


def _detach(out: Any) -> Any:
    if isinstance(out, Tensor):
        return out.detach()
    if isinstance(out, dict):
        return {k: _detach(v) for k, v in out.items()}
    return out


def _cosine(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    progress = (step - warmup) / max(1, total - warmup)
    return 0.5 * (1.0 + math.cos(math.pi * min(1.0, progress)))


def _linear(step: int, warmup: int, total: int) -> float:
    if step < warmup:
        return (step + 1) / warmup
    return max(0.0, 1.0 - (step - warmup) / max(1, total - warmup))
