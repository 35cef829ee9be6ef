"""``zoo card``: every section, Hugging Face metadata + model-index; recipes/results.yaml and the recipe time budget
(a user should know how long a recipe trains before starting it)."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import yaml

from zoo.cli import main
from zoo.reporting.card import SECTIONS

ROOT = Path(__file__).resolve().parents[2]
RECIPES = sorted(p.relative_to(ROOT / "recipes").as_posix() for p in (ROOT / "recipes").rglob("*.yaml")
                 if not {"overlays", "search"} & set(p.parts) and p.name != "results.yaml")  # search: tune spaces


def fake_run(root: Path) -> Path:
    """The files ``zoo fit`` + ``zoo test`` leave in a run directory (test outputs in its test/ folder)."""
    run = root / "runs" / "bbc_news_lora" / "version_0"
    test = run / "test"
    test.mkdir(parents=True)
    (run / "config.yaml").write_text(yaml.safe_dump({
        "seed_everything": 42, "trainer": {"max_epochs": 3, "precision": "bf16-mixed"},
        "model": {"class_path": "zoo.tasks.text.TextClassifier", "init_args": {"encoder": "minilm", "lr": 0.001}},
        "data": {"class_path": "zoo.data.text.TextDataModule", "init_args": {"dataset": "bbc_news"}},
        "card": {"intended_use": "routing English news articles", "limitations": ["English only", "5 topics"]}}))
    (run / "training_summary.json").write_text(json.dumps({"epochs": 3, "steps": 150, "minutes": 12.5}))
    (test / "test_metrics.json").write_text(json.dumps({"test/acc": 0.97, "test/f1_macro": 0.968,
                                                        "test/robust_acc": 0.61, "test/loss": 0.1}))
    (test / "classification_report.json").write_text(json.dumps({"classes": {
        "sport": {"precision": 1.0, "recall": 0.99, "f1": 0.995, "support": 100},
        "tech": {"precision": 0.95, "recall": 0.96, "f1": 0.955, "support": 80}}}))
    (test / "data_summary.json").write_text(json.dumps({"sizes": {"train": 1557, "val": 223, "test": 445},
                                                        "label_distribution": {"sport": 400, "tech": 300},
                                                        "truncated": {"train": 812}, "unknown_token_rate": 0.0004}))
    (test / "trust.json").write_text(json.dumps({
        "calibration": {"temperature": [1.4], "ece_before": 0.05, "ece_after": 0.02, "nll_before": 0.2,
                        "nll_after": 0.15},
        "conformal": [{"method": "lac", "target": 0.9, "coverage": 0.91, "mean_set_size": 1.1, "short": False,
                       "bound": 0.03, "per_class": {}}],
        "selective": {"aurc": 0.01, "accuracy": 0.97, "statement": "answer 90 % of inputs automatically"}}))
    (test / "baseline.json").write_text(json.dumps({
        "reference": "TF-IDF + LR", "seconds": 1.0, "headline": "f1_macro", "margin": 0.01, "beats": False,
        "causes": ["too few epochs"], "unknown_token_rate": 0.0004,
        "rows": [{"metric": "f1_macro", "model": 0.968, "reference": 0.975, "difference": -0.007}]}))
    (run / "export_verification.json").write_text(json.dumps({"onnx": "max abs diff 2e-6"}))
    return run


def test_zoo_card_has_every_section_and_parses_as_a_hugging_face_card(tmp_path):
    from huggingface_hub import ModelCard

    run = fake_run(tmp_path)
    assert main(["card", str(run)]) == 0
    text = (run / "MODEL_CARD.md").read_text()
    for section in SECTIONS:
        assert f"\n## {section}\n" in text, section
    card = ModelCard.load(run / "MODEL_CARD.md")
    results = {r.metric_name: r.metric_value for r in card.data.eval_results}
    assert results == {"test/acc": 0.97, "test/f1_macro": 0.968, "test/robust_acc": 0.61}
    assert card.data.eval_results[0].task_type == "text-classification"
    assert card.data.eval_results[0].dataset_name == "bbc_news" and card.data.model_name == "bbc_news_lora"
    for fact in ("routing English news articles", "- English only", "| sport |", "0.0500", "does not beat",
                 "test/robust_acc", "812", "max abs diff", "answer 90 %", "12.5 min"):
        assert fact in text, fact


def test_zoo_card_takes_a_card_file_and_names_bad_input(tmp_path, capsys):
    run = fake_run(tmp_path)
    extra = tmp_path / "card.yaml"
    extra.write_text("limitations: only tested on news\nlicense: mit\n")
    assert main(["card", str(run), "--card", str(extra)]) == 0
    text = (run / "MODEL_CARD.md").read_text()
    assert "only tested on news" in text and "license: mit" in text
    assert main(["card", str(tmp_path / "nope")]) == 2
    assert "RUN_DIR" in capsys.readouterr().err
    extra.write_text("- a list\n")
    assert main(["card", str(run), "--card", str(extra)]) == 2
    assert "must be a YAML mapping" in capsys.readouterr().err


# -- results travel with the recipes ------------------------------------------------------------------------------
def test_every_recipe_states_its_metric_and_time_and_long_ones_cap_it():
    from zoo.cli.results import LONG_MINUTES

    results = yaml.safe_load((ROOT / "recipes/results.yaml").read_text())["recipes"]
    assert sorted(results) == RECIPES
    for recipe, entry in results.items():
        assert entry["metric"].startswith("test/") and entry["cpu_minutes"] > 0, recipe
        trainer = yaml.safe_load((ROOT / "recipes" / recipe).read_text()).get("trainer") or {}
        if entry["cpu_minutes"] > LONG_MINUTES:
            assert trainer.get("max_time"), f"{recipe} is stated at {entry['cpu_minutes']} min: set trainer.max_time"
    doc = (ROOT / "docs/results.md").read_text()
    assert all(f"`{r}`" in doc for r in RECIPES) and "Machine:" in doc


def test_a_long_recipe_says_how_long_it_trains(capsys):
    from zoo.cli.results import recipe_time_line

    line = recipe_time_line(ROOT / "recipes/vision/fashion_mnist_resnet18.yaml", "00:04:00:00")
    assert line.startswith("this recipe trains for about ") and " CPU-minutes (" in line and " on 2 CPU cores" in line
    # it was measured with the bf16 overlay (recipes/results.yaml overlays:), so its time holds with that overlay
    assert "with recipes/overlays/precision/bf16-mixed.yaml" in line
    assert recipe_time_line(ROOT / "recipes/vision/digits_tiny.yaml") is None
    assert recipe_time_line("/elsewhere/my_recipe.yaml") is None


def test_verify_recipes_retrains_only_what_fits_the_budget(capsys):
    import importlib.util

    spec = importlib.util.spec_from_file_location("verify_recipes", ROOT / "scripts/verify_recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.main(["--budget", "0"]) == 0  # nothing fits a 0-minute budget: nothing retrained, nothing failed
    out = capsys.readouterr().out
    assert "not retrained" in out and "vision/digits.yaml" in out and "==" not in out


def test_verify_recipes_trains_with_the_overlays_an_entry_was_measured_with(tmp_path):
    import importlib.util

    spec = importlib.util.spec_from_file_location("verify_recipes", ROOT / "scripts/verify_recipes.py")
    mod = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(mod)
    assert mod.overlay_args({"metric": "test/acc"}) == []
    args = mod.overlay_args({"overlays": ["precision/bf16-mixed.yaml"]})
    assert args == ["--config", str(ROOT / "recipes/overlays/precision/bf16-mixed.yaml")]
    with pytest.raises(SystemExit, match="overlay 'precision/bf17.yaml' is not a file under recipes/overlays/"):
        mod.overlay_args({"overlays": ["precision/bf17.yaml"]})
    data = {"machine": "m", "versions": "v", "recipes": {
        "vision/a.yaml": {"metric": "test/acc", "value": 0.9, "cpu_minutes": 30,
                          "overlays": ["precision/bf16-mixed.yaml"]},
        "vision/b.yaml": {"metric": "test/acc", "value": 0.8, "cpu_minutes": 1}}}
    mod.write_doc(data, tmp_path / "results.md")
    doc = (tmp_path / "results.md").read_text()
    assert "| `vision/a.yaml` + `overlays/precision/bf16-mixed.yaml` | test/acc | 0.9000 |" in doc
    assert "| `vision/b.yaml` | test/acc | 0.8000 |" in doc
