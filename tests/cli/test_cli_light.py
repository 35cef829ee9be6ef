"""`zoo --help`, `zoo list` and argument errors answer without the training stack: importing torch and Lightning
takes seconds, too long to wait for a typo to be named."""

import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from zoo.cli import COMMANDS, main
from zoo.cli.fast_args import precheck
from zoo.cli.fast_args import read_index as read_args_index
from zoo.cli.listing import list_recipes, live_index, read_index

REPO = Path(__file__).resolve().parents[2]
HEAVY = ("torch", "lightning", "transformers", "matplotlib", "scipy", "torchmetrics")


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_registry_index_matches_the_live_registries():
    # in a fresh interpreter: other tests register throw-away entries in this one
    code = "import json; from zoo.cli.listing import live_index; print(json.dumps(live_index()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_index() == json.loads(proc.stdout), "run `python -m zoo.cli.listing --write-index`"


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--help"], ["--version"], ["list", "models"], ["list", "recipes"],
                                  ["list", "callbacks", "f*"], ["fitt"], ["fit", "--trainer.max_epohcs", "3"],
                                  ["test", "--config", "recipes/vision/digits.yaml", "--ckpt_pth", "x"], ["fit"]])
def test_light_commands_import_no_heavy_module(argv):
    code = (f"import sys; from zoo.cli import main; rc = main({argv!r}); "
            f"print('HEAVY=' + ','.join(m for m in {HEAVY!r} if m in sys.modules)); sys.exit(rc)")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=60, cwd=REPO)
    assert "HEAVY=\n" in proc.stdout or proc.stdout.rstrip().endswith("HEAVY="), proc.stdout + proc.stderr
    assert proc.returncode == (0 if argv[0].startswith("-") or argv[0] == "list" else 2), proc.stderr


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


def test_list_families_prints_zoos_export_families_and_not_a_plugins(capsys):
    import tests.export.toy_family  # noqa: F401  (registers a family from outside zoo in this process)
    from zoo.inference import FAMILIES

    assert main(["list", "families"]) == 0
    names = [line.split()[0] for line in capsys.readouterr().out.splitlines()]
    assert names == [r["name"] for r in live_index()["families"]]
    assert set(names) == {n for n in FAMILIES if FAMILIES.get(n).__module__.startswith("zoo.")} != set(FAMILIES)


@pytest.mark.subprocess
@pytest.mark.parametrize("argv", [["--help"], ["list", "models"]])
def test_a_closed_stdout_pipe_ends_quietly(argv):
    """`zoo --help | head -1`: the reader may be gone before zoo writes; no BrokenPipeError traceback."""
    import os
    from pathlib import Path

    read, write = os.pipe()
    os.close(read)  # the reader has already gone: every write fails, not only a late one
    try:
        proc = subprocess.run([sys.executable, "-m", "zoo.cli", *argv], stdout=write, stderr=subprocess.PIPE, text=True,
                              timeout=60, env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])})
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
    doc = (Path(__file__).resolve().parents[2] / "docs/recsys.md").read_text(encoding="utf-8")
    [shown] = [line.split("#", 1)[1] for line in doc.splitlines() if line.startswith("zoo list models recsys")]
    assert [name.strip() for name in shown.split(",")] == recsys
    assert _listed(capsys, "models", "most") == ["most_popular"] == _listed(capsys, "models", "most*")
    assert _listed(capsys, "models", "Vision") == ["image_classifier"]  # backbones say vision, models image
    assert "resnet18" in _listed(capsys, "backbones", "image")
    assert _listed(capsys, "callbacks", "f*") == ["fgm", "freelb"]
    recipes = _listed(capsys, "recipes", "recsys")
    assert recipes and all(r.startswith("recipes/recsys/") for r in recipes)


@pytest.mark.parametrize(("argv", "expected"), [
    (["models", "nothing"], "zoo: error: no model matches 'nothing'; known: bpr, crf_tagger, fasttext, "),
    (["callbacks", "zz*"], "zoo: error: no callback matches 'zz*'; known: adversarial_evaluation, "),
    (["recipes", "nothing"], "zoo: error: no recipe matches 'nothing'; folders: recipes/overlays, "),
])
def test_list_with_nothing_matching_says_so_and_what_there_is(capsys, argv, expected):
    assert main(["list", *argv]) == 2
    captured = capsys.readouterr()
    assert captured.out == "" and captured.err.startswith(expected) and captured.err.count("\n") == 1


# -- the pre-check of fit/validate/test/predict flags (zoo.cli.fast_args) ------------------------------------------

@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_args_index_matches_the_live_parser():
    code = "import json; from zoo.cli.args_index import live_index; print(json.dumps(live_index()))"
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-2000:]
    assert read_args_index() == json.loads(proc.stdout), "run `python -m zoo.cli.listing --write-index`"


