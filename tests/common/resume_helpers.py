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


class SignalAtStep(pl.Callback):
    """Send ``signum`` to its own process when the batch after optimizer step ``step`` starts (SIGINT: Ctrl-C)."""

    def __init__(self, step: int, signum: int = int(signal.SIGINT)) -> None:
        self.step, self.signum = step, signum

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        if trainer.global_step == self.step:
            os.kill(os.getpid(), self.signum)


class HoldAtStep(pl.Callback):
    """At optimizer step ``step``, create ``marker`` and wait (at most a minute) until the process gets SIGTERM:
    a fit that is surely running, for a test to start a second one against."""

    def __init__(self, step: int, marker: str) -> None:
        self.step, self.marker = step, marker

    def on_train_batch_start(self, trainer, pl_module, *args) -> None:
        import time
        from pathlib import Path

        if trainer.global_step != self.step:
            return
        Path(self.marker).write_text(str(os.getpid()))
        deadline = time.monotonic() + 60
        while not trainer.received_sigterm and time.monotonic() < deadline:
            time.sleep(0.05)
