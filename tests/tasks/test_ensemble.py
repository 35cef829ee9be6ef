"""``zoo ensemble``: two trained runs (fastText and TF-IDF, in-process CLI) combined with weights fitted on the
validation split; the saved ensemble reloads and predicts identically; bad runs stop with one message; an ensemble
that cannot beat its best member on validation is that member."""

from __future__ import annotations

import csv
import json
import shutil

import pytest
import torch

from tests.tasks.test_ngram import write_corpus
from zoo.cli import main
from zoo.tasks.ensemble import HEADLINE, Ensemble, Member, Outputs, fit_temperature, fit_weights

COMMON = ["--data.init_args.batch_size", "16", "--trainer.max_epochs", "4",
          "--trainer.accelerator", "cpu", "--trainer.devices", "1", "--trainer.enable_progress_bar", "false",
          "--seed_everything", "0"]


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("runs")
    corpus = write_corpus(root / "corpus.csv", n=120)
    out = {}
    for model, features in (("fasttext", "hashing"), ("tfidf", "tfidf")):
        assert main(["fit", "--model", model, "--data", "ngram_text", "--data.init_args.train", corpus,
                     "--data.init_args.features", features,
                     "--data.init_args.buckets", "2048", "--trainer.default_root_dir", str(root / model), *COMMON]) == 0
        (run,) = (root / model).glob("*/version_0")
        out[model] = str(run)
    return out


