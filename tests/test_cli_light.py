"""`zoo --help`, `zoo list` and argument errors answer without the training stack (issue 15, point 16)."""

import json
import subprocess
import sys

import pytest

from zoo.cli import COMMANDS, main
from zoo.cli.listing import live_index, read_index

HEAVY = ("torch", "lightning", "transformers", "matplotlib", "scipy", "torchmetrics")


def test_registry_index_matches_the_live_registries():
    # in a fresh interpreter: other tests register throw-away entries in this one
    code = "import json; from zoo.cli.listing import live_index; print(json.dumps(live_index()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_index() == json.loads(proc.stdout), "run `python -m zoo.cli.listing --write-index`"


@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list", "models"], ["list", "recipes"],
                                  ["list", "callbacks", "f*"], ["fitt"]])
def test_light_commands_import_no_heavy_module(argv):
    code = (f"import sys; from zoo.cli import main; rc = main({argv!r}); "
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60)
    assert "HEAVY=\n" in proc.stdout or proc.stdout.rstrip().endswith("HEAVY="), proc.stdout + proc.stderr
    assert proc.returncode == (2 if argv == ["fitt"] else 0), proc.stderr


def test_unknown_command_is_one_line_with_close_matches(capsys):
    assert main(["fitt"]) == 2
    err = capsys.readouterr().err.strip()
    assert err.count("\n") == 0 and "'fitt'" in err and "fit" in err


def test_help_lists_every_command(capsys):
    assert main(["--help"]) == 0
    out = capsys.readouterr().out
    assert all(f"  {name} " in out for name in COMMANDS)


def test_list_models_prints_every_registered_model(capsys):
    assert main(["list", "models"]) == 0
    out = capsys.readouterr().out
    assert [line.split()[0] for line in out.splitlines()] == [r["name"] for r in live_index()["models"]]
