"""The n-gram models' featuriser is fitted once, in ``zoo fit``, and travels in the checkpoint: ``zoo test``,
``zoo predict``, ``zoo export`` (and so ``zoo serve`` of a run) read it and never fit it again, and ``predict``
featurises only the texts it answers (issue 25: a 3-text predict took 243 s refitting TF-IDF)."""

from __future__ import annotations

import csv

import pytest
import yaml

from tests.tasks.test_ngram import write_corpus
from zoo.cli import main
from zoo.inference.ngrams import NgramFeaturizer

pytestmark = pytest.mark.slow


@pytest.fixture(scope="module")
def fitted(tmp_path_factory):
    tmp = tmp_path_factory.mktemp("ngram_run")
    recipe = {"seed_everything": 0,
              "model": {"class_path": "tfidf", "init_args": {"lr": 0.05}},
              "data": {"class_path": "ngram_text",
                       "init_args": {"train": write_corpus(tmp / "c.csv", n=90), "features": "tfidf",
                                     "max_features": 300, "batch_size": 16}},
              "trainer": {"max_epochs": 2, "accelerator": "cpu", "enable_progress_bar": False,
                          "default_root_dir": str(tmp / "runs")}}
    (tmp / "r.yaml").write_text(yaml.safe_dump(recipe), encoding="utf-8")
    with open(tmp / "p.csv", "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"], ["足球 比赛"], ["БАНК рынок"], ["ταινία"]])
    assert main(["fit", "--config", str(tmp / "r.yaml")]) == 0
    run = next((tmp / "runs").rglob("best.ckpt")).parent.parent
    return tmp, run


@pytest.fixture
def no_refit(monkeypatch):
    """NgramFeaturizer.fit fails the test; bags() records how many texts each call featurised."""
    calls: list[int] = []

    def refuse(self, texts):
        raise AssertionError("the n-gram featuriser was fitted again")

    bags = NgramFeaturizer.bags
    monkeypatch.setattr(NgramFeaturizer, "fit", refuse)
    monkeypatch.setattr(NgramFeaturizer, "bags", lambda self, texts: calls.append(len(texts)) or bags(self, texts))
    return calls


def test_predict_reads_the_featuriser_and_featurises_only_its_texts(fitted, no_refit, capsys):
    tmp, run = fitted
    rc = main(["predict", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/best.ckpt"),
               "--data.init_args.predict", str(tmp / "p.csv"), "--output", str(tmp / "out.csv")])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert no_refit == [3]
    assert len((tmp / "out.csv").read_text(encoding="utf-8").splitlines()) == 4


def test_test_and_export_read_the_featuriser(fitted, no_refit, capsys):
    from zoo.export import export_run

    tmp, run = fitted
    rc = main(["test", "--config", str(run / "config.yaml"), "--ckpt_path", str(run / "checkpoints/best.ckpt")])
    assert rc == 0, capsys.readouterr().err[-2000:]
    assert 90 not in no_refit and sum(no_refit) < 90  # validation and test splits only, never the training split
    meta = export_run(run, "safetensors", tmp / "export")
    assert meta["verification"]
    # the card's summary the test just wrote travels with the export (zoo serve's /info and page show it)
    assert meta["card"]["task"] == "Text Classification" and meta["card"]["metrics"]["acc"] > 0
    # and so does zoo test's conformal threshold: served answers carry a prediction set at the measured coverage
    import json

    from zoo.export import load_predictor

    trust = json.loads(next(run.rglob("trust.json")).read_text(encoding="utf-8"))
    row = next(r for r in trust["conformal"] if r["method"] == "lac" and r["target"] == 0.9)
    assert meta["conformal"]["threshold"] == pytest.approx(row["threshold"]) and meta["conformal"]["coverage"] == 0.9
    answers = load_predictor(tmp / "export").predict(["足球 比赛 进球", "银行 利率 股市"])
    for a in answers:
        floor = 1 - row["threshold"] - 1e-6
        assert a["label"] in a["prediction_set"] and a["prediction_set_coverage"] == 0.9
        assert set(a["prediction_set"]) == {a["label"]} | {k for k, p in a["probabilities"].items() if p >= floor}
