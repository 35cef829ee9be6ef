"""The command line refuses what it used to guess: Lightning's own checkpoint load is told ``weights_only=True``
by every Lightning command, and a flag cut short is a typo, not an abbreviation, in every command.

The malicious-pickle and abbreviated-flag rows of the error catalogue are in tests/test_bad_inputs.py."""

from __future__ import annotations

import shutil
import sys
from pathlib import Path

import pytest
import torch

from tests.test_bad_inputs import FIXTURES, SHAPES
from zoo.cli import main

# fit: one more step than the checkpoint holds, so Lightning restores it and trains from there; the last case is the
# config.yaml of a run made before this default (weights_only: null), given again
CASES = {"fit": ["--trainer.max_steps", "3"], "validate": [], "test": [], "predict": [],
         "test-old-config": ["--weights_only", "null"]}


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
    assert main([command, "--config", "shapes.yaml", "--ckpt_path", str(ckpt), "--output", "p.csv", *CASES[case]]) == 0, \
        capsys.readouterr().err[-3000:]
    assert calls and all(c is True for c in calls), calls


LIGHT_TYPOS = {  # each flag is the start of a real one, which argparse would take for it by default
    "ensemble": ["--run", "a", "b", "--out", "e"],
    "export": ["run", "--format", "onnx", "--out", "x", "--sample", "3"],
    "serve": ["x", "--por", "8000"],
    "card": ["run", "--nam", "m"],
    "tune": ["--conf", "r.yaml", "--search", "s.yaml", "--n-trial", "3"],
    "list": ["models", "--hel"],
}


@pytest.mark.parametrize("command", sorted(LIGHT_TYPOS))
def test_light_commands_refuse_a_flag_cut_short(command, tmp_path, monkeypatch, capsys):
    monkeypatch.chdir(tmp_path)
    argv = [command, *LIGHT_TYPOS[command]]
    with pytest.raises(SystemExit) as stop:
        main(argv)
    err = capsys.readouterr().err
    assert stop.value.code == 2
    typo = next(a for a in argv if a.startswith("--") and a not in ("--out", "--search", "--format"))
    assert f"zoo {command}: error: unrecognized arguments: {typo}" in err, err
    assert "Traceback" not in err
    assert list(tmp_path.iterdir()) == []
