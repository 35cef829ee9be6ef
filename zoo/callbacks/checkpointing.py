"""What a run needs to continue exactly after a crash: ``last.ckpt`` always on disk, and the RNG states in it.

* :class:`LastCheckpoint` writes ``last.ckpt`` at every epoch end (and every ``every_n_train_steps`` steps /
  ``every_n_minutes`` minutes when set), whatever the best-checkpoint policy, atomically: the file is written
  beside its final name and renamed over it, so a kill mid-write leaves the previous ``last.ckpt`` intact.
* :class:`RunState` puts the torch / CUDA / numpy / Python RNG states into each checkpoint and restores them when
  training resumes, before the first batch is fetched; with the resumable training loaders of
  :mod:`zoo.data.loaders` (data order and position), the techniques' own ``state_dict`` (EMA weights, mixup RNG,
  warm-up counters) and Lightning's loop, optimizer and callback states, a resumed run under
  ``trainer.deterministic: true`` continues bit for bit (see docs/reliability.md for what is not covered).
"""

from __future__ import annotations

import os
import random
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from lightning.pytorch.callbacks import Checkpoint, OnExceptionCheckpoint

from zoo.data.loaders import ResumableLoader
from zoo.errors import CheckpointError


def write_checkpoint(trainer: pl.Trainer, path: Path) -> None:
    """The trainer's whole state written beside ``path`` and renamed over it: a kill mid-write leaves the previous
    file intact (and a ``.<name>.<pid>.tmp`` that the next fit of the run removes), and a failed write (a full
    disk) removes the partial file and names ``path``, not a temporary name."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    if trainer.is_global_zero:
        path.parent.mkdir(parents=True, exist_ok=True)
    try:
        # the whole training state; said, so Lightning does not log its default
        trainer.save_checkpoint(tmp, weights_only=False)
        if trainer.is_global_zero:
            os.replace(tmp, path)
    except OSError as err:
        raise CheckpointError(f"cannot write checkpoint {path}: {err.strerror or err}; the partial file was removed "
                              "(free space, or choose another --trainer.default_root_dir)") from err
    finally:
        if trainer.is_global_zero and tmp.exists():
            tmp.unlink()


class ExceptionCheckpoint(OnExceptionCheckpoint):
    """Lightning's ``on_exception.ckpt`` (a fit that dies of an exception or SIGTERM), written as
    :func:`write_checkpoint` writes: whole or not at all."""

    def on_exception(self, trainer: pl.Trainer, *args: Any, **kwargs: Any) -> None:
        write_checkpoint(trainer, Path(self.ckpt_path))


class LastCheckpoint(Checkpoint):
    """``<dirpath>/last.ckpt``: the last state of the run, rewritten at every epoch end and, when set, every
    ``every_n_train_steps`` optimizer steps or ``every_n_minutes`` minutes of training; ``dirpath=None`` puts it
    in the ``checkpoints`` folder of the run (beside ``best.ckpt``)."""

    def __init__(self, dirpath: str | None = None, filename: str = "last", every_n_train_steps: int = 0,
                 every_n_minutes: float = 0.0) -> None:
        if every_n_train_steps < 0:
            raise ValueError("LastCheckpoint.every_n_train_steps must be >= 0 (0 = epoch ends only), "
                             f"got {every_n_train_steps}")
        if every_n_minutes < 0:
            raise ValueError("LastCheckpoint.every_n_minutes must be >= 0 (0 = epoch ends only), "
                             f"got {every_n_minutes}")
        self.dirpath = dirpath
        self.filename = filename
        self.every_n_train_steps = every_n_train_steps
        self.every_n_minutes = every_n_minutes
        self._last_time = time.monotonic()
        self._last_step = -1

    def path(self, trainer: pl.Trainer) -> Path:
        if self.dirpath is not None:
            return Path(self.dirpath) / f"{self.filename}.ckpt"
        from zoo.callbacks.run_report import run_dir

        return run_dir(trainer) / "checkpoints" / f"{self.filename}.ckpt"

    def save(self, trainer: pl.Trainer, epoch_end: bool = False) -> None:
        if (trainer.sanity_checking or trainer.fast_dev_run
                or (trainer.global_step == self._last_step and not epoch_end)):
            return
        for logger in trainer.loggers:  # the history up to this state is on disk with it (a kill loses neither)
            logger.save()
        write_checkpoint(trainer, self.path(trainer))  # every rank asks: run_dir may be a collective under DDP
        self._last_step = trainer.global_step
        self._last_time = time.monotonic()

    def on_train_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        step_due = self.every_n_train_steps and trainer.global_step % self.every_n_train_steps == 0
        time_due = self.every_n_minutes and time.monotonic() - self._last_time >= 60 * self.every_n_minutes
        if step_due or time_due:
            self.save(trainer)

    def on_train_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self.save(trainer, epoch_end=True)

    def state_dict(self) -> dict[str, Any]:
        return {"dirpath": self.dirpath}


def _rng_states() -> dict[str, Any]:
    # Lightning's _collect_rng_states is private; numpy's key array becomes a tensor so weights_only loads it
    kind, keys, pos, has_gauss, gauss = np.random.get_state()
    states: dict[str, Any] = {"torch": torch.get_rng_state(), "python": random.getstate(),
                              "numpy": {"kind": kind, "keys": torch.from_numpy(keys.astype(np.int64)), "pos": int(pos),
                                        "has_gauss": int(has_gauss), "gauss": float(gauss)}}
    if torch.cuda.is_available() and torch.cuda.is_initialized():
        states["cuda"] = torch.cuda.get_rng_state_all()
    return states


def _set_rng_states(states: dict[str, Any]) -> None:
    torch.set_rng_state(states["torch"])
    version, internal, gauss_next = states["python"]
    random.setstate((version, tuple(internal), gauss_next))
    n = states["numpy"]
    np.random.set_state((n["kind"], n["keys"].numpy().astype(np.uint32), n["pos"], n["has_gauss"], n["gauss"]))
    if "cuda" in states and torch.cuda.is_available():
        torch.cuda.set_rng_state_all(states["cuda"])


def _resumable_loaders(loaders: Any) -> list[ResumableLoader]:
    if isinstance(loaders, ResumableLoader):
        return [loaders]
    if isinstance(loaders, dict):
        loaders = list(loaders.values())
    if isinstance(loaders, list | tuple):
        return [dl for item in loaders for dl in _resumable_loaders(item)]
    return []


class RunState(Checkpoint):
    """RNG states in every checkpoint, restored when a fit resumes from one. A :class:`Checkpoint` subclass so
    that Lightning runs it with the checkpoint callbacks, after the module's hooks at the end of an epoch."""

    def __init__(self) -> None:
        self._pending: dict[str, Any] | None = None
        self._loader_states: list[dict[str, Any]] | None = None

    def state_dict(self) -> dict[str, Any]:
        return {"rng": _rng_states()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = state_dict.get("rng")

    def _restore(self) -> None:
        if self._pending is not None:
            _set_rng_states(self._pending)
            self._pending = None

    # The training loaders' positions are saved here as well as by Lightning's loop: Lightning loads them only if
    # the loop builds its loaders after restoring, and a schedule that asks for estimated_stepping_batches makes
    # it build them before (the loaders read the state at their first batch, so loading it twice is harmless).
    def on_save_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        checkpoint["zoo_train_loaders"] = [dl.state_dict() for dl in _resumable_loaders(trainer.train_dataloader)]

    def on_load_checkpoint(self, trainer: pl.Trainer, pl_module: pl.LightningModule,
                           checkpoint: dict[str, Any]) -> None:
        self._loader_states = checkpoint.get("zoo_train_loaders")

    def on_train_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        loaders = _resumable_loaders(trainer.train_dataloader)
        for loader in loaders:
            batches = trainer.num_training_batches
            loader.batch_limit = int(batches) if batches != float("inf") else None
        states, self._loader_states = self._loader_states, None
        if states and len(states) == len(loaders):
            for loader, state in zip(loaders, states, strict=True):
                loader.load_state_dict(state)

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._restore()

    def on_train_batch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule, *args: Any) -> None:
        self._restore()


__all__ = ["ExceptionCheckpoint", "LastCheckpoint", "RunState", "write_checkpoint"]
