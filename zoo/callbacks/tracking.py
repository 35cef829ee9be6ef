"""Experiment tracking: samples/s for any zoo batch, and the W&B dashboard a zoo run fills.

* :class:`Throughput` is Lightning's ``ThroughputMonitor`` with a batch-size function that understands zoo's
  dict batches, so it can be named in YAML (a lambda cannot).
* :class:`WandbLogger` is Lightning's, offline unless ``WANDB_MODE`` says otherwise; ``ZooCLI`` groups its runs
  by recipe name.
* :class:`WandbReports` adds what scalars cannot show: the resolved config, tags (task, backbone,
  techniques), the test confusion matrix, a per-class precision / recall / F1 table, a table of
  misclassified test examples (thumbnails for images, text for text) and, for recommenders, a table of top-K
  recommendations for sample test users.
"""

from __future__ import annotations

import os
from typing import Any

import lightning.pytorch as pl
import torch
from lightning.pytorch.callbacks import ThroughputMonitor
from lightning.pytorch.loggers import WandbLogger as _LightningWandbLogger
from lightning.pytorch.utilities import rank_zero_only

from zoo.compat import wandb_init_kwargs
from zoo.contract import SAMPLE_KEY, ZooTechnique, batch_size_of, trait
from zoo.registry import CALLBACKS


def _batch_size(batch: Any) -> int:
    return int(batch_size_of(batch))


@CALLBACKS.register("throughput", summary="samples/s (and FLOP/s on known GPUs) logged to every logger")
class Throughput(ThroughputMonitor):
    """``ThroughputMonitor`` that counts samples in zoo batches (dicts, tuples or tensors)."""

    def __init__(self, window_size: int = 20, separator: str = "/") -> None:
        super().__init__(batch_size_fn=_batch_size, window_size=window_size, separator=separator)


class WandbLogger(_LightningWandbLogger):
    """Lightning's ``WandbLogger``, offline by default: ``WANDB_MODE`` (``online``/``offline``/``disabled``)
    decides, and is set to ``offline`` when unset, so a run never needs a network or an account;
    ``wandb sync <run folder>`` uploads it later."""

    def __init__(self, *args: Any, **kwargs: Any) -> None:
        # through the environment, not ``offline=True``: Lightning refuses ``log_model`` with ``offline=True``,
        # while an offline wandb run records the checkpoint artifact and ``wandb sync`` uploads it later
        os.environ.setdefault("WANDB_MODE", "offline")
        super().__init__(*args, **kwargs)

    def describe_run(self, group: str | None = None, tags: list[str] | None = None) -> None:
        """Set the run's group and tags; only before the run starts (W&B fixes the group at ``init``): once it
        started, Lightning no longer reads these arguments, so a later call changes nothing."""
        init = wandb_init_kwargs(self)
        if group and not init.get("group"):
            init["group"] = group
        if tags:
            init["tags"] = sorted(set(init.get("tags") or []) | set(tags))


def run_tags(module: Any, callbacks: list[Any]) -> list[str]:
    """``task:<class>``, ``backbone:<name>`` and ``technique:<name>`` tags for a dashboard to filter on."""
    tags = [f"task:{type(module).__name__}"]
    backbone = trait(module, "backbone_name") or getattr(module, "hparams", {}).get("backbone")
    if isinstance(backbone, str) and backbone:
        tags.append(f"backbone:{backbone}")
    for cb in callbacks:
        if isinstance(cb, ZooTechnique):
            tags.append(f"technique:{getattr(cb, 'name', type(cb).__name__)}")
    return sorted(set(tags))


def resolved_config(trainer: pl.Trainer, pl_module: pl.LightningModule | None = None) -> dict[str, Any]:
    """The full config a LightningCLI run was started with (recipe + overlays + command-line overrides); for
    a plain ``Trainer`` run, the model's and datamodule's hyperparameters in the same ``class_path`` shape."""
    import yaml
    from lightning.pytorch.cli import SaveConfigCallback

    for cb in trainer.callbacks:
        if isinstance(cb, SaveConfigCallback):
            return yaml.safe_load(cb.parser.dump(cb.config, skip_none=False))
    config: dict[str, Any] = {}
    for key, obj in (("model", pl_module), ("data", getattr(trainer, "datamodule", None))):
        if obj is not None:
            config[key] = {"class_path": f"{type(obj).__module__}.{type(obj).__qualname__}",
                           "init_args": dict(getattr(obj, "hparams", {}) or {})}
    config["trainer"] = {"max_epochs": trainer.max_epochs, "max_steps": trainer.max_steps,
                         "precision": str(trainer.precision), "world_size": trainer.world_size,
                         "accumulate_grad_batches": trainer.accumulate_grad_batches}
    return config


def misclassified_rows(examples: list[dict[str, Any]]) -> tuple[list[str], list[list[Any]]]:
    """Columns and rows of the misclassified-examples table (wandb media objects made by the caller)."""
    extra = "image" if any("image" in e for e in examples) else "text" if any("text" in e for e in examples) else None
    columns = ["id", "label", "predicted", "confidence"] + ([extra] if extra else [])
    rows = []
    for e in examples:
        row = [str(e.get("id")), e.get("label"), e.get("predicted"), round(float(e.get("confidence", 0.0)), 4)]
        if extra:
            row.append(e.get(extra))
        rows.append(row)
    return columns, rows


