"""Lightning's own read of a checkpoint (``--ckpt_path``) is told ``weights_only=True`` by every Lightning command,
also when an old run's config.yaml says ``weights_only: null``: a checkpoint is data, not code to run.

The malicious-pickle row of the error catalogue is in tests/cli/test_bad_inputs.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.cli.test_bad_inputs import FIXTURES, SHAPES
from zoo.cli import main

# fit: one more step than the checkpoint holds, so Lightning restores it and trains from there; the last case is the
# config.yaml of a run made before this default (weights_only: null), given again
CASES = {"fit": ["--trainer.max_steps", "3"], "validate": [], "test": [], "predict": [],
         "test-old-config": ["--weights_only", "null"]}


@pytest.mark.slow
@pytest.mark.parametrize("case", list(CASES))
def test_lightning_reads_the_checkpoint_with_weights_only_true(case, tmp_path, monkeypatch, capsys):
    ckpt = Path(shutil.copy(FIXTURES / "image_classifier.ckpt", tmp_path / "model.ckpt"))
    (tmp_path / "shapes.yaml").write_text(SHAPES)
    monkeypatch.chdir(tmp_path)
    real_load, calls = torch.load, []

    def load(*args, **kwargs):
        caller = sys._getframe(1).f_code.co_filename
        if "lightning" in caller:  # Lightning's own read of --ckpt_path, not zoo's check before it
            calls.append(kwargs.get("weights_only", "not given"))
        return real_load(*args, **kwargs)

    monkeypatch.setattr(torch, "load", load)
    command = case.split("-")[0]
    assert main([command, "--config", "shapes.yaml", "--ckpt_path", str(ckpt), "--output", "p.csv",
                 *CASES[case]]) == 0, \
        capsys.readouterr().err[-3000:]
    assert calls and all(c is True for c in calls), calls
