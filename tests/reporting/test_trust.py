"""Whether a model's answers can be trusted: calibrated probabilities, conformal prediction sets, selective
prediction, the baseline every run must beat; end to end through the CLI on the seconds-fast digits recipe."""

from __future__ import annotations

import csv
import json
import math
from pathlib import Path

import pytest
import torch
from torch import nn

from zoo.callbacks.baseline import compare, verdict_line
from zoo.reporting import calibration, conformal, selective
from zoo.tasks.classification import ClassificationTask

ROOT = Path(__file__).resolve().parents[2]


class Linear(ClassificationTask):
    """A linear classifier on ``batch["x"]``: enough to be a real ClassificationTask."""

    def __init__(self, features: int = 2, **kw):
        self.features = features
        super().__init__(**kw)

    def build_classifier(self, num_classes: int) -> None:
        self.head = nn.Linear(self.features, num_classes)

    def embed(self, batch):
        return batch["x"]

    def forward_embedded(self, emb, batch):
        return self.head(emb)


def gaussian_classes(n: int, seed: int, num_classes: int = 3) -> tuple[torch.Tensor, torch.Tensor]:
    """Overlapping Gaussian blobs: no classifier is sure of every point."""
    g = torch.Generator().manual_seed(seed)
    y = torch.randint(0, num_classes, (n,), generator=g)
    angles = 2 * math.pi * y.float() / num_classes
    centres = torch.stack([angles.cos(), angles.sin()], 1)
    return centres + 0.8 * torch.randn(n, 2, generator=g), y


def overconfident_model() -> Linear:
    """The Bayes direction (class centres) times 20: right arg-max, far too sure."""
    model = Linear(num_classes=3)
    model.build()
    angles = 2 * math.pi * torch.arange(3).float() / 3
    with torch.no_grad():
        model.head.weight.copy_(20 * torch.stack([angles.cos(), angles.sin()], 1))
        model.head.bias.zero_()
    return model.eval()


# -- calibration ----------------------------------------------------------------------------------------------
def test_temperature_scaling_lowers_nll_of_an_overconfident_model():
    model = overconfident_model()
    (xv, yv), (xt, yt) = gaussian_classes(2000, seed=1), gaussian_classes(2000, seed=2)
    with torch.no_grad():
        val_logits, test_logits = model({"x": xv}), model({"x": xt})
    t = calibration.fit_temperature(val_logits, yv)
    assert t.shape == (1,) and float(t) > 3  # the model is over-confident: the fitted temperature softens it
    before = calibration.nll(test_logits, yt)
    after = calibration.nll(test_logits / t, yt)
    assert after < 0.7 * before, (before, after)
    assert (calibration.ece(test_logits.softmax(-1), yt)
            > 2 * calibration.ece((test_logits / t).softmax(-1), yt))
    # the model applies it in probabilities() and predict_step; --calibration none switches it off
    assert bool((model.temperature == 1).all())  # identity until fitted
    model.set_temperature(t)
    probs = model.probabilities(test_logits)
    torch.testing.assert_close(probs, (test_logits / t).softmax(-1))
    rows = model.predict_step({"x": xt[:4], "id": [0, 1, 2, 3]}, 0)
    assert [r["confidence"] for r in rows] == pytest.approx(probs[:4].max(-1).values.tolist(), abs=1e-5)
    model.calibration = "none"
    torch.testing.assert_close(model.probabilities(test_logits), test_logits.softmax(-1))
    # the temperature is in the state dict, and a state dict written before it existed still loads
    state = overconfident_model().state_dict()
    assert "temperature" in state
    from zoo.checkpoints import checkpoint_meta

    fresh = overconfident_model()
    ckpt = {"state_dict": {k: v for k, v in state.items() if k != "temperature"}, "zoo": checkpoint_meta(fresh)}
    fresh.on_load_checkpoint(ckpt)
    fresh.load_state_dict(ckpt["state_dict"])  # strict: the hook filled the identity temperature
    assert float(fresh.temperature) == 1.0


def test_multilabel_gets_one_temperature_per_label():
    g = torch.Generator().manual_seed(0)
    z = torch.randn(4000, 3, generator=g) * 2
    y = torch.bernoulli(z.sigmoid(), generator=g)
    scales = torch.tensor([1.0, 4.0, 0.5])
    t = calibration.fit_temperature(z * scales, y, multi_label=True)
    torch.testing.assert_close(t, scales, rtol=0.15, atol=0.05)


