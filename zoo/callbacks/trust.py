"""Calibration, conformal prediction sets and selective prediction for classifiers, as one run callback.

* after ``fit``: a temperature is fitted on the validation split (:func:`zoo.reporting.calibration.fit_temperature`)
  for the model in memory and for the best checkpoint, and written into the checkpoint files, so ``test``,
  ``predict``, ``export`` and ``serve`` apply it (``model.probabilities``);
* at ``test``: a checkpoint without a fitted temperature is calibrated on the validation split first; the report
  (``trust.json``, ``trust.md``, ``reliability.png``, ``risk_coverage.png``) gives ECE and NLL before and after,
  conformal coverage and set sizes (single-label), the risk-coverage curve, AURC and, with ``target_accuracy``,
  the confidence threshold that reaches it;
* at ``predict`` with ``coverage``: a ``prediction_set`` column from split conformal on the validation split.

The model side is duck-typed (``temperature``, ``probabilities``, ``multi_label``), not read through
:mod:`zoo.contract`: these belong to zoo's classifiers, and a module without them is left alone.
"""

from __future__ import annotations

import sys
from pathlib import Path
from typing import Any

import lightning.pytorch as pl
import torch
from torch import Tensor

from zoo.callbacks.run_report import run_dir
from zoo.contract import hard_targets, trait
from zoo.errors import ConfigError
from zoo.registry import CALLBACKS

CALIBRATIONS = ("temperature", "none")


def calibratable(module: Any) -> bool:
    return isinstance(getattr(module, "temperature", None), Tensor) and callable(getattr(module, "probabilities", None))


def _kind(module: Any) -> str:
    if getattr(module, "multi_label", False):
        return "multi"
    return "single" if trait(module, "target_key") else "token"


def _targets(module: Any, batch: dict[str, Any]) -> Tensor:
    key = trait(module, "target_key") or "labels"
    target = batch[key]
    return target if _kind(module) == "multi" else hard_targets(target)


@CALLBACKS.register("trust", summary="temperature calibration after fit; ECE/NLL, conformal sets, risk-coverage in "
                                     "the test report; predict --coverage prediction sets")
