"""A flag cut short is a typo, not an abbreviation, in every light command: argparse would otherwise take
``--por`` for ``--port`` and run with a guess.

The abbreviated-flag row of the error catalogue is in tests/cli/test_bad_inputs.py."""

from __future__ import annotations

import pytest

from zoo.cli import main

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
