"""Writes ``MODEL_CARD.md`` after ``zoo test`` (:mod:`zoo.reporting.card`), plus the two small summaries only a
running trainer knows: ``training_summary.json`` (epochs, steps, minutes; after fit) and ``data_summary.json``
(split sizes, label distribution, truncation and unknown-token rates; at test)."""

from __future__ import annotations

import json
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from zoo.callbacks.run_report import run_dir
from zoo.registry import CALLBACKS


def data_summary(datamodule: Any) -> dict[str, Any]:
    """What the card says about the data, from a set-up datamodule (anything it lacks is left out)."""
    from zoo.baselines.references import unknown_token_rate

    out: dict[str, Any] = {}
    splits = getattr(datamodule, "splits", None)
    if isinstance(splits, dict) and splits:
        out["sizes"] = {k: len(v) for k, v in splits.items()}
        names = list(getattr(datamodule, "class_names", None) or [])
        train = splits.get("train")
        labels = getattr(train, "labels", None)
        if labels is None and getattr(train, "rows", None) and "label" in train.rows[0]:
            labels = [r["label"] for r in train.rows]
        if labels is not None and names:
            counts: Counter[str] = Counter()
            for y in labels:
                if isinstance(y, list | tuple):
                    counts.update(names[k] for k, v in enumerate(y) if v)
                else:
                    counts[names[int(y)]] += 1
            out["label_distribution"] = dict(sorted(counts.items()))
    truncated = getattr(datamodule, "truncated", None)
    if truncated:
        out["truncated"] = dict(truncated)
    rate = unknown_token_rate(datamodule)
    if rate is not None:
        out["unknown_token_rate"] = round(rate, 5)
    describe = getattr(datamodule, "describe", None)
    if callable(describe) and "sizes" not in out:
        try:
            out["sizes"] = describe()
        except Exception:  # a datamodule that cannot describe itself yet: the card says less
            pass
    return out


def no_best_line(trainer: pl.Trainer) -> str | None:
    """Why a fit left no ``best.ckpt`` (its metric was never measured), or None when it did leave one."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and not cb.best_model_path:
            if cb.monitor in trainer.callback_metrics:
                return None
            why = ("no validation ran (trainer.limit_val_batches 0 or no validation split)"
                   if not trainer.limit_val_batches or trainer.num_val_batches in ([], [0]) else
                   "the fit ended before its first validation (max_steps, max_time or a stop came first)")
            return (f"no {cb.filename or 'best'}.ckpt was written: {cb.monitor} was never measured, as {why}; "
                    "export and serve of the run use checkpoints/last.ckpt (give it to test / predict as --ckpt_path)")
    return None


def written_line(out: Path, since: float | None) -> str:
    """One line for the files a test wrote under ``out`` (reports, figures, the card), with the folder relative
    to the working directory, instead of a line per file."""
    files = [p for p in Path(out).rglob("*") if p.is_file() and (since is None or p.stat().st_mtime >= since - 1)]
    try:
        where = str(Path(out).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        where = str(out)
    return f"wrote {len(files)} files to {where.rstrip('/')}/ (MODEL_CARD.md, reports, figures)"


@CALLBACKS.register("model_card", summary="MODEL_CARD.md (Hugging Face layout) after test; training and data summaries")
class ModelCardWriter(pl.Callback):
    def __init__(self) -> None:
        self._start: float | None = None
        self._test_start: float | None = None

    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test_start = time.time()

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        if not trainer.is_global_zero or self._start is None or trainer.fast_dev_run:
            return
        from zoo.callbacks.trust import kept_checkpoint
        from zoo.reporting.io import atomic_write_text

        summary: dict[str, Any] = {
            "epochs": trainer.current_epoch, "steps": trainer.global_step,
            "minutes": round((time.perf_counter() - self._start) / 60, 2),
            "machine": f"{trainer.num_devices} "
                       f"{trainer.accelerator.__class__.__name__.replace('Accelerator', '')} device(s)",
            "precision": str(trainer.precision), "export_family": getattr(pl_module, "export_family", None)}
        kept = kept_checkpoint(trainer)
        missing = no_best_line(trainer)
        if missing:
            print(f"zoo: {missing}", file=sys.stderr)
        if kept is not None:
            summary["kept"] = {"checkpoint": Path(kept["path"]).name, "epoch": kept["epoch"],
                               "monitor": kept["monitor"], "value": kept["value"]}
        atomic_write_text(out / "training_summary.json", json.dumps(summary, indent=2))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        if not trainer.is_global_zero or trainer.fast_dev_run:
            return
        from zoo.reporting.card import write_model_card
        from zoo.reporting.io import atomic_write_text

        if trainer.datamodule is not None:
            atomic_write_text(out / "data_summary.json", json.dumps(data_summary(trainer.datamodule), indent=2))
        metrics = {k: float(v) for k, v in trainer.callback_metrics.items()
                   if k.startswith("test/") and getattr(v, "numel", lambda: 1)() == 1}
        atomic_write_text(out / "test_metrics.json", json.dumps(metrics, indent=2))  # metrics.csv comes at teardown
        sources = [out]
        ckpt = Path(str(trainer.ckpt_path)) if trainer.ckpt_path else None
        if ckpt is not None and ckpt.parent.name == "checkpoints":
            sources.append(ckpt.parent.parent)
        write_model_card(out, sources)
        print(f"zoo: {written_line(out, self._test_start)}", file=sys.stderr)


__all__ = ["ModelCardWriter", "data_summary", "no_best_line", "written_line"]