def _wandb_runs(trainer: pl.Trainer) -> list[Any]:
    return [lg.experiment for lg in trainer.loggers if isinstance(lg, _LightningWandbLogger)]


@CALLBACKS.register("wandb_reports", summary="W&B: config, tags, confusion matrix, per-class and misclassified tables")
class WandbReports(pl.Callback):
    """Fills a W&B run with what scalar logging does not: the resolved config, tags, and after ``test`` the
    confusion matrix, a per-class precision / recall / F1 table and misclassified examples.

    Works with any task that leaves ``last_test_confusion`` / ``class_names`` (every ``ClassificationTask``)
    and ``misclassified`` (a bounded list of dicts with id, label, predicted, confidence and an ``image``
    tensor or ``text``); a task without them gets config and tags only.

    Args:
        max_examples: rows of the misclassified-examples table.
    """

    def __init__(self, max_examples: int = 32) -> None:
        if max_examples < 0:
            raise ValueError(f"WandbReports: max_examples must be >= 0, got {max_examples}")
        self.max_examples = max_examples

    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        # a task that keeps no misclassified examples ignores the attribute
        pl_module.max_misclassified = max(int(trait(pl_module, "max_misclassified")), self.max_examples)

    @rank_zero_only
    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._describe(trainer, pl_module)

    @rank_zero_only
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._describe(trainer, pl_module)

    def _describe(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        config = resolved_config(trainer, pl_module)
        for run in _wandb_runs(trainer):
            run.config.update({"zoo_config": config}, allow_val_change=True)
            tags = run_tags(pl_module, list(trainer.callbacks))
            run.tags = tuple(sorted(set(run.tags or ()) | set(tags)))

    @rank_zero_only
    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        runs = _wandb_runs(trainer)
        if not runs:
            return
        import wandb

        payload: dict[str, Any] = {}
        confusion = trait(pl_module, "last_test_confusion")
        names = list(trait(pl_module, "class_names") or [])
        if confusion is not None:
            from zoo.reporting.classification import per_class_scores

            cm = confusion.long()
            names = names if len(names) == cm.shape[0] else [str(i) for i in range(cm.shape[0])]
            cells = [[names[i], names[j], int(cm[i, j])] for i in range(cm.shape[0]) for j in range(cm.shape[1])]
            payload["test/confusion_matrix"] = wandb.plot_table(
                "wandb/confusion_matrix/v1",
                wandb.Table(columns=["Actual", "Predicted", "nPredictions"], data=cells),
                {"Actual": "Actual", "Predicted": "Predicted", "nPredictions": "nPredictions"},
                {"title": "Test confusion matrix"},
            )
            scores = per_class_scores(confusion, names)
            rows = [[name, s["precision"], s["recall"], s["f1"], s["support"]] for name, s in scores["classes"].items()]
            payload["test/per_class"] = wandb.Table(columns=["class", "precision", "recall", "f1", "support"],
                                                    data=rows)
        samples = recommendation_samples(trainer, pl_module, self.max_examples)
        if samples:
            payload["test/top_k_samples"] = wandb.Table(columns=list(samples[0]),
                                                        data=[list(r.values()) for r in samples])
        examples = list(trait(pl_module, "misclassified") or [])[: self.max_examples]
        if examples:
            columns, rows = misclassified_rows(examples)
            if columns[-1] == "image":
                rows = [r[:-1] + [wandb.Image(_to_hwc(r[-1]), caption=f"{r[1]} -> {r[2]}")] for r in rows]
            payload["test/misclassified"] = wandb.Table(columns=columns, data=rows)
        if payload:
            for run in runs:
                run.log(payload)


def recommendation_samples(trainer: pl.Trainer, pl_module: pl.LightningModule, max_users: int) -> list[dict[str, Any]]:
    """Top-K recommendations (original ids, seen items excluded) for the first ``max_users`` test users of a
    recommender, from its own ``predict_step``; empty for other tasks.

    A recommender is recognised by what it does, not by its class: it is no classifier (no ``target_key``)
    and its ``predict_step`` returns several rows per user, each naming its user's position in the batch under
    :data:`zoo.contract.SAMPLE_KEY`."""
    datamodule = getattr(trainer, "datamodule", None)
    if trait(pl_module, "target_key") is not None or datamodule is None or max_users <= 0:
        return []
    batch = next(iter(datamodule.test_dataloader()), None)
    if not isinstance(batch, dict) or not batch:
        return []
    batch = {k: (v[:max_users].to(pl_module.device) if hasattr(v, "to") else v[:max_users]) for k, v in batch.items()}
    with torch.no_grad():
        rows = pl_module.predict_step(batch, 0)
    if not isinstance(rows, list) or not all(isinstance(row, dict) and SAMPLE_KEY in row for row in rows):
        return []
    return [{k: v for k, v in row.items() if k != SAMPLE_KEY} for row in rows]


def _to_hwc(image: Any) -> Any:
    """[C, H, W] float in [0, 1] -> [H, W, C] uint8 (or [H, W] for one channel), as wandb.Image expects."""
    import numpy as np

    array = image.detach().float().clamp(0, 1).mul(255).round().byte().cpu().numpy()
    array = np.transpose(array, (1, 2, 0))
    return array[:, :, 0] if array.shape[2] == 1 else array


__all__ = ["Throughput", "WandbLogger", "WandbReports", "misclassified_rows", "recommendation_samples",
           "resolved_config", "run_tags"]
