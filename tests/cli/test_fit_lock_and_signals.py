"""A run directory is written by one `zoo fit` at a time, and a fit stopped by a signal says so in its exit code.

A real `zoo fit` process holds its run (tests.common.resume_helpers.HoldAtStep, after last.ckpt is on disk); a
second `zoo fit --resume auto` process is refused with the holder's PID; SIGTERM then stops the first, which
writes on_exception.ckpt and exits 143. A lock and a half-written checkpoint left by a process that died are taken
over and removed by the next fit; Ctrl-C (SIGINT) exits 130 after the checkpoint (docs/reliability.md).
"""

from __future__ import annotations

import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest
import torch

from tests.cli.test_resume import write_recipe
from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


def zoo_fit(recipe: Path, cwd: Path, *extra: str, wait: bool = True):
    env = {**os.environ, "PYTHONPATH": str(ROOT), "OMP_NUM_THREADS": str(torch.get_num_threads())}
    argv = [sys.executable, "-m", "zoo.cli", "fit", "--config", str(recipe), *extra]
    if wait:
        return subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=240)
    return subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


@pytest.mark.subprocess
@pytest.mark.timeout(400)
def test_a_second_fit_of_a_held_run_is_refused_and_sigterm_exits_143(tmp_path):
    recipe = write_recipe(tmp_path, "image")
    marker = tmp_path / "holding"
    first = zoo_fit(recipe, tmp_path, "--trainer.callbacks+=tests.common.resume_helpers.HoldAtStep",
                    "--trainer.callbacks.step=4", f"--trainer.callbacks.marker={marker}", wait=False)
    try:
        deadline = time.monotonic() + 180
        while not marker.exists():
            assert first.poll() is None, first.communicate()[1][-3000:]
            assert time.monotonic() < deadline, "the first fit did not reach step 4"
            time.sleep(0.2)
        run = next((tmp_path / "runs").glob("*/version_0"))
        assert (run / "checkpoints" / "last.ckpt").is_file() and (run / ".zoo.lock").read_text() == str(first.pid)

        second = zoo_fit(recipe, tmp_path, "--resume", "auto")
        assert second.returncode == 2, second.stderr[-3000:]
        assert f"is being written by another zoo process (PID {first.pid}" in second.stderr
        assert "Traceback" not in second.stderr

        first.send_signal(signal.SIGTERM)
        _, err = first.communicate(timeout=60)
        assert first.returncode == 143, err[-3000:]
        assert "stopped by SIGTERM" in err and "Traceback" not in err, err[-3000:]
        assert (run / "checkpoints" / "on_exception.ckpt").is_file()
        assert not list((run / "checkpoints").glob(".*.tmp")) and not (run / ".zoo.lock").exists()
        assert not (tmp_path / "runs" / recipe.stem / "version_1").exists()  # the refused fit made nothing
    finally:
        if first.poll() is None:
            first.kill()


@pytest.mark.slow
def test_a_dead_process_lock_and_its_temp_file_are_taken_over(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, "image")
    assert main(["fit", "--config", str(recipe), "--trainer.max_epochs", "1"]) == 0
    run = tmp_path / "runs" / recipe.stem / "version_0"
    dead = subprocess.Popen(["true"])
    dead.wait()
    (run / ".zoo.lock").write_text(str(dead.pid))
    stale = run / "checkpoints" / f".last.ckpt.{dead.pid}.tmp"
    stale.write_bytes(b"half a checkpoint")
    capsys.readouterr()
    assert main(["fit", "--config", str(recipe), "--resume", "auto"]) == 0
    err = capsys.readouterr().err
    assert f"taking over the lock of process {dead.pid}" in err, err[-2000:]
    assert not stale.exists() and not (run / ".zoo.lock").exists()


def test_ctrl_c_exits_130_after_the_checkpoint(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    recipe = write_recipe(tmp_path, "image")
    code = main(["fit", "--config", str(recipe), "--trainer.callbacks+=tests.common.resume_helpers.SignalAtStep",
                 "--trainer.callbacks.step=2"])
    err = capsys.readouterr().err
    assert code == 130, err[-3000:]
    assert "stopped by SIGINT" in err
    run = tmp_path / "runs" / recipe.stem / "version_0"
    assert (run / "checkpoints" / "on_exception.ckpt").is_file() and not (run / ".zoo.lock").exists()


def test_a_full_disk_names_the_checkpoint_and_leaves_no_partial_file(tmp_path):
    import errno
    from types import SimpleNamespace

    from zoo.callbacks.checkpointing import write_checkpoint
    from zoo.errors import CheckpointError

    def half_then_full(path, weights_only=False):
        Path(path).write_bytes(b"PK\x03\x04 half a checkpoint")
        raise OSError(errno.ENOSPC, "No space left on device", "/tmp/tmpab12cd")

    target = tmp_path / "checkpoints" / "on_exception.ckpt"
    trainer = SimpleNamespace(is_global_zero=True, save_checkpoint=half_then_full)
    with pytest.raises(CheckpointError, match=r"cannot write checkpoint \S*checkpoints/on_exception\.ckpt: No space"):
        write_checkpoint(trainer, target)
    assert list((tmp_path / "checkpoints").iterdir()) == []  # neither the file nor its temporary


def test_more_loader_workers_than_cores_is_said(tmp_path, capsys, monkeypatch):
    monkeypatch.chdir(tmp_path)
    monkeypatch.setattr(os, "cpu_count", lambda: 2)
    recipe = write_recipe(tmp_path, "image")
    # said when the classes are built; the bad max_epochs then stops the fit before 64 loader processes start
    assert main(["fit", "--config", str(recipe), "--data.init_args.num_workers", "64", "--trainer.max_epochs",
                 "-5"]) == 2
    assert "data.num_workers 64 is more than this machine's 2 CPU cores" in capsys.readouterr().err
