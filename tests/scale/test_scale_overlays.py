"""Every overlay under recipes/overlays parses on top of every recipe family, and the scale checks stop bad
precision / strategy choices with a message naming the overlay."""

from __future__ import annotations

import contextlib
import io
from pathlib import Path

import pytest
import yaml

from zoo.cli import main
from zoo.scale import ScaleConfigError, check_precision, check_strategy

REPO = Path(__file__).resolve().parents[2]
OVERLAYS = sorted((REPO / "recipes" / "overlays").rglob("*.yaml"))
RECIPES = sorted(p for p in (REPO / "recipes").rglob("*.yaml")  # search/: zoo tune spaces, not recipes
                 if not {"overlays", "search"} & set(p.relative_to(REPO / "recipes").parts)
                 and p.name != "results.yaml")


def _one_recipe_per_family() -> list[Path]:
    families: dict[str, Path] = {}
    for path in RECIPES:
        families.setdefault(path.parent.name, path)
    return list(families.values())


FAMILIES = _one_recipe_per_family()


def test_overlays_exist():
    names = {str(p.relative_to(REPO / "recipes" / "overlays")) for p in OVERLAYS}
    expected = {f"precision/{p}.yaml" for p in ("32", "bf16-mixed", "16-mixed")}
    expected |= {f"strategy/{s}.yaml" for s in ("ddp", "ddp_spawn", "fsdp", "deepspeed_zero2", "deepspeed_zero3",
                                                        "torchrec")}
    expected |= {"accumulate.yaml", "compile.yaml"} | {f"logger/{x}.yaml" for x in ("csv", "tensorboard", "wandb")}
    assert expected <= names, sorted(expected - names)
    assert FAMILIES, "no recipes found"


def _print_config(*configs: Path) -> dict:
    argv = ["fit"]
    for c in configs:
        argv += ["--config", str(c)]
    out = io.StringIO()
    with contextlib.redirect_stdout(out), pytest.raises(SystemExit) as exit_info:
        main(argv + ["--print_config"])
    assert exit_info.value.code in (0, None), out.getvalue()
    return yaml.safe_load(out.getvalue())


@pytest.mark.parametrize("recipe", FAMILIES, ids=lambda p: p.parent.name)
@pytest.mark.parametrize("overlay", OVERLAYS, ids=lambda p: str(p.relative_to(REPO / "recipes" / "overlays")))
def test_overlay_combines_with_recipe(recipe, overlay):
    merged = _print_config(recipe, overlay)
    wanted = yaml.safe_load(overlay.read_text())["trainer"]
    trainer = merged["trainer"]
    for key, value in wanted.items():
        if key == "callbacks+":
            paths = [c["class_path"] for c in trainer["callbacks"]]
            assert all(c["class_path"] in paths for c in value), paths
        elif isinstance(value, dict) and "class_path" in value:
            assert trainer[key]["class_path"] == value["class_path"]
        elif key != "devices":
            assert str(trainer[key]) == str(value), (key, trainer[key])
    # the recipe's own settings survive the overlay
    assert merged["model"]["class_path"] and merged["data"]["class_path"]


def test_precision_and_strategy_overlays_stack():
    recipe = FAMILIES[0]
    over = REPO / "recipes" / "overlays"
    merged = _print_config(recipe, over / "precision/bf16-mixed.yaml", over / "strategy/ddp.yaml",
                           over / "accumulate.yaml")
    assert merged["trainer"]["precision"] == "bf16-mixed"
    assert merged["trainer"]["strategy"] == "ddp"
    assert merged["trainer"]["accumulate_grad_batches"] == 4


def test_fp16_on_cpu_names_the_overlay_and_the_hardware():
    with pytest.raises(ScaleConfigError, match=r"precision/16-mixed.yaml\) needs a CUDA GPU.*bf16-mixed.yaml"):
        check_precision("16-mixed", "cpu")
    check_precision("bf16-mixed", "cpu")
    check_precision("32", "cpu")
    check_precision(None, "cpu")


def test_fp16_overlay_on_cpu_stops_the_cli_before_training(capsys):
    recipe = REPO / "recipes" / "vision" / "digits.yaml"
    overlay = REPO / "recipes" / "overlays" / "precision" / "16-mixed.yaml"
    code = main(["fit", "--config", str(recipe), "--config", str(overlay), "--trainer.accelerator", "cpu",
                 "--trainer.fast_dev_run", "1"])
    assert code == 2
    err = capsys.readouterr().err
    assert err.startswith("zoo: error:") and "16-mixed.yaml" in err and "Traceback" not in err
    assert not Path("runs").exists() or not any(Path("runs").rglob("*.ckpt"))


def test_deepspeed_overlay_without_deepspeed_says_how_to_install(monkeypatch):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    for stage in ("2", "3"):
        with pytest.raises(ScaleConfigError, match=rf"deepspeed_zero{stage}.yaml.*zoo\[deepspeed\]"):
            check_strategy(f"deepspeed_stage_{stage}")
    check_strategy("ddp")
    check_strategy(None)
    with pytest.raises(ScaleConfigError, match="sync_batchnorm=true needs GPUs"):
        check_strategy("ddp", "cpu", sync_batchnorm=True)


def test_deepspeed_overlay_stops_the_cli(monkeypatch, capsys):
    import importlib.util

    real = importlib.util.find_spec
    monkeypatch.setattr(importlib.util, "find_spec", lambda name, *a: None if name == "deepspeed" else real(name, *a))
    recipe = REPO / "recipes" / "vision" / "digits.yaml"
    overlay = REPO / "recipes" / "overlays" / "strategy" / "deepspeed_zero2.yaml"
    assert main(["fit", "--config", str(recipe), "--config", str(overlay), "--trainer.fast_dev_run", "1"]) == 2
    assert "pip install 'zoo[deepspeed]'" in capsys.readouterr().err
