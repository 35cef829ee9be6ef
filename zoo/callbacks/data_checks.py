"""The data checks inside a run (docs/data-checks.md):

* at the start of ``fit``: :func:`zoo.data.checks.inspect_datamodule` on the run's datamodule, one console line
  per finding, ``data_report.md`` / ``data_report.json`` in the run directory;
* at ``test`` (single-label classifiers): the validation and test rows ranked by how likely their label is wrong
  from the model's calibrated probabilities with cleanlab (``label_issues.csv``), and, when test rows repeat
  earlier splits, the test accuracy on the de-duplicated test split beside the plain one, the baseline's likewise
  (``test_deduplicated.json``).
"""

from __future__ import annotations

import json
import sys
from typing import Any

import lightning.pytorch as pl
import numpy as np
import torch
from torch import Tensor

from zoo.callbacks.run_report import run_dir
from zoo.contract import hard_targets, trait
from zoo.registry import CALLBACKS


def single_label(module: Any) -> bool:
    """A classifier with calibrated class probabilities and one class per row (text and image classifiers)."""
    return (callable(getattr(module, "probabilities", None)) and not getattr(module, "multi_label", False)
            and trait(module, "target_key") == "label")


def split_outputs(module: Any, loader: Any, to_device: Any = None) -> tuple[Tensor, Tensor, list[str]] | None:
    """Logits, targets and row ids of every batch of ``loader`` (None when its batches carry no ids)."""
    was_training = module.training
    module.eval()
    logits, targets, ids = [], [], []
    try:
        with torch.no_grad():
            for batch in loader:
                if "id" not in batch:
                    return None
                if to_device is not None:
                    batch = to_device(batch)
                logits.append(module(batch).float().cpu())
                targets.append(hard_targets(batch["label"]).cpu())
                ids += [str(i) for i in batch["id"]]
    finally:
        module.train(was_training)
    if not logits:
        return None
    return torch.cat(logits), torch.cat(targets), ids


def label_issues(module: Any, parts: dict[str, tuple[Tensor, Tensor, list[str]]]) -> tuple[list[dict], int, int]:
    """(flagged rows, cleanlab's estimate, rows looked at) for the outputs of the given splits."""
    from zoo.data.checks.label_issues import rank_label_issues

    logits = torch.cat([p[0] for p in parts.values()])
    with torch.no_grad():
        probs = module.probabilities(logits).float().numpy()
    labels = torch.cat([p[1] for p in parts.values()]).numpy()
    ids = [i for p in parts.values() for i in p[2]]
    splits = [s for s, p in parts.items() for _ in p[2]]
    rows, estimate = rank_label_issues(labels, probs, ids, list(trait(module, "class_names") or []), splits)
    return rows, estimate, len(ids)


@CALLBACKS.register("data_checks", summary="fit: duplicates, leakage, conflicting labels, shift (data_report.md); "
                                           "test: suspect labels (cleanlab) and the de-duplicated test score")
class DataChecks(pl.Callback):
    """Args:
        enabled: false skips the checks at fit start.
        label_issues: false skips the suspect-label ranking and the de-duplicated score at test.
    """

    def __init__(self, enabled: bool = True, label_issues: bool = True) -> None:
        self.enabled, self.label_issues = enabled, label_issues
        self.report: dict[str, Any] | None = None
        self._test: list[tuple[Tensor, Tensor, list[str]]] = []

    def _inspect(self, trainer: pl.Trainer) -> dict[str, Any] | None:
        from zoo.data.checks import inspect_datamodule

        dm = trainer.datamodule
        return None if dm is None else inspect_datamodule(dm)

    def on_fit_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)  # a collective under DDP: every rank
        if not self.enabled or not trainer.is_global_zero or trainer.fast_dev_run:
            return
        self.report = self._inspect(trainer)
        if self.report is None:
            return
        from zoo.data.checks import summary_lines
        from zoo.reporting.data_report import write_data_report

        for line in summary_lines(self.report):
            print(f"zoo: {line}", file=sys.stderr)
        write_data_report(self.report, out)
        print(f"zoo: wrote {out / 'data_report.md'}", file=sys.stderr)

    # -- test ----------------------------------------------------------------------------------------------
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test = []

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not self.label_issues or not single_label(pl_module) or not isinstance(batch, dict) or "id" not in batch:
            return
        if not isinstance(outputs, Tensor):
            with torch.no_grad():
                outputs = pl_module(batch)
        self._test.append((outputs.detach().float().cpu(), hard_targets(batch["label"]).cpu(),
                           [str(i) for i in batch["id"]]))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        # a part of the test split (limit_test_batches, fast_dev_run) or a shard of it (DDP) is not the split
        if (not self.label_issues or not trainer.is_global_zero or not self._test or trainer.world_size > 1
                or trainer.datamodule is None or trainer.fast_dev_run
                or isinstance(trainer.limit_test_batches, int) or trainer.limit_test_batches != 1.0):
            return
        from zoo.reporting.data_report import write_label_issues

        test = (torch.cat([t[0] for t in self._test]), torch.cat([t[1] for t in self._test]),
                [i for t in self._test for i in t[2]])
        parts = {"test": test}
        try:
            val = split_outputs(pl_module, trainer.datamodule.val_dataloader(), trainer.strategy.batch_to_device)
        except Exception:  # a datamodule without a validation split raises its own error type
            val = None
        if val is not None:
            parts = {"val": val, **parts}
        rows, estimate, looked = label_issues(pl_module, parts)
        path = write_label_issues(rows, out / "label_issues.csv")
        print(f"zoo: label issues: cleanlab estimates {estimate} of {looked} {' + '.join(parts)} labels are wrong; "
              f"{len(rows)} rows ranked in {path}", file=sys.stderr)
        self._deduplicated(trainer, test, out)

    def _deduplicated(self, trainer: pl.Trainer, test: tuple[Tensor, Tensor, list[str]], out: Any) -> None:
        from zoo.callbacks.baseline import BaselineComparison
        from zoo.reporting.io import atomic_write_text

        earlier = next((c.result for c in trainer.callbacks if isinstance(c, BaselineComparison) and c.result), None)
        plain = None if earlier is None else {"name": earlier["reference"],
                                              "metrics": {r["metric"]: r["reference"] for r in earlier["rows"]}}
        result = deduplicated_scores(trainer.datamodule, test, plain)
        if result is not None:
            atomic_write_text(out / "test_deduplicated.json", json.dumps(result, indent=2))
            print(f"zoo: {deduplicated_line(result)}", file=sys.stderr)


