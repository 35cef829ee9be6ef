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


@pytest.mark.parametrize("argv", [["--help"], ["list", "models"]])
def test_a_closed_stdout_pipe_ends_quietly(argv):
    """`zoo --help | head -1`: the reader may be gone before zoo writes; no BrokenPipeError traceback."""
    import os
    from pathlib import Path

    read, write = os.pipe()
    os.close(read)  # the reader has already gone: every write fails, not only a late one
    try:
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parent.parent)})
    finally:
        os.close(write)
    assert proc.stderr == "" and proc.returncode == 141


def _listed(capsys, *argv):
    assert main(["list", *argv]) == 0
    return [line.split()[0] for line in capsys.readouterr().out.splitlines()]


def test_list_pattern_is_a_task_family_a_piece_of_the_name_or_a_glob(capsys):
    from pathlib import Path

    recsys = [r["name"] for r in live_index()["models"] if "recsys" in r["tags"]]
    assert _listed(capsys, "models", "recsys") == recsys and "most_popular" in recsys and "bpr" in recsys
    # what docs/recsys.md shows for it
    doc = (Path(__file__).resolve().parent.parent / "docs/recsys.md").read_text(encoding="utf-8")
    [shown] = [line.split("#", 1)[1] for line in doc.splitlines() if line.startswith("zoo list models recsys")]
    assert [name.strip() for name in shown.split(",")] == recsys
    assert _listed(capsys, "models", "most") == ["most_popular"] == _listed(capsys, "models", "most*")
    assert _listed(capsys, "models", "Vision") == ["image_classifier"]  # backbones say vision, models image
    assert "resnet18" in _listed(capsys, "backbones", "image")
    assert _listed(capsys, "callbacks", "f*") == ["fgm", "freelb"]
    recipes = _listed(capsys, "recipes", "recsys")
    assert recipes and all(r.startswith("recipes/recsys/") for r in recipes)


@pytest.mark.parametrize(("argv", "expected"), [
    (["models", "nothing"], "zoo: error: no model matches 'nothing'; known: bpr, fasttext, "),
    (["callbacks", "zz*"], "zoo: error: no callback matches 'zz*'; known: adversarial_evaluation, "),
    (["recipes", "nothing"], "zoo: error: no recipe matches 'nothing'; folders: recipes/overlays, "),
])
def test_list_with_nothing_matching_says_so_and_what_there_is(capsys, argv, expected):
    assert main(["list", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(expected) and captured.err.count("\n") == 1