class Trust(pl.Callback):
    """Args:
        calibration: ``temperature`` (fit and apply) or ``none`` (neither fit nor apply the temperature).
        coverage: ``predict``: add a ``prediction_set`` column reaching this coverage (split conformal).
        levels: ``test``: the target coverages reported.
        method: conformal score for ``predict`` sets, ``lac`` or ``aps`` (the report shows both).
        target_accuracy: ``test``: report the confidence threshold and fraction answered at this accuracy.
    """

    def __init__(self, calibration: str = "temperature", coverage: float | None = None,
                 levels: tuple[float, ...] = (0.8, 0.9, 0.95), method: str = "lac",
                 target_accuracy: float | None = None) -> None:
        from zoo.reporting.conformal import METHODS

        if calibration not in CALIBRATIONS:
            raise ConfigError(f"--calibration must be one of {', '.join(CALIBRATIONS)}; got {calibration!r}")
        if coverage is not None and not 0.0 < coverage < 1.0:
            raise ConfigError(f"--coverage must be in (0, 1), e.g. 0.9; got {coverage}")
        if target_accuracy is not None and not 0.0 < target_accuracy <= 1.0:
            raise ConfigError(f"--target_accuracy must be in (0, 1], e.g. 0.98; got {target_accuracy}")
        if method not in METHODS:
            raise ConfigError(f"trust method must be one of {', '.join(METHODS)}; got {method!r}")
        self.calibration, self.coverage, self.method = calibration, coverage, method
        self.levels = tuple(float(x) for x in levels)
        self.target_accuracy = target_accuracy
        self._test: list[tuple[Tensor, Tensor]] = []
        self._val: tuple[Tensor, Tensor] | None = None
        self.summary: dict[str, Any] = {}

    # -- helpers ----------------------------------------------------------------------------------------
    def setup(self, trainer: pl.Trainer, pl_module: pl.LightningModule, stage: str) -> None:
        if calibratable(pl_module) or hasattr(pl_module, "calibration"):
            pl_module.calibration = self.calibration  # type: ignore[assignment]

    @staticmethod
    def _logits_on(trainer: pl.Trainer, module: Any, split: str) -> tuple[Tensor, Tensor] | None:
        """Raw logits and targets of a whole split, or None when the datamodule has no such split."""
        dm = trainer.datamodule
        loader_fn = getattr(dm, f"{split}_dataloader", None)
        if dm is None or loader_fn is None:
            return None
        try:
            loader = loader_fn()
        except Exception:  # a datamodule without the split raises its own error type
            return None
        if loader is None:
            return None
        was_training = module.training
        module.eval()
        logits, targets = [], []
        try:
            with torch.no_grad(), trainer.precision_plugin.forward_context():
                for batch in loader:
                    batch = trainer.strategy.batch_to_device(batch)
                    out = module(batch)
                    logits.append(out.float().cpu())
                    targets.append(_targets(module, batch).cpu())
        finally:
            module.train(was_training)
        if not logits:
            return None
        return _cat(logits), _cat(targets)

    def _fit(self, module: Any, val: tuple[Tensor, Tensor]) -> Tensor:
        from zoo.reporting.calibration import fit_temperature

        return fit_temperature(*val, multi_label=_kind(module) == "multi")

    # -- fit: calibrate the model in memory and the checkpoints ------------------------------------------
    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.calibration != "temperature" or not calibratable(pl_module) or trainer.fast_dev_run:
            return
        if trainer.world_size > 1:
            # one rank running the model over the validation split while the others wait deadlocked multi-node
            # runs; `zoo test` fits the temperature at test start when the checkpoint has none
            print("zoo: calibration is fitted by `zoo test` (not at the end of a multi-process fit)", file=sys.stderr)
            return
        if trainer.is_global_zero:
            self._calibrate_checkpoints(trainer, pl_module)
        trainer.strategy.barrier("zoo_trust_calibrated")

    def _calibrate_checkpoints(self, trainer: pl.Trainer, module: Any) -> None:
        """Fit a temperature for each checkpoint's own weights (best.ckpt is what test, predict, export and serve
        use), keep it only where it lowers the validation NLL, and say so for the kept checkpoint."""
        from lightning.pytorch.callbacks import Checkpoint, ModelCheckpoint

        val = self._logits_on(trainer, module, "val")
        if val is None:
            return
        current, current_note = self._useful_temperature(module, val)
        module.set_temperature(current)
        kept = kept_checkpoint(trainer)
        paths = {Path(p) for cb in trainer.callbacks if isinstance(cb, ModelCheckpoint)
                 for p in (cb.best_model_path, cb.last_model_path) if p}
        # checkpoint callbacks of zoo's own (LastCheckpoint) say where they write through path(trainer)
        paths |= {Path(cb.path(trainer)) for cb in trainer.callbacks
                  if isinstance(cb, Checkpoint) and not isinstance(cb, ModelCheckpoint)
                  and callable(getattr(cb, "path", None))}
        notes: dict[Path, dict[str, Any]] = {}
        for path in paths:
            if path.is_file():
                temperature, notes[path] = self._checkpoint_temperature(trainer, module, path, current, current_note)
                _write_temperature(path, temperature, notes[path])
        if kept is not None and Path(kept["path"]) in notes:
            print(f"zoo: {kept_line(kept)}", file=sys.stderr)
            for line in calibration_lines(notes[Path(kept["path"])], _display(Path(kept["path"]))):
                print(f"zoo: {line}", file=sys.stderr)
        else:
            for line in calibration_lines(current_note, "the model in memory"):
                print(f"zoo: {line}", file=sys.stderr)

    def _useful_temperature(self, module: Any, val: tuple[Tensor, Tensor]) -> tuple[Tensor, dict[str, Any]]:
        """The fitted temperature when it lowers the validation NLL, else ones (not applied); and what was seen."""
        from zoo.reporting.calibration import ece, nll, temperature_at_bound

        fitted = self._fit(module, val)
        multi = _kind(module) == "multi"
        scaled = val[0] / fitted.to(val[0].dtype)  # [C] per label, or [1]
        before, after = nll(val[0], val[1], multi), nll(scaled, val[1], multi)
        applied = after < before

        def probs(z: Tensor) -> Tensor:
            return z.float().sigmoid() if multi else z.float().softmax(-1)

        note = {"fitted": fitted.flatten().tolist(), "nll_before": before, "nll_after": after, "applied": applied,
                "ece_before": ece(probs(val[0]), val[1], multi), "ece_after": ece(probs(scaled), val[1], multi),
                "at_bound": temperature_at_bound(fitted)}
        return (fitted if applied else torch.ones_like(fitted)), note

    def _checkpoint_temperature(self, trainer: pl.Trainer, module: Any, path: Path, current: Tensor,
                                current_note: dict[str, Any]) -> tuple[Tensor, dict[str, Any]]:
        """The temperature for the weights in ``path`` (those of the model in memory are already fitted)."""
        ckpt = torch.load(path, map_location="cpu", weights_only=True)
        state = ckpt.get("state_dict", {})
        own = module.state_dict()
        if all(k in own and torch.equal(v, own[k].cpu()) for k, v in state.items() if k != "temperature"):
            return current, current_note
        backup = {k: v.detach().clone() for k, v in own.items()}
        try:
            module.load_state_dict({k: v for k, v in state.items() if k != "temperature"}, strict=False)
            val = self._logits_on(trainer, module, "val")
            if val is None:
                return torch.ones_like(current), {"applied": False, "fitted": None}
            return self._useful_temperature(module, val)
        finally:
            module.load_state_dict(backup)

    # -- test: report --------------------------------------------------------------------------------------
    def on_test_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        self._test, self._val, self.summary = [], None, {}
        if not calibratable(pl_module):
            return
        self._val = self._logits_on(trainer, pl_module, "val")
        temperature = pl_module.temperature
        saved = _saved_calibration(trainer.ckpt_path)
        if trainer.is_global_zero and trainer.ckpt_path and saved is not None:
            epoch = saved.get("epoch")
            state = ("no fitted temperature" if not saved["calibrated"] else
                     f"temperature {_fmt(temperature)}" if saved.get("applied", True) else
                     "temperature 1 (calibration in fit did not lower the validation NLL)")
            print(f"zoo: testing {_display(Path(str(trainer.ckpt_path)))}"
                  f"{'' if epoch is None else f' (epoch {epoch})'}: {state}", file=sys.stderr)
        if (self._val is not None and self.calibration == "temperature" and bool((temperature == 1).all())
                and (saved is None or not saved["calibrated"] or "applied" not in saved)):
            fitted, note = self._useful_temperature(pl_module, self._val)
            pl_module.set_temperature(fitted)
            for line in calibration_lines(note, "the checkpoint (it had no fitted temperature; not saved)"):
                print(f"zoo: {line}", file=sys.stderr)

    def on_test_batch_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule, outputs: Any, batch: Any,
                          batch_idx: int, dataloader_idx: int = 0) -> None:
        if not calibratable(pl_module):
            return
        if not isinstance(outputs, Tensor):
            with torch.no_grad():
                outputs = pl_module(batch)
        self._test.append((outputs.detach().float().cpu(), _targets(pl_module, batch).cpu()))

    def on_test_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        out = run_dir(trainer)
        parts = _gather(self._test, trainer)
        if not trainer.is_global_zero or not parts or not calibratable(pl_module):
            return
        from zoo.reporting.trust import trust_report

        logits, targets = _cat([p[0] for p in parts]), _cat([p[1] for p in parts])
        temperature = pl_module.temperature.detach().cpu()
        if self.calibration == "none":
            temperature = torch.ones_like(temperature)
        self.summary, paths, lines = trust_report(
            logits, targets, temperature, kind=_kind(pl_module), val=self._val, levels=self.levels,
            class_names=trait(pl_module, "class_names"), target_accuracy=self.target_accuracy, out_dir=out)
        for line in lines:
            print(f"zoo: {line}", file=sys.stderr)
        # the files themselves are counted in ModelCardWriter's one "wrote N files" line

    # -- predict: prediction sets ----------------------------------------------------------------------------
    def on_predict_start(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.coverage is None:
            return
        if not calibratable(pl_module) or _kind(pl_module) != "single" or not hasattr(pl_module, "prediction_sets"):
            raise ConfigError("--coverage (conformal prediction sets) needs a single-label classifier; "
                              f"{type(pl_module).__name__} is not one")
        from zoo.reporting.conformal import prediction_sets, quantile, true_class_scores

        val = self._logits_on(trainer, pl_module, "val")
        if val is None or len(val[1]) == 0:
            raise ConfigError("--coverage needs the validation split to calibrate the prediction sets; give the "
                              "data config the model was trained with (--config recipe.yaml)")
        probs = pl_module.probabilities(val[0])
        threshold = quantile(true_class_scores(probs, val[1], self.method), self.coverage)
        method = self.method

        def sets(p: Tensor) -> list[list[int]]:
            mask = prediction_sets(p.float().cpu(), threshold, method)
            return [torch.nonzero(row).flatten().tolist() for row in mask]

        pl_module.prediction_sets = sets  # type: ignore[assignment]
        print(f"zoo: prediction sets for {self.coverage:g} coverage ({method}, {len(val[1])} validation examples)",
              file=sys.stderr)

    def on_predict_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if self.coverage is not None and hasattr(pl_module, "prediction_sets"):
            pl_module.prediction_sets = None  # type: ignore[assignment]


def _display(path: Path) -> str:
    """``path`` relative to the working directory when it is below it (what the user typed to get there)."""
    try:
        return str(Path(path).resolve().relative_to(Path.cwd().resolve()))
    except ValueError:
        return str(path)


def _saved_calibration(path: Any) -> dict[str, Any] | None:
    """The checkpoint's epoch and calibration record (``zoo.calibration``; ``calibrated``: whether it has one), or
    None when the file cannot be read."""
    if not path or not Path(str(path)).is_file():
        return None
    try:
        ckpt = torch.load(str(path), map_location="cpu", weights_only=True, mmap=True)
    except Exception:  # a checkpoint zoo cannot read was refused before test started; say nothing more here
        return None
    calibration = (ckpt.get("zoo") or {}).get("calibration")
    return {**(calibration or {}), "epoch": ckpt.get("epoch"), "calibrated": calibration is not None}


def kept_checkpoint(trainer: pl.Trainer) -> dict[str, Any] | None:
    """The checkpoint test / predict / export / serve use (the best one): path, epoch, monitored metric and value,
    and the last epoch's value of that metric; None when no best checkpoint was written."""
    from lightning.pytorch.callbacks import ModelCheckpoint

    for cb in trainer.callbacks:
        if isinstance(cb, ModelCheckpoint) and cb.monitor and cb.best_model_path and Path(cb.best_model_path).is_file():
            epoch = torch.load(cb.best_model_path, map_location="cpu", weights_only=True, mmap=True).get("epoch")
            value = cb.best_model_score
            last = trainer.callback_metrics.get(cb.monitor)
            return {"path": cb.best_model_path, "epoch": epoch, "monitor": cb.monitor,
                    "value": None if value is None else float(value),
                    "last_epoch": trainer.current_epoch - 1 if trainer.current_epoch else 0,
                    "last_value": None if last is None else float(last)}
    return None


def kept_line(kept: dict[str, Any]) -> str:
    value = "" if kept["value"] is None else f", {kept['monitor']} {kept['value']:.4f}"
    line = f"kept {_display(Path(kept['path']))}: epoch {kept['epoch']}{value}"
    if kept["epoch"] != kept["last_epoch"] and kept["last_value"] is not None:
        line += f" (the last epoch, {kept['last_epoch']}, scored {kept['last_value']:.4f})"
    return line


def calibration_lines(note: dict[str, Any], what: str) -> list[str]:
    """What calibration did to ``what``: the temperature applied with the validation NLL it reached, or why not."""
    if note.get("fitted") is None:
        return [f"calibration: {what} has no validation split to fit a temperature on; temperature 1"]
    fitted = _fmt(torch.tensor(note["fitted"]))
    nll = f"validation NLL {note['nll_before']:.4f} -> {note['nll_after']:.4f}"
    if note.get("ece_before") is not None:
        nll += f", ECE {note['ece_before']:.4f} -> {note['ece_after']:.4f}"
    out = []
    if note.get("at_bound"):
        out.append(f"warning: {what}'s fitted temperature {fitted} is at the search bound (0.01 or 100): its "
                   "validation predictions carry almost no confidence information (trained too briefly?)")
    if note["applied"]:
        out.append(f"calibrated {what}: temperature {fitted} ({nll}); test, predict, export and serve apply it")
    else:
        out.append(f"calibration not applied to {what}: temperature {fitted} would not lower the {nll}; it keeps "
                   "temperature 1")
    return out


def _fmt(t: Tensor) -> str:
    values = [f"{float(x):.3f}" for x in t.flatten()]
    return values[0] if len(values) == 1 else "[" + ", ".join(values[:8]) + (", ..." if len(values) > 8 else "") + "]"


def _cat(parts: list[Tensor]) -> Tensor:
    """Concatenate batches; token batches differ in length, so their (logits, labels) are padded first (labels
    with -100, which every score ignores)."""
    if parts[0].dim() <= 1 or all(p.shape[1:] == parts[0].shape[1:] for p in parts):
        return torch.cat(parts)
    width = max(p.shape[1] for p in parts)
    fill = -100 if not parts[0].is_floating_point() else 0.0
    padded = [torch.nn.functional.pad(p, (0, 0) * (p.dim() - 2) + (0, width - p.shape[1]), value=fill)
              for p in parts]
    return torch.cat(padded)


def _gather(parts: list[tuple[Tensor, Tensor]], trainer: pl.Trainer) -> list[tuple[Tensor, Tensor]]:
    if trainer.world_size <= 1:
        return parts
    import torch.distributed as dist

    every: list[Any] = [None] * trainer.world_size
    dist.all_gather_object(every, parts)
    return [p for rank in every for p in rank]


def _write_temperature(path: Path, temperature: Tensor, note: dict[str, Any] | None = None) -> None:
    """Put the fitted temperature into a checkpoint file (a temporary sibling, then a rename); ``note``: the
    validation NLL before / after and whether it was applied."""
    ckpt = torch.load(path, map_location="cpu", weights_only=True)
    ckpt.setdefault("state_dict", {})["temperature"] = temperature.detach().cpu().clone()
    ckpt.setdefault("zoo", {})["calibration"] = {"method": "temperature", "split": "val",
                                                 "temperature": temperature.flatten().tolist(), **(note or {})}
    tmp = path.with_name(f".{path.name}.tmp")
    try:
        torch.save(ckpt, tmp)
        tmp.replace(path)
    finally:
        tmp.unlink(missing_ok=True)


__all__ = ["CALIBRATIONS", "Trust", "calibratable", "calibration_lines", "kept_checkpoint", "kept_line"]