def test_a_label_separable_on_validation_keeps_temperature_one():
    # every validation example of label 1 on the right side of the boundary: the NLL keeps falling as T -> 0, and
    # the floor it reached (T = 0.01) turned each later mistake into a near-certain one
    g = torch.Generator().manual_seed(0)
    z = torch.randn(500, 2, generator=g) * 2
    y = torch.bernoulli(z.sigmoid(), generator=g)
    y[:, 1] = (z[:, 1] > 0).float()
    t = calibration.fit_temperature(z, y, multi_label=True)
    assert float(t[1]) == 1.0
    assert 0.5 < float(t[0]) < 2.0  # the noisy label is still fitted (its true temperature is 1)
    single = torch.nn.functional.one_hot(torch.arange(30) % 3, 3).float() * 4  # all right, single-label
    assert float(calibration.fit_temperature(single, torch.arange(30) % 3)) == 1.0


def test_token_logits_ignore_sub_tokens():
    g = torch.Generator().manual_seed(0)
    labels = torch.randint(0, 3, (8, 20), generator=g)
    logits = 3 * nn.functional.one_hot(labels, 3).float() + torch.randn(8, 20, 3, generator=g)
    t = calibration.fit_temperature(logits, labels)
    labels[:, ::2] = -100  # sub-tokens and padding: their logits are garbage and must not count
    logits[:, ::2] = torch.randn(8, 10, 3, generator=g) * 50
    torch.testing.assert_close(calibration.fit_temperature(logits, labels),
                               calibration.fit_temperature(logits[:, 1::2], labels[:, 1::2]))
    assert t.shape == (1,) and 0.3 < float(t) < 3


# -- conformal ------------------------------------------------------------------------------------------------
@pytest.mark.parametrize("method", ["lac", "aps"])
def test_split_conformal_reaches_its_coverage_over_many_seeds(method):
    """Probabilities drawn from a Dirichlet and labels drawn from them: a problem whose answer is known. Split
    conformal guarantees 1 - alpha <= E[coverage] (<= 1 - alpha + 1/(n+1) for the continuous LAC score). Over 100
    seeds the mean coverage must sit within 4 standard errors of that interval, and the per-seed warning (a 99 %
    bound) may fire on at most 5 % of the seeds."""
    n_cal, n_test, seeds, level = 300, 600, 100, 0.9
    coverages, short = [], 0
    for seed in range(seeds):
        torch.manual_seed(seed)
        probs = torch.distributions.Dirichlet(torch.full((5,), 0.7)).sample((n_cal + n_test,))
        labels = torch.multinomial(probs, 1).squeeze(1)
        row = conformal.evaluate(probs[:n_cal], labels[:n_cal], probs[n_cal:], labels[n_cal:], levels=(level,),
                                 methods=(method,))[0]
        coverages.append(row["coverage"])
        short += row["short"]
    mean = sum(coverages) / seeds
    se = (sum((c - mean) ** 2 for c in coverages) / (seeds - 1)) ** 0.5 / seeds ** 0.5
    assert mean >= level - 4 * se, (mean, se)
    if method == "lac":
        assert mean <= level + 1 / (n_cal + 1) + 4 * se, (mean, se)
    assert short <= 0.05 * seeds


def test_conformal_warns_when_the_test_split_is_not_exchangeable():
    torch.manual_seed(0)
    cal = torch.distributions.Dirichlet(torch.full((4,), 0.3)).sample((500,))
    cal_y = torch.multinomial(cal, 1).squeeze(1)
    test = torch.distributions.Dirichlet(torch.full((4,), 0.3)).sample((500,))
    test_y = torch.randint(0, 4, (500,))  # labels unrelated to the probabilities: the model is wrong here
    row = conformal.evaluate(cal, cal_y, test, test_y, levels=(0.9,), methods=("lac",))[0]
    assert row["short"] and row["coverage"] < 0.9 - row["bound"]


def test_prediction_sets_are_never_empty_and_grow_with_coverage():
    probs = torch.tensor([[0.7, 0.2, 0.1], [0.4, 0.35, 0.25]])
    for method in conformal.METHODS:
        small = conformal.prediction_sets(probs, 0.0, method)
        assert small.sum(-1).tolist() == [1, 1]
        assert (conformal.prediction_sets(probs, 0.7, method).sum(-1) >= small.sum(-1)).all()


# -- selective prediction ---------------------------------------------------------------------------------------
def test_threshold_for_target_accuracy_and_aurc():
    conf = torch.tensor([0.9, 0.8, 0.7, 0.6])
    correct = torch.tensor([True, True, False, True])
    assert selective.aurc(conf, correct) == pytest.approx((0 + 0 + 1 / 3 + 1 / 4) / 4)
    res = selective.threshold_for_accuracy(conf, correct, 1.0)
    assert res["coverage"] == 0.5 and res["threshold"] == pytest.approx(0.8)
    assert selective.threshold_for_accuracy(conf, correct, 0.75)["coverage"] == 1.0
    line = selective.statement(res, 1.0)
    assert line.startswith("answer 50 % of inputs automatically at 1 accuracy")
    assert selective.threshold_for_accuracy(torch.tensor([0.9]), torch.tensor([False]), 0.5) is None


