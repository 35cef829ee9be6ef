"""Artifacts a person opens after a run: loss / metric curves after fit, the task's test report after test."""

from __future__ import annotations

import csv
import math
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from zoo.registry import CALLBACKS

LOSS_KEYS = ["loss"]


def run_dir(trainer: pl.Trainer) -> Path:
    """Where a run's artifacts go: the first logger's versioned folder, else ``default_root_dir``.

    Loggers without a versioned folder of their own (W&B: ``trainer.log_dir`` is the shared ``save_dir``) use
    ``save_dir/name/version``, the folder Lightning's ModelCheckpoint puts their checkpoints in."""
    from lightning.pytorch.loggers import CSVLogger, TensorBoardLogger

    logger = trainer.logger
    if logger is not None and not isinstance(logger, CSVLogger | TensorBoardLogger) and logger.save_dir:
        version = logger.version if isinstance(logger.version, str) else f"version_{logger.version}"
        return Path(logger.save_dir) / str(logger.name) / version
    return Path(trainer.log_dir or trainer.default_root_dir)


@CALLBACKS.register("run_report", summary="loss/metric curve PNGs after fit; confusion matrix and report after test")
class RunReport(pl.Callback):
    """Keeps a per-epoch history of logged scalars and writes:

    * ``curves_loss.png`` and ``curves_metrics.png`` at the end of fit;
    * whatever the task's ``write_test_report`` writes (confusion matrix, per-class report) after test.
    """

    def __init__(self, metric_keys: list[str] | None = None) -> None:
        self.metric_keys = metric_keys
        self.history: list[dict[str, float]] = []
        self._validated_epoch = -1

    def _record(self, trainer: pl.Trainer, epoch: int) -> None:
        prefixes = ("train/", "val/") if self._validated_epoch == epoch else ("train/",)
        row: dict[str, float] = {"epoch": float(epoch)}
        for key, value in trainer.callback_metrics.items():
            if key.startswith(prefixes) and getattr(value, "numel", lambda: 1)() == 1:
                v = float(value)
                if math.isfinite(v):
                    row[key] = v
        if not self.history or self.history[-1]["epoch"] != row["epoch"]:
            self.history.append(row)

    # A module logs its epoch-level metrics in its own epoch-end hooks, which Lightning calls after the
    # callbacks' hooks; so epoch e is read when epoch e + 1 starts, or when fit ends.
    def on_validation_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.state.fn == "fit" and not trainer.sanity_checking:
            self._validated_epoch = trainer.current_epoch

    def on_train_epoch_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if trainer.current_epoch > 0:
            self._record(trainer, trainer.current_epoch - 1)

    # not @rank_zero_only: trainer.log_dir is a broadcast under DDP, so every rank must ask for it
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        if trainer.current_epoch > 0:
            self._record(trainer, trainer.current_epoch - 1)
        if not trainer.is_global_zero or not self.history or trainer.fast_dev_run:
            return
        from zoo.reporting.curves import plot_curves

        plot_curves(self.history, out / "curves_loss.png", LOSS_KEYS, "loss")
        keys = self.metric_keys or sorted(
            {k.split("/", 1)[1] for row in self.history for k in row if "/" in k and "loss" not in k and k.count("/") == 1}
        )
        plot_curves(self.history, out / "curves_metrics.png", keys, "metrics")

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)  # a collective under DDP: every rank
        writer = getattr(pl_module, "write_test_report", None)
        if writer is None or not trainer.is_global_zero:
            return
        paths = writer(out)
        for path in paths:
            print(f"zoo: wrote {path}", file=sys.stderr)

    def state_dict(self) -> dict[str, Any]:
        return {"history": self.history}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self.history = list(state_dict.get("history", []))


#: key of a predicted row naming the position, in its batch, of the sample the row belongs to (not written)
SAMPLE_KEY = "_sample"


@CALLBACKS.register("prediction_writer", summary="write predict_step rows as CSV to a file or stdout")
class PredictionWriter(pl.callbacks.BasePredictionWriter):
    """Writes the dict rows that ``predict_step`` returns as CSV; ``output='-'`` means standard output.

    Under DDP every rank predicts a shard; the rows are gathered to rank 0, put back in dataset order by
    their sample index and written once, so the file is the same as a single-process run's (Lightning's
    predict sampler pads no sample; any duplicate index is still dropped).
    """

    def __init__(self, output: str = "-") -> None:
        super().__init__(write_interval="epoch")
        self.output = output

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any, batch_indices: Any) -> None:
        local = indexed_rows(predictions, batch_indices)
        if trainer.world_size > 1 and torch.distributed.is_available() and torch.distributed.is_initialized():
            gathered: list[Any] = [None] * trainer.world_size
            torch.distributed.all_gather_object(gathered, local)
            local = [item for part in gathered for item in part]
        if trainer.global_rank != 0:
            return
        rows = merge_indexed_rows(local)
        if not rows:
            return
        fields = list(dict.fromkeys(k for row in rows for k in row))
        if self.output == "-":
            writer = csv.DictWriter(sys.stdout, fieldnames=fields, lineterminator="\n")
            writer.writeheader()
            writer.writerows(rows)
            sys.stdout.flush()
            return
        path = Path(self.output)
        path.parent.mkdir(parents=True, exist_ok=True)
        tmp = path.with_name(f".{path.name}.tmp")
        with open(tmp, "w", newline="", encoding="utf-8") as fh:
            writer = csv.DictWriter(fh, fieldnames=fields)
            writer.writeheader()
            writer.writerows(rows)
        tmp.replace(path)
        print(f"zoo: wrote {len(rows)} predictions to {path}", file=sys.stderr)


def _per_dataloader(items: Any) -> list[list[Any]]:
    """Lightning gives one dataloader's batches as a flat list and several as a list of such lists."""
    if items and isinstance(items[0], list) and items[0] and isinstance(items[0][0], list):
        return [list(dl) for dl in items]
    return [list(items or [])]


def indexed_rows(predictions: Any, batch_indices: Any) -> list[tuple[int, int | None, int, int, dict[str, Any]]]:
    """``(dataloader, sample index or None, row of that sample, order on this rank, row)`` for every predicted
    row. A row is the batch's j-th sample's by default; a ``predict_step`` giving several rows per sample (a
    recommender's top-k) names the sample's position in the batch under the key ``SAMPLE_KEY``."""
    preds = _per_dataloader(predictions)
    indices = _per_dataloader(batch_indices) if batch_indices else [[] for _ in preds]
    out = []
    order = 0
    for dl, batches in enumerate(preds):
        dl_indices = indices[dl] if dl < len(indices) else []
        for b, batch in enumerate(batches):
            idx = dl_indices[b] if b < len(dl_indices) else None
            seen: dict[int, int] = {}
            for j, row in enumerate(batch):
                if SAMPLE_KEY in row:
                    row = dict(row)
                    j = int(row.pop(SAMPLE_KEY))
                sample = int(idx[j]) if idx is not None and j < len(idx) else None
                sub = seen[j] = seen.get(j, -1) + 1
                out.append((dl, sample, sub, order, row))
                order += 1
    return out


def merge_indexed_rows(items: list[tuple[int, int | None, int, int, dict[str, Any]]]) -> list[dict[str, Any]]:
    """Rows in dataset order, one per (dataloader, sample index, row of the sample); rows without an index
    keep their order."""
    if all(sample is not None for _, sample, _, _, _ in items):
        unique = {(dl, sample, sub): row for dl, sample, sub, _, row in reversed(items)}
        return [unique[key] for key in sorted(unique)]
    return [row for _, _, _, _, row in items]
