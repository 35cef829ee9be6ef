"""`zoo fit` of a long recipe says how long it trains (recipes/results.yaml), except in a fast dev run."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_recipe_time_line_is_not_printed_for_a_fast_dev_run(tmp_path, capsys):
    (tmp_path / "recipes/vision").mkdir(parents=True)
    (tmp_path / "recipes/vision/long.yaml").write_text((ROOT / "recipes/vision/digits_tiny.yaml").read_text())
    (tmp_path / "recipes/results.yaml").write_text("machine: 2 CPU cores\n"
                                                   "recipes:\n  vision/long.yaml: {cpu_minutes: 50}\n")
    common = ["fit", "--config", "recipes/vision/long.yaml", "--trainer.enable_progress_bar", "false"]
    assert main([*common, "--trainer.max_epochs", "1", "--trainer.limit_train_batches", "1"]) == 0
    assert "zoo: this recipe trains for about 50 CPU-minutes on 2 CPU cores" in capsys.readouterr().err
    assert main([*common, "--trainer.fast_dev_run", "true"]) == 0
    assert "trains for about" not in capsys.readouterr().err