# -- baselines ---------------------------------------------------------------------------------------------------
def _worse(reference: dict, by: float = 0.2) -> dict:
    return {k: v - by for k, v in reference["metrics"].items()}


def _check_reference(reference: dict, headline: str) -> None:
    assert headline in reference["metrics"] and 0.0 <= reference["metrics"][headline] <= 1.0
    worse = compare(_worse(reference), reference, headline, margin=0.01, unknown_rate=0.3, hparams={"lr": 0.1})
    assert worse["beats"] is False and "warning" in verdict_line(worse) and "30.0 % of tokens" in verdict_line(worse)
    better = compare({k: v + 0.05 for k, v in reference["metrics"].items()}, reference, headline, margin=0.01)
    assert better["beats"] is True and "beats it" in verdict_line(better)


def test_baseline_for_each_family(tmp_path):
    from zoo.backbones.text import tiny_bert_dir
    from zoo.baselines.references import reference_for, unknown_token_rate
    from zoo.data.image.datamodule import ImageDataModule
    from zoo.data.text import TextDataModule, TokenDataModule
    from zoo.tasks.recsys.base import synthetic_data

    tiny = str(tiny_bert_dir(tmp_path / "tiny"))
    rows = [{"text": (["great movie i love it", "really good film"] if i % 2 else ["awful movie i hate it",
                                                                                  "really bad film"])[i % 4 // 2],
             "label": "pos" if i % 2 else "neg"} for i in range(60)]
    path = tmp_path / "s.csv"
    with path.open("w", newline="") as fh:
        w = csv.DictWriter(fh, ["text", "label"])
        w.writeheader()
        w.writerows(rows)
    text = TextDataModule(train=str(path), tokenizer=tiny, cache_dir=str(tmp_path / "c"), val_fraction=0.2,
                          test_fraction=0.2)
    text.setup("fit")
    ref = reference_for(text)
    assert ref["metrics"]["acc"] == 1.0  # two phrasings per class: a TF-IDF model gets them all
    _check_reference(ref, "f1_macro")
    # the text reference is bounded, and says by what (issue 25: 204 s of a zoo test on long Chinese texts)
    assert ref["caps"]["train_texts_used"] == len(text.splits["train"]) and ref["caps"]["training_characters"] > 0
    from zoo.callbacks.baseline import compare, render_markdown

    assert "Reference caps: at most 10,000 training texts" in render_markdown(compare({"acc": 1.0}, ref, "acc", 0.01))
    rate = unknown_token_rate(text)
    assert rate is not None and 0.0 <= rate < 0.5

    image = ImageDataModule(dataset="digits", batch_size=64)
    image.setup("fit")
    ref = reference_for(image)
    assert ref["metrics"]["acc"] > 0.85
    _check_reference(ref, "f1_macro")

    ner = TokenDataModule(dataset="ner_demo", tokenizer=tiny, max_length=40, max_samples=60,
                          cache_dir=str(tmp_path / "c"))
    ner.setup("fit")
    ref = reference_for(ner)
    assert ref["metrics"]["token_acc"] > 0.5
    _check_reference(ref, "f1")

    recsys = synthetic_data(dataset_kwargs={"per_user": 30})
    recsys.setup("fit")
    ref = reference_for(recsys)
    _check_reference(ref, "ndcg@10")


# -- end to end ------------------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_cli_fit_calibrates_checkpoint_and_test_reports_trust_baseline_and_card(tmp_path, capsys):
    from zoo.cli import main

    recipe = str(ROOT / "recipes/vision/digits_tiny.yaml")
    common = ["--config", recipe, "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
              str(tmp_path), "--trainer.enable_model_summary", "false"]
    capsys.readouterr()
    assert main(["fit", *common, "--trainer.max_epochs", "1"]) == 0
    err = capsys.readouterr().err
    best = next(tmp_path.rglob("best.ckpt"))
    ckpt = torch.load(best, map_location="cpu", weights_only=True)
    calibration = ckpt["zoo"]["calibration"]
    assert calibration["split"] == "val" and calibration["nll_after"] < calibration["nll_before"]
    assert float(ckpt["state_dict"]["temperature"]) != 1.0 and calibration["applied"] is True
    # the closing lines name the kept checkpoint, its epoch and metric, and the temperature of *that* checkpoint
    (kept,) = [x for x in err.splitlines() if x.startswith("zoo: kept ")]
    assert "best.ckpt: epoch 0, val/f1_macro 0." in kept
    (calibrated,) = [x for x in err.splitlines() if x.startswith("zoo: calibrated ")]
    assert f"temperature {float(ckpt['state_dict']['temperature']):.3f}" in calibrated and "best.ckpt" in calibrated
    assert "validation NLL" in calibrated and "ECE" in calibrated
    summary = json.loads(next(tmp_path.rglob("training_summary.json")).read_text())
    assert summary["kept"]["epoch"] == 0 and summary["export_family"] == "image_classification"
    assert main(["test", *common, "--ckpt_path", str(best), "--target_accuracy", "0.5"]) == 0
    err = capsys.readouterr().err
    assert "calibration: ECE" in err and "conformal lac 0.9" in err
    assert [x for x in err.splitlines() if x.startswith("zoo: testing ")][0].endswith(
        f"(epoch 0): temperature {float(ckpt['state_dict']['temperature']):.3f}")
    # one line for the files the test wrote, not one per file
    (wrote,) = [x for x in err.splitlines() if x.startswith("zoo: wrote")]
    assert wrote.startswith("zoo: wrote ") and " files to " in wrote and wrote.split()[2].isdigit()
    card = next(tmp_path.rglob("MODEL_CARD.md")).read_text()
    assert "pipeline_tag: image-classification" in card and "A model for" not in card
    assert "kept checkpoint: `best.ckpt`, epoch 0" in card and "- digits" in card
    assert "does not beat the baseline" in err  # one epoch of four batches: the pixel baseline wins
    out = next(tmp_path.rglob("trust.json")).parent
    for name in ("reliability.png", "risk_coverage.png", "trust.md", "baseline.json", "MODEL_CARD.md"):
        assert (out / name).is_file(), name
    trust = json.loads((out / "trust.json").read_text())
    assert {r["target"] for r in trust["conformal"]} >= {0.9, 0.95} and "aurc" in trust["selective"]
    assert "target" in trust["selective"]
    preds = tmp_path / "p.csv"
    assert main(["predict", *common, "--ckpt_path", str(best), "--coverage", "0.9", "--output", str(preds),
                 "--trainer.limit_predict_batches", "1"]) == 0
    rows = list(csv.DictReader(preds.open()))
    assert rows and all(r["prediction_set"] for r in rows)
    assert all(r["label"] in r["prediction_set"].split("|") for r in rows)


@pytest.mark.parametrize("kind", ["multi", "token"])
def test_trust_report_for_multilabel_and_token_classifiers(kind, tmp_path):
    from zoo.reporting.trust import trust_report

    g = torch.Generator().manual_seed(0)
    if kind == "multi":
        logits = torch.randn(200, 3, generator=g) * 6
        targets = torch.bernoulli((logits / 6).sigmoid(), generator=g)
        temperature = calibration.fit_temperature(logits, targets, multi_label=True)
    else:
        targets = torch.randint(0, 4, (20, 12), generator=g)
        logits = 8 * nn.functional.one_hot(targets, 4).float() + 4 * torch.randn(20, 12, 4, generator=g)
        targets[:, -3:] = -100
        temperature = calibration.fit_temperature(logits, targets)
    summary, paths, lines = trust_report(logits, targets, temperature, kind=kind, val=None, levels=(0.9,),
                                         class_names=None, target_accuracy=None, out_dir=tmp_path)
    c = summary["calibration"]
    assert c["nll_after"] <= c["nll_before"] + 1e-6 and len(c["temperature"]) == (3 if kind == "multi" else 1)
    assert "conformal" not in summary and (tmp_path / "reliability.png").is_file() and lines[0].startswith("calib")
    if kind == "token":
        assert summary["n_test"] == 20 * 9  # only labelled tokens count


def test_trust_flags_are_checked_and_calibration_none_switches_the_temperature_off():
    from zoo.callbacks.trust import Trust
    from zoo.errors import ConfigError

    for bad in ({"calibration": "platt"}, {"coverage": 90}, {"target_accuracy": 0}, {"method": "raps"}):
        with pytest.raises(ConfigError):
            Trust(**bad)
    model = overconfident_model()
    model.set_temperature(2.0)
    logits = torch.randn(5, 3)
    Trust(calibration="none").setup(None, model, "predict")
    torch.testing.assert_close(model.probabilities(logits), logits.softmax(-1))
    Trust().setup(None, model, "predict")
    torch.testing.assert_close(model.probabilities(logits), (logits / 2).softmax(-1))
