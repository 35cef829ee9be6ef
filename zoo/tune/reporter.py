"""The callback inside each trial's ``zoo fit``: reports the validation curve to the Optuna study, stops the fit
when the pruner says so, and writes the trial's result for the search process to read.

Own callback rather than optuna-integration's ``PyTorchLightningPruningCallback``: that package is not a
dependency, and a trial here runs in its own process, so the callback reopens the study from its storage (the
trial named by ``ZOO_TUNE_TRIAL``) and stops the fit cleanly instead of raising through Lightning."""

from __future__ import annotations

import json
import math
import os
import time
from pathlib import Path
from typing import Any

import lightning.pytorch as pl

from zoo.reporting.io import atomic_write_text

#: environment variable through which the search process describes the trial to the fit it runs
ENV = "ZOO_TUNE_TRIAL"

PRUNERS = ("median", "percentile", "hyperband", "successive_halving", "none")


def make_pruner(name: str = "median", startup_trials: int = 5, warmup_steps: int = 0) -> Any:
    import optuna.pruners as p

    if name == "median":
        return p.MedianPruner(n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == "percentile":  # prune below the 25th best percentile rather than the median
        return p.PercentilePruner(25.0, n_startup_trials=startup_trials, n_warmup_steps=warmup_steps)
    if name == "hyperband":
        return p.HyperbandPruner()
    if name == "successive_halving":
        return p.SuccessiveHalvingPruner()
    if name == "none":
        return p.NopPruner()
    from zoo.errors import ConfigError

    raise ConfigError(f"--pruner {name!r}: accepted: {', '.join(PRUNERS)}")


def parameter_count(module: Any) -> int:
    return int(sum(p.numel() for p in module.parameters()))


def write_json(path: str | Path, payload: dict[str, Any]) -> None:
    atomic_write_text(path, json.dumps(payload, indent=1))


class TrialReporter(pl.Callback):
    """Reports ``monitor`` after every validation; a no-op outside a tuning trial (no ``ZOO_TUNE_TRIAL``)."""

    def __init__(self) -> None:
        raw = os.environ.get(ENV)
        self.spec: dict[str, Any] = json.loads(raw) if raw else {}
        self.best: float | None = None
        self.last: float | None = None
        self.steps = 0
        self.pruned = False
        self._trial: Any = None

    def _open_trial(self) -> Any:
        if self._trial is None:
            import optuna

            storage = optuna.storages.RDBStorage(self.spec["storage"],
                                                 engine_kwargs=_engine_kwargs(self.spec["storage"]))
            study = optuna.load_study(study_name=self.spec["study"], storage=storage,
                                      pruner=make_pruner(*self.spec.get("pruner", ["none"])))
            self._trial = optuna.trial.Trial(study, int(self.spec["trial_id"]))
        return self._trial

    def on_validation_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.spec or trainer.sanity_checking or trainer.state.fn != "fit":
            return
        value = trainer.callback_metrics.get(self.spec["monitor"])
        if value is None:
            return
        value = float(value)
        self.last, step = value, self.steps
        self.steps += 1
        maximize = self.spec.get("mode", "max") == "max"
        if math.isfinite(value) and (self.best is None or (value > self.best if maximize else value < self.best)):
            self.best = value
        if not self.spec.get("prune"):
            return
        trial = self._open_trial()
        trial.report(value if math.isfinite(value) else (-math.inf if maximize else math.inf), step)
        if trial.should_prune():
            self.pruned = True
            trainer.should_stop = True

    def on_fit_end(self, trainer: pl.Trainer, pl_module: pl.LightningModule) -> None:
        if not self.spec or not trainer.is_global_zero:
            return
        result = {"best": self.best, "last": self.last, "steps": self.steps, "pruned": self.pruned,
                  "params": parameter_count(pl_module), "monitor": self.spec["monitor"]}
        if "latency" in self.spec.get("objectives", []):
            result["latency_ms"] = _latency_ms(trainer, pl_module)
        write_json(self.spec["result"], result)


def _latency_ms(trainer: pl.Trainer, module: pl.LightningModule, repeats: int = 5) -> float | None:
    """Median wall time of the model's forward on one validation batch (milliseconds)."""
    import torch
    from lightning.pytorch.utilities import move_data_to_device

    loaders = trainer.val_dataloaders
    loader = loaders[0] if isinstance(loaders, list | tuple) else loaders
    if loader is None:
        return None
    batch = move_data_to_device(next(iter(loader)), module.device)
    was_training = module.training
    module.eval()
    times = []
    with torch.no_grad():
        module(batch)  # warm-up
        for _ in range(repeats):
            start = time.perf_counter()
            module(batch)
            times.append(time.perf_counter() - start)
    module.train(was_training)
    return 1000.0 * sorted(times)[len(times) // 2]


def _engine_kwargs(url: str) -> dict[str, Any]:
    # several processes write one sqlite file: wait for the lock instead of failing at once
    return {"connect_args": {"timeout": 60}} if url.startswith("sqlite") else {}