def deduplicated_scores(dm: Any, test: tuple[Tensor, Tensor, list[str]], baseline: dict[str, Any] | None = None
                        ) -> dict[str, Any] | None:
    """The model's test accuracy (from ``test``: logits, targets, ids) and the baseline's on the whole test split
    and on the test rows that repeat no earlier row (exact or near copy); None when none repeats. ``baseline``: the
    reference's plain result when already fitted (``BaselineComparison``), so only the de-duplicated one is fitted
    here."""
    from zoo.data.checks import inspect_datamodule, leaked_ids

    leaked = leaked_ids(inspect_datamodule(dm), "test")
    if not leaked:
        return None
    logits, targets, ids = test
    keep = np.array([i not in leaked for i in ids])
    pred, true = logits.argmax(-1).numpy(), targets.numpy()
    return {"test_rows": len(ids), "repeating_earlier_splits": int((~keep).sum()),
            "model": {"plain": _scores(true, pred), "deduplicated": _scores(true[keep], pred[keep])},
            "baseline": _baseline_deduplicated(dm, leaked, baseline)}


def _scores(true: np.ndarray, pred: np.ndarray) -> dict[str, float]:
    """The reference models' metric names (zoo.baselines.references): acc and f1_macro."""
    from sklearn.metrics import f1_score

    if not len(true):
        return {}
    return {"acc": float((true == pred).mean()), "f1_macro": float(f1_score(true, pred, average="macro"))}


def deduplicated_line(result: dict[str, Any]) -> str:
    n, kept = result["test_rows"], result["test_rows"] - result["repeating_earlier_splits"]
    m = result["model"]
    line = f"de-duplicated test split ({kept} of {n} rows repeat no train / val row):"
    for key in ("acc", "f1_macro"):
        if key in m["deduplicated"]:
            line += f" {key} {m['plain'][key]:.4f} -> {m['deduplicated'][key]:.4f}"
    base = result.get("baseline")
    if base and "acc" in base["plain"] and "acc" in base["deduplicated"]:
        line += f"; baseline acc {base['plain']['acc']:.4f} -> {base['deduplicated']['acc']:.4f}"
    return line


def _baseline_deduplicated(dm: Any, leaked: set[str], plain: dict[str, Any] | None) -> dict[str, Any] | None:
    """The data's reference model on the plain and the de-duplicated test split (None when it has none)."""
    from zoo.baselines.references import NoReference, reference_for
    from zoo.data.checks.filtering import without_rows

    splits = getattr(dm, "splits", None)
    if not isinstance(splits, dict) or "test" not in splits:
        return None
    plain_split = splits["test"]
    try:
        plain = plain or reference_for(dm)
        splits["test"] = without_rows(plain_split, leaked)
        dedup = reference_for(dm)
    except NoReference:
        return None
    finally:
        splits["test"] = plain_split
    return {"name": plain["name"], "plain": plain["metrics"], "deduplicated": dedup["metrics"]}


__all__ = ["DataChecks", "deduplicated_line", "deduplicated_scores", "label_issues", "single_label", "split_outputs"]
