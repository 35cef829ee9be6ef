"""Every shipped recipe parses, and fast-dev-runs one batch of fit through the real CLI (in-process).

A recipe whose full data or model is too big for a test names CLI overrides on a line
``# zoo-test-overrides: ...`` (e.g. a built-in synthetic dataset instead of Fashion-MNIST).
"""

import shlex
from pathlib import Path

import pytest
import yaml

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]
# recipes/search/ holds zoo tune search spaces, not recipes (loaded by tests/tune/test_tune.py)
RECIPES = sorted(p for p in (ROOT / "recipes").rglob("*.yaml")
                 if not {"overlays", "search"} & set(p.parts) and p.name != "results.yaml")


def overrides(path: Path) -> list[str]:
    for line in path.read_text().splitlines():
        if line.startswith("# zoo-test-overrides:"):
            return shlex.split(line.split(":", 1)[1])
    return []


def test_recipes_exist():
    assert any(p.parent.name == "vision" for p in RECIPES)


def fast_dev_run(recipe: Path, root: Path, capsys) -> None:
    """The recipe check: one batch of `zoo fit` through the CLI in this process, which must exit 0. ``main``
    returns 2 on a ZooError or OSError (a missing file, a wrong data class) instead of raising, so the exit code
    is the only sign that the recipe failed."""
    rc = main(["fit", "--config", str(recipe), *overrides(recipe), "--trainer.fast_dev_run", "1",
               "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
               "--trainer.default_root_dir", str(root)])
    err = capsys.readouterr().err
    assert rc == 0, f"zoo fit --config {recipe} exited {rc}:\n{err[-3000:]}"


# the seconds-fast digits_tiny stays in the fast lane (`make test-fast`); each other recipe takes seconds to load
@pytest.mark.parametrize("recipe", [pytest.param(p, marks=() if p.name == "digits_tiny.yaml" else pytest.mark.slow)
                                    for p in RECIPES], ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_fast_dev_run(recipe, tmp_path, capsys):
    fast_dev_run(recipe, tmp_path, capsys)
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "model:" in printed and "class_path:" in printed


def test_a_recipe_with_a_broken_data_path_fails_the_recipe_check(tmp_path, capsys):
    """The check above can fail: a copy of a shipped recipe reading images from a folder that is not there exits
    2 naming the folder, and the check turns that into a failed test."""
    recipe = yaml.safe_load((ROOT / "recipes" / "vision" / "digits_tiny.yaml").read_text(encoding="utf-8"))
    missing = tmp_path / "no_such_images"
    recipe["data"]["init_args"].update(dataset=None, folder=str(missing))
    broken = tmp_path / "digits_tiny.yaml"
    broken.write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with pytest.raises(AssertionError, match=r"exited 2") as failed:
        fast_dev_run(broken, tmp_path / "runs", capsys)
    assert str(missing) in str(failed.value)
    assert not list((tmp_path / "runs").rglob("*.ckpt"))


def test_every_recipe_longer_than_three_epochs_states_its_early_stopping_patience():
    for path in RECIPES:
        trainer = yaml.safe_load(path.read_text(encoding="utf-8")).get("trainer") or {}
        if (trainer.get("max_epochs") or 0) <= 3:
            continue
        stops = [c for c in trainer.get("callbacks") or [] if "arly" in str(c.get("class_path"))]
        assert stops and all("patience" in (c.get("init_args") or {}) for c in stops), path
