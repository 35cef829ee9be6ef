"""``zoo inspect`` and the DataChecks callback: the data report at fit start, label_issues.csv and the
de-duplicated test score at test, on a text set with leaked test rows and 5 % flipped test labels."""

from __future__ import annotations

import csv
import json

import numpy as np
import pytest

from zoo.cli import main


def _corpus(tmp_path, n_train=240, n_test=120, seed=0, flip_train=()):
    """Two topics told apart by their words; test rows 1-6 are copies of train rows, and 6 test labels
    (5 %) are flipped. Returns the files and the ids of the flipped rows."""
    rng = np.random.default_rng(seed)
    vocab = {"a": [f"alpha{i}" for i in range(40)], "b": [f"beta{i}" for i in range(40)]}
    noise = [f"n{i}" for i in range(200)]

    def text(label):
        return " ".join(list(rng.choice(vocab[label], 8)) + list(rng.choice(noise, 8)))

    train = [(text(lab), lab) for lab in rng.choice(["a", "b"], n_train)]
    test = [(text(lab), lab) for lab in rng.choice(["a", "b"], n_test)]
    test[:6] = train[:6]
    flipped = list(range(20, 26))
    for k in flipped:
        test[k] = (test[k][0], "b" if test[k][1] == "a" else "a")
    for k in flip_train:
        train[k] = (train[k][0], "b" if train[k][1] == "a" else "a")
    paths = {}
    for name, rows in (("train", train), ("test", test)):
        paths[name] = tmp_path / f"{name}.csv"
        with open(paths[name], "w", newline="") as fh:
            csv.writer(fh).writerows([("text", "label"), *rows])
    return paths, {f"test.csv:{k + 1}" for k in flipped}


def _recipe(tmp_path, paths):
    recipe = tmp_path / "tiny.yaml"
    recipe.write_text(f"""
model:
  class_path: tfidf
  init_args: {{lr: 0.1}}
data:
  class_path: ngram_text
  init_args: {{train: {paths['train']}, test: {paths['test']}, features: tfidf, max_features: 2000,
              batch_size: 32, val_fraction: 0.15}}
trainer: {{max_epochs: 8, accelerator: cpu, enable_progress_bar: false, enable_model_summary: false}}
""")
    return recipe


def test_inspect_writes_the_data_report_and_answers_bad_flags(tmp_path, capsys):
    paths, _ = _corpus(tmp_path)
    recipe = _recipe(tmp_path, paths)
    assert main(["inspect", "--config", str(recipe), "--out", str(tmp_path / "out"),
                 "--data.init_args.max_features", "500"]) == 0
    err = capsys.readouterr().err
    assert "zoo: data: 6 of 120 test texts (5.0%) also occur in train" in err
    report = json.loads((tmp_path / "out" / "data_report.json").read_text())
    assert sorted(r[0] for r in next(f for f in report["findings"] if f["kind"] == "duplicates_across")["rows"]) \
        == sorted(f"test.csv:{k}" for k in range(1, 7))
    assert "duplicates_across" in (tmp_path / "out" / "data_report.md").read_text()
    assert main(["inspect", "--config", str(recipe), "--trainer.max_epochs", "2"]) == 2
    assert "unknown option --trainer.max_epochs" in capsys.readouterr().err
    assert main(["inspect", "--config", str(tmp_path / "nope.yaml")]) == 2
    assert "nope.yaml: no such file" in capsys.readouterr().err


@pytest.mark.slow
def test_fit_and_test_report_data_label_issues_and_the_deduplicated_score(tmp_path, capsys):
    paths, flipped = _corpus(tmp_path)
    recipe = _recipe(tmp_path, paths)
    assert main(["fit", "--config", str(recipe), "--trainer.default_root_dir", str(tmp_path / "runs")]) == 0
    run = next((tmp_path / "runs").glob("*/version_0"))
    err = capsys.readouterr().err
    assert "zoo: data: 6 of 120 test texts" in err and (run / "data_report.md").is_file()
    config = (run / "config.yaml").read_text()
    assert "dedupe: none" in config and "exclude_rows: null" in config  # recorded in the run's config
    ckpt = run / "checkpoints" / "best.ckpt"
    assert main(["test", "--config", str(recipe), "--ckpt_path", str(ckpt)]) == 0
    err = capsys.readouterr().err
    assert "label issues: cleanlab estimates" in err and "de-duplicated test split (114 of 120 rows" in err
    test_dir = run / "test"
    with open(test_dir / "label_issues.csv") as fh:
        rows = list(csv.DictReader(fh))
    top = [r["row"] for r in rows[:6]]
    assert set(top) <= flipped and len(top) >= 4, rows[:8]  # only flipped labels are flagged, most of them
    dedup = json.loads((test_dir / "test_deduplicated.json").read_text())
    assert dedup["repeating_earlier_splits"] == 6 and set(dedup["baseline"]["deduplicated"]) >= {"acc"}
    # the same ranking from zoo inspect --ckpt_path
    assert main(["inspect", "--config", str(recipe), "--ckpt_path", str(ckpt), "--out", str(tmp_path / "i")]) == 0
    with open(tmp_path / "i" / "label_issues.csv") as fh:
        assert [r["row"] for r in csv.DictReader(fh)][:6] == top
    # accepted label issues dropped at set-up, named in the run's config
    exclude = tmp_path / "accepted.csv"
    exclude.write_text("row\n" + "\n".join(sorted(flipped)) + "\n")
    assert main(["inspect", "--config", str(recipe), "--data.init_args.exclude_rows", str(exclude),
                 "--data.init_args.dedupe", "across", "--out", str(tmp_path / "j")]) == 0
    report = json.loads((tmp_path / "j" / "data_report.json").read_text())
    assert report["settings"]["dropped"] == {"test": 12} and report["findings"] == []


def test_inspect_cross_validate_ranks_flipped_train_labels(tmp_path, capsys):
    flip = range(100, 112)  # 12 of 240 train rows, 5 %
    paths, _ = _corpus(tmp_path, flip_train=flip)
    recipe = _recipe(tmp_path, paths)
    assert main(["inspect", "--config", str(recipe), "--cross-validate", "5", "--out", str(tmp_path / "o"),
                 "--data.init_args.val_fraction", "0.0"]) == 0
    assert "label issues in train (5-fold reference model)" in capsys.readouterr().err
    with open(tmp_path / "o" / "label_issues_train.csv") as fh:
        ranked = [r["row"] for r in csv.DictReader(fh)]
    wrong = {f"train.csv:{k + 1}" for k in flip}
    assert len(set(ranked[:12]) & wrong) >= 10, ranked[:12]
    assert main(["inspect", "--config", str(recipe), "--cross-validate", "1"]) == 2
