"""Every shipped recipe parses, and fast-dev-runs one batch of fit through the real CLI (in-process).

A recipe whose full data or model is too big for a test names CLI overrides on a line
``# zoo-test-overrides: ...`` (e.g. a built-in synthetic dataset instead of Fashion-MNIST).
"""

import shlex
from pathlib import Path

import pytest

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


@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: str(p.relative_to(ROOT / "recipes")))
def test_recipe_fast_dev_run(recipe, tmp_path, capsys):
    main(["fit", "--config", str(recipe), *overrides(recipe), "--trainer.fast_dev_run", "1",
          "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
          "--trainer.default_root_dir", str(tmp_path)])
    with pytest.raises(SystemExit) as exc:
        main(["fit", "--config", str(recipe), "--print_config"])
    assert exc.value.code == 0
    printed = capsys.readouterr().out
    assert "model:" in printed and "class_path:" in printed