@pytest.mark.slow
def test_ensemble_fits_weights_saves_reloads_and_predicts_the_same(runs, tmp_path, capsys):
    out = tmp_path / "ens"
    assert main(["ensemble", "--runs", runs["fasttext"], runs["tfidf"], "--out", str(out)]) == 0
    report = json.loads((out / "test_metrics.json").read_text())
    weights = [m["weight"] for m in report["members"]]
    assert sum(weights) == pytest.approx(1.0, abs=1e-3) and all(w >= 0 for w in weights)
    best = max(m["acc"] for m in report["members"])
    assert report["ensemble"]["acc"] >= best - 0.05
    with open(out / "predictions_test.csv", newline="") as fh:
        saved = list(csv.DictReader(fh))
    ids, probs, _ = Ensemble.load(out).predict("test")
    assert [r["id"] for r in saved] == ids
    assert [r["label"] for r in saved] == [Ensemble.load(out).class_names[k] for k in probs.argmax(-1).tolist()]
    capsys.readouterr()
    assert main(["ensemble", "--load", str(out)]) == 0
    printed = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert printed == saved
    new = tmp_path / "new.csv"
    new.write_text("text\n足球 比赛 матч\nфильм 电影 ταινία\n", encoding="utf-8")
    assert main(["ensemble", "--load", str(out), "--predict", str(new)]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    assert [r["id"] for r in rows] == ["new.csv:1", "new.csv:2"]


def test_fitted_weights_and_temperature_follow_the_data():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    good = torch.nn.functional.one_hot(labels, 3).float() * 4.0 + torch.randn(300, 3) * 0.3
    noise = torch.randn(300, 3)
    w = fit_weights([good.softmax(-1), noise.softmax(-1)], labels)
    assert w[0] > 0.9
    noisy = labels.clone()
    noisy[:60] = (noisy[:60] + 1) % 3  # a fifth of the confident answers are wrong
    assert fit_temperature(good * 10, noisy) > 5  # overconfident logits are cooled down
    mostly = labels.clone()
    mostly[:15] = (mostly[:15] + 1) % 3  # 95 % right: timid logits are sharpened
    assert fit_temperature(good * 0.1, mostly) < 0.5
    assert float(fit_temperature(good * 0.1, labels)) == 1.0  # all right (separable): nothing to fit, T stays 1


@pytest.mark.slow
def test_bad_runs_stop_with_one_message(runs, tmp_path, capsys):
    assert main(["ensemble", "--runs", runs["fasttext"], str(tmp_path), "--out", str(tmp_path / "e")]) == 2
    err = capsys.readouterr().err
    assert "no config.yaml there" in err and "Traceback" not in err
    assert main(["ensemble", "--runs", runs["fasttext"], "--out", str(tmp_path / "e")]) == 2
    assert "at least 2 run directories" in capsys.readouterr().err
    assert not (tmp_path / "e").exists()


def constant_copy(run: str, dest) -> str:
    """The run with every weight zeroed: same config and data, logits all 0, so one constant answer."""
    shutil.copytree(run, dest)
    path = dest / "checkpoints" / "best.ckpt"
    checkpoint = torch.load(path, map_location="cpu", weights_only=True)
    checkpoint["state_dict"] = {k: torch.zeros_like(v) if v.is_floating_point() else v
                                for k, v in checkpoint["state_dict"].items()}
    torch.save(checkpoint, path)
    return str(dest)


@pytest.mark.slow
def test_a_useless_member_makes_the_ensemble_its_good_member(runs, tmp_path, capsys):
    useless = constant_copy(runs["tfidf"], tmp_path / "constant")
    out = tmp_path / "ens"
    capsys.readouterr()
    # the useless member first: the fallback picks by score, not by position
    assert main(["ensemble", "--runs", useless, runs["tfidf"], "--out", str(out)]) == 0
    err = capsys.readouterr().err
    spec = json.loads((out / "ensemble.json").read_text())
    assert [m["weight"] for m in spec["members"]] == [0.0, 1.0]
    fallback = spec["fallback"]
    assert fallback["member"] == runs["tfidf"] and fallback["metric"] == HEADLINE
    assert fallback["member_score"] >= fallback["combination_score"]
    assert fallback["member_score"] == spec["validation"]["members"][1][HEADLINE]
    assert fallback["fitted_weights"] != [0.0, 1.0]  # the fitted mixture was not already one-hot
    (line,) = [line for line in err.splitlines() if line.startswith("zoo: wrote")]
    assert "fell back" in line and runs["tfidf"] in line and f"{fallback['member_score']:.4f}" in line
    assert json.loads((out / "test_metrics.json").read_text())["fallback"] == fallback

    ens = Ensemble.load(out)
    ids, probs, _ = ens.predict("test")
    good = ens.members[1]
    own = good.outputs("test")
    assert ids == own.ids
    assert torch.equal(probs, good.probabilities(own.logits))
    assert probs.argmax(-1).tolist() == own.logits.argmax(-1).tolist()
    with open(out / "predictions_test.csv", newline="") as fh:
        saved = [r["label"] for r in csv.DictReader(fh)]
    assert saved == [ens.class_names[k] for k in own.logits.argmax(-1).tolist()]
    # its checkpoint is not needed to predict: a weight of 0 is never run
    (tmp_path / "constant" / "checkpoints" / "best.ckpt").unlink()
    assert torch.equal(Ensemble.load(out).predict("test")[1], probs)


def fixed_member(name: str, logits: torch.Tensor, labels: torch.Tensor) -> Member:
    member = Member(run=name, checkpoint=f"{name}.ckpt", data={})
    ids = [str(i) for i in range(len(labels))]
    member.outputs = (  # type: ignore[method-assign]
        lambda split, predict=None: Outputs(list(ids), logits.clone(), labels))
    return member


def test_a_combination_that_beats_every_member_keeps_its_weights():
    torch.manual_seed(0)
    labels = torch.randint(0, 3, (300,))
    right = torch.nn.functional.one_hot(labels, 3).float() * 4.0
    wrong = torch.nn.functional.one_hot((labels + 1) % 3, 3) * 0.5
    first = torch.arange(300)[:, None] < 150
    # each member is sure and right on its own half, unsure and wrong on the other: only together are they right
    a = fixed_member("a", torch.where(first, right, wrong), labels)
    b = fixed_member("b", torch.where(first, wrong, right), labels)
    ens = Ensemble([a, b], ["x", "y", "z"])
    ens.fit()
    assert ens.fallback is None
    assert all(0.2 < m.weight < 0.8 for m in ens.members)
    best = max(s[HEADLINE] for s in ens.validation["members"])
    assert ens.validation["ensemble"][HEADLINE] > best + 0.3
    assert ens.to_dict()["fallback"] is None
    from zoo.cli.ensemble import _summary

    line = _summary(ens)
    assert line.startswith(f"weights {a.weight:.2f} / {b.weight:.2f}; validation {HEADLINE} ")
    assert "above the best member's" in line
