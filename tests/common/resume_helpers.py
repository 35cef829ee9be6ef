"""Test-only callbacks for tests/cli/test_resume.py, loaded by class path in the `zoo fit` subprocesses it starts."""

import os
import signal

import lightning.pytorch as pl


class KillAtStep(pl.Callback):
    """SIGKILL its own process when the batch after optimizer step ``step`` starts (after every callback of that
    step, checkpoint writers included): a crash mid-epoch at a known point, not a race against a timer."""

    def __init__(self, step: int) -> None:
        self.step = step

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), signal.SIGKILL)
