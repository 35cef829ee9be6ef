"""A seconds-fast recipe and search space for the `zoo tune` tests, and the study they leave behind."""

from __future__ import annotations

import os
import subprocess
import sys
import time
from pathlib import Path

import lightning.pytorch as pl
import yaml

ROOT = Path(__file__).resolve().parents[2]


def tiny_recipe(tmp_path: Path, max_epochs: int = 2, **trainer) -> Path:
    """digits_tiny, smaller still: 2 train batches and 1 validation batch an epoch, nothing drawn on screen."""
    recipe = yaml.safe_load((ROOT / "recipes/vision/digits_tiny.yaml").read_text())
    recipe["model"]["init_args"]["backbone_kwargs"]["width"] = 4
    recipe["trainer"].update({"max_epochs": max_epochs, "limit_train_batches": 2, "limit_val_batches": 1,
                              "enable_progress_bar": False, "enable_model_summary": False, **trainer})
    path = tmp_path / "tiny.yaml"
    path.write_text(yaml.safe_dump(recipe, sort_keys=False))
    return path


def write_space(tmp_path: Path, text: str, name: str = "space.yaml") -> Path:
    path = tmp_path / name
    path.write_text(text)
    return path


LR_SPACE = "model.init_args.lr: {type: float, low: 0.001, high: 0.05, log: true}\n"


def load(storage: str, name: str):
    import optuna

    return optuna.load_study(study_name=name, storage=storage)


def finished_params(study) -> list[tuple]:
    from optuna.trial import TrialState

    done = study.get_trials(deepcopy=False, states=(TrialState.COMPLETE, TrialState.PRUNED))
    return [tuple(sorted(t.params.items())) for t in done]


def tune_process(args: list[str], cwd: Path, log: Path) -> subprocess.Popen:
    env = dict(os.environ, PYTHONPATH=str(ROOT), OMP_NUM_THREADS="1")
    with open(log, "wb") as out:  # the child keeps its own copy of the descriptor
        return subprocess.Popen([sys.executable, "-m", "zoo.cli", "tune", *args], cwd=cwd, env=env,
                                stdout=out, stderr=subprocess.STDOUT)


def wait_all(workers: list[subprocess.Popen], tmp_path: Path, timeout: float = 600) -> None:
    """Waits for every worker to succeed (its log in the message if not); none is left running."""
    try:
        for i, w in enumerate(workers):
            assert w.wait(timeout=timeout) == 0, (tmp_path / f"w{i}.log").read_text()[-3000:]
    finally:
        for w in workers:
            if w.poll() is None:
                w.kill()
                w.wait()


class HoldTheSecondTrial(pl.Callback):
    """Loaded by class path in an inline `zoo tune` process: the first trial trains through; the second, after its
    first optimizer step, writes ``marker`` and waits there to be killed. The SIGKILL test waits for the marker (a
    state), so it kills a trial known to be training instead of guessing the moment. Once the marker exists the
    callback does nothing, and a re-run of the same command trains through."""

    def __init__(self, marker: str) -> None:
        self.marker = Path(marker)

    def on_train_batch_start(self, trainer, pl_module, batch, batch_idx) -> None:
        if trainer.global_step != 1 or self.marker.exists():
            return
        first = self.marker.with_name(self.marker.name + ".first_trial")
        if not first.exists():
            first.touch()
            return
        self.marker.touch()
        deadline = time.monotonic() + 600  # a bound, in case the test died before its SIGKILL
        while time.monotonic() < deadline:
            time.sleep(0.05)
        raise RuntimeError(f"{self.marker}: the test did not kill this process within 600 s")