DIGITS = str(REPO / "recipes/vision/digits.yaml")
#: command lines the pre-check refuses; the full parser must refuse each in the same words
REFUSED = [
    ["fit", "--config", DIGITS, "--trainer.max_epohcs", "3"],
    ["fit", "--trainer.max_epohcs", "3", "--config", DIGITS, "--foo", "1"],
    ["fit", "--config", DIGITS, "--trainer.max_epoch", "3"],
    ["fit", "--config", DIGITS, "--epochs", "3"],  # no close match: jsonargparse's words only
    ["fit", "--config", DIGITS, "--trainer.max_epochs", "2", "--max_epochs", "3"],
    ["fit", "--config", DIGITS, "--model.init_args.lr", "0.1", "--trainer.callbacks+=EarlyStopping",
     "--trainer.callbacks.monitor", "val/loss", "--allow_untrained", "--seedd", "1"],
    ["test", "--config", DIGITS, "--foo=3", "--bar", "1", "2"],
    ["validate", "--config", DIGITS, "--ckpt_pth", "x.ckpt"],
    ["predict", "--config", DIGITS, "--outptu", "p.csv", "--ckpt_path", "x.ckpt"],
    ["predict", "--config", DIGITS, "--optimizer", "Adam"],
    ["fit", "--config", DIGITS, "recipes/vision/digits.yaml"],  # a second recipe without --config
    ["fit", "--config", "nowhere.yaml", "--trainer.max_epohcs", "3"],  # the missing file is named first
]

_COMPARE = """
import contextlib, io, json, sys
from zoo.cli import main
def run(fn, argv):
    out, err = io.StringIO(), io.StringIO()
    with contextlib.redirect_stderr(err), contextlib.redirect_stdout(out):
        try:
            code = fn(argv)
        except SystemExit as exit_:
            code = exit_.code
    return code, err.getvalue(), out.getvalue()
cases = json.loads(sys.argv[1])
fast = [run(main, argv) for argv in cases]
heavy = [m for m in ("torch", "lightning") if m in sys.modules]
from zoo.cli.lightning import run as full_run
full = [run(full_run, argv) for argv in cases]
print(json.dumps({"fast": fast, "full": full, "heavy": heavy, "help": run(main, ["fit", "--help"])}))
"""


@pytest.mark.subprocess
@pytest.mark.timeout(600)
def test_precheck_refuses_in_the_full_parsers_words(tmp_path):
    """Fast and full answers in one interpreter (the same prog name); the full parser after the pre-check has
    answered every case without importing torch."""
    proc = subprocess.run([sys.executable, "-c", _COMPARE, json.dumps(REFUSED)], capture_output=True, text=True,
                          timeout=300, cwd=tmp_path, env={**os.environ, "PYTHONPATH": str(REPO)})
    assert proc.returncode == 0, proc.stderr[-3000:]
    result = json.loads(proc.stdout)
    assert result["heavy"] == []
    for argv, (fast_code, fast_err, _), (full_code, full_err, _) in zip(REFUSED, result["fast"], result["full"]):
        assert (fast_code, fast_err) == (2, full_err) and full_code == 2, argv
    code, _, out = result["help"]  # `zoo fit --help` still reaches the full parser
    assert code == 0 and "--trainer.max_epochs" in out
    assert not list(tmp_path.iterdir())  # no run directory from a refused command


def test_no_recipe_says_what_is_expected(capsys):
    assert main(["fit", "--trainer.max_epochs", "3"]) == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error: no recipe: `zoo fit` needs --config RECIPE.yaml") and err.count("\n") == 1


@pytest.mark.parametrize("args", [
    ["--trainer.max_epochs", "1", "--trainer.callbacks+=EarlyStopping", "--trainer.callbacks.monitor", "val/loss",
     "--trainer.callbacks+", "ModelCheckpoint", "--seed_everything", "1", "--resume", "auto"],
    ["--trainer.precision=bf16-mixed", "--trainer.accelerator", "cpu", "--trainer.devices", "1",
     "--trainer.logger.class_path", "CSVLogger", "--trainer.logger.init_args.save_dir", "x",
     "--trainer.limit_train_batches", "-1", "--trainer.max_time", "00:00:05:00", "--trainer.fast_dev_run", "true"],
    ["--ckpt_path", "runs/x/version_0/checkpoints/best.ckpt", "--weights_only", "true", "--calibration", "none",
     "--card", "{summary: x}", "--target_accuracy", "0.98"],
    ["--allow_untrained", "--output", "p.csv", "--coverage", "0.9", "--no_allow_untrained"],
    ["--model.init_args.lr", "0.1", "--model.init_args.scheduler=cosine", "--data.init_args.batch_size", "8",
     "--model", "image_classifier", "--data.class_path", "image", "--trainer", "t.yaml", "--unknown.dotted", "1"],
    ["--help"], ["-h"], ["--print_config"], ["--model.help", "image_classifier"], ["--trainer.max_epohcs", "--"],
])
@pytest.mark.parametrize("command", ["fit", "validate", "test", "predict"])
def test_precheck_passes_every_shipped_recipe_with_its_usual_flags(command, args):
    """The pre-check never refuses what the full parser takes: it leaves each of these to it (None)."""
    recipes = [str(REPO / r) for r in list_recipes() if not r.startswith("recipes/overlays/")]
    assert len(recipes) > 10
    for recipe in recipes:
        assert precheck([command, "--config", recipe, *args]) is None, recipe
    assert precheck([command, "--model", "image_classifier", "--data", "image"]) is None
