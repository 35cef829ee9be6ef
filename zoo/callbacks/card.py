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


@CALLBACKS.register("model_card", summary="MODEL_CARD.md (Hugging Face layout) after test; training and data summaries")
class ModelCardWriter(pl.Callback):
    def __init__(self) -> None:
        self._start: float | None = None

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._start = time.perf_counter()

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        if not trainer.is_global_zero or self._start is None or trainer.fast_dev_run:
            return
        from zoo.reporting.io import atomic_write_text

        summary = {"epochs": trainer.current_epoch, "steps": trainer.global_step,
                   "minutes": round((time.perf_counter() - self._start) / 60, 2),
                   "machine": f"{trainer.num_devices} "
                              f"{trainer.accelerator.__class__.__name__.replace('Accelerator', '')} device(s)"}
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
        print(f"zoo: wrote {write_model_card(out, sources)}", file=sys.stderr)


__all__ = ["ModelCardWriter", "data_summary"]
