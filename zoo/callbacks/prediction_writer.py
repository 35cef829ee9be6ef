"""Predictions as CSV: the rows ``predict_step`` returns, in dataset order, from one process or many."""

from __future__ import annotations

import csv
import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch

from zoo.contract import SAMPLE_KEY
from zoo.distributed import in_process_group
from zoo.registry import CALLBACKS


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

    def write_on_epoch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, predictions: Any,
                           batch_indices: Any) -> None:
        local = indexed_rows(predictions, batch_indices)
        if trainer.world_size > 1 and in_process_group():
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
        try:
            with open(tmp, "w", newline="", encoding="utf-8") as fh:
                writer = csv.DictWriter(fh, fieldnames=fields)
                writer.writeheader()
                writer.writerows(rows)
            tmp.replace(path)
        finally:
            tmp.unlink(missing_ok=True)
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


__all__ = ["PredictionWriter", "indexed_rows", "merge_indexed_rows"]
