"""The `zoo test` command that the most_popular recipe and docs/recsys.md print runs as written, and the baseline
is not compared with itself."""

from __future__ import annotations

from pathlib import Path

import pytest

from zoo.cli import main

ROOT = Path(__file__).resolve().parents[2]


@pytest.mark.slow
def test_the_documented_most_popular_test_command_works_and_does_not_compare_it_with_itself(capsys):
    command = "zoo test --config recipes/recsys/most_popular_ml100k.yaml --allow_untrained true"
    for where in ("recipes/recsys/most_popular_ml100k.yaml", "docs/recsys.md"):
        assert command in (ROOT / where).read_text(encoding="utf-8").replace("\n# ", " "), where
    Path("recipes").symlink_to(ROOT / "recipes")  # run it as written, from a folder with the recipes
    assert main([*command.split()[1:], "--trainer.enable_progress_bar", "false"]) == 0
    err = capsys.readouterr().err
    assert err.count("zoo: baseline: skipped, MostPopular is itself the baseline") == 1
    assert "does not beat the baseline" not in err
    [run] = Path("runs/most_popular_ml100k").iterdir()
    assert (run / "recsys_test_report.txt").is_file() and not list(run.rglob("baseline.json"))
