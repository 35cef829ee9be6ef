"""zoo export of the n-gram text models (``fasttext``: hashed n-grams; ``tfidf``: a fitted vocabulary and idf):
every format verified, the featuriser travelling as JSON / safetensors (no pickles), the exported predictor
answering as ``zoo predict`` and the eager model on the same texts (also texts the data never saw), the fitted
temperature applied, a loader without Lightning, the API object ``zoo serve`` runs, ``zoo export`` of a run
directory, and a folder whose featuriser was changed refused."""

from __future__ import annotations

import json
import shutil
import subprocess
import sys
from pathlib import Path

import pytest
import torch
import yaml

from tests.common.helpers import quiet_trainer
from tests.tasks.test_ngram import write_corpus
from zoo.export import export_model, load_predictor
from zoo.export.formats import FORMATS

ROOT = Path(__file__).resolve().parents[2]
TEMPERATURE = 1.7
#: texts the data never saw: known words in new company, unknown words only, one character, mixed case
NEW_TEXTS = ["足球 比赛 球队 价格", "БАНК рынок τράπεζα", "电影 导演 ταινία и", "zzz qqq xyzzy", "x", "Ταινία ΦΙΛЬМ"]
CASES = {"fasttext": {"features": "hashing", "buckets": 1024}, "tfidf": {"features": "tfidf", "max_features": 400}}


def _model(name):
    from zoo.tasks.text import FastTextClassifier, TfidfClassifier

    return FastTextClassifier(dim=8, lr=5e-2) if name == "fasttext" else TfidfClassifier(lr=5e-2)


def _pad(bags):
    width = max(len(ids) for ids, _ in bags)
    ids, weights = torch.zeros(len(bags), width, dtype=torch.long), torch.zeros(len(bags), width)
    for i, (a, w) in enumerate(bags):
        ids[i, :len(a)], weights[i, :len(w)] = torch.from_numpy(a), torch.from_numpy(w)
    return {"input_ids": ids, "weights": weights}


def _eager(model, data, texts):
    """Calibrated probabilities and raw logits of the eager model on the training data's own featuriser."""
    with torch.no_grad():
        logits = model(_pad(data.featurizer.bags(texts)))
    return model.probabilities(logits), logits


def _probs(answers, labels):
    return torch.tensor([[a["probabilities"][n] for n in labels] for a in answers])


@pytest.fixture(scope="module", params=list(CASES))
def run(request, tmp_path_factory):
    """A tiny trained run (60 texts in three scripts) with a fitted temperature, exported in every format."""
    from zoo.data.text import NgramTextDataModule

    name = request.param
    tmp = tmp_path_factory.mktemp(name)
    init = {"train": write_corpus(tmp / "c.csv", n=60), "batch_size": 8, **CASES[name]}
    data = NgramTextDataModule(**init)
    torch.manual_seed(0)
    model = _model(name)
    trainer = quiet_trainer(max_epochs=3, limit_val_batches=0)
    trainer.fit(model, data)
    model.set_temperature(TEMPERATURE)
    model.eval()
    verification = {}
    for fmt in FORMATS:
        meta = export_model(model, data, fmt, tmp / fmt)
        verification[fmt] = meta["verification"]
    return {"name": name, "tmp": tmp, "model": model, "data": data, "trainer": trainer, "init": init,
            "verification": verification}


def test_every_format_verified_and_answers_as_zoo_predict(run):
    model, data, tmp = run["model"], run["data"], run["tmp"]
    expected = [r for b in quiet_trainer().predict(model, datamodule=data) for r in b]
    texts = [r["text"] for r in data.splits["test"].rows]
    eager_probs, _ = _eager(model, data, texts + NEW_TEXTS)
    from zoo.inference import load

    for fmt in FORMATS:
        v = run["verification"][fmt]
        raw = v["from_raw_inputs"]
        print(f"{run['name']} {fmt}: verification max abs diff {v['max_abs_diff']:.2e} (from raw texts "
              f"{raw['max_abs_diff']:.2e}) on {v['samples']} inputs, top-1 agreement {v['top1_agreement']:.3f}")
        assert v["passed"] and v["top1_agreement"] == 1.0 and v["samples"] >= len(texts)
        assert raw["passed"] and raw["top1_agreement"] == 1.0 and raw["max_abs_diff"] <= 1e-5
        predictors = [load_predictor(tmp / fmt)] + ([load(tmp / fmt)] if fmt != "safetensors" else [])
        for predictor in predictors:
            got = predictor.predict(texts)
            assert [g["label"] for g in got] == [e["label"] for e in expected], fmt
            conf = max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected))
            probs = _probs(predictor.predict(texts + NEW_TEXTS), model.class_names)
            diff = float((probs - eager_probs).abs().max())
            print(f"{run['name']} {fmt} ({predictor.backend}): max |confidence - zoo predict| {conf:.2e}, max |p - "
                  f"eager p| {diff:.2e} over {len(probs)} texts ({len(NEW_TEXTS)} unseen)")
            assert conf <= 1e-5 and diff <= 1e-5
            assert probs.argmax(-1).tolist() == eager_probs.argmax(-1).tolist()


def test_the_folder_holds_the_featuriser_without_pickles(run):
    data, tmp = run["data"], run["tmp"]
    for fmt in FORMATS:
        folder = tmp / fmt
        meta = json.loads((folder / "zoo_export.json").read_text())
        assert meta["task"] == "text_classification" and meta["inputs"] == ["input_ids", "weights"]
        assert meta["labels"] == run["model"].class_names and meta["temperature"] == pytest.approx([TEMPERATURE])
        pre = meta["preprocessing"]
        assert pre["feature_space"] == run["model"].feature_space and "scikit-learn" in meta["versions"]
        settings = pre["ngrams"]
        assert (settings["word_ngrams"], settings["char_ngrams"], settings["lowercase"]) == ([1, 2], [2, 4], True)
        assert settings["analyzers"] == ["word", "char_wb"]
        names = {p.name for p in folder.iterdir()}
        assert not [n for n in names if n.endswith((".pkl", ".pickle", ".joblib", ".bin"))], names
        if run["name"] == "fasttext":
            assert settings["features"] == "hashing" and settings["buckets"] == 1024
            assert not [n for n in names if n.startswith("ngram_")]
            continue
        assert settings["features"] == "tfidf" and {"ngram_vocabulary.json", "ngram_idf.safetensors"} <= names
        vocab = json.loads((folder / "ngram_vocabulary.json").read_text(encoding="utf-8"))
        assert [vocab["word"], vocab["char_wb"]] == data.featurizer.vocabularies()
        from safetensors.numpy import load_file

        idf = load_file(str(folder / "ngram_idf.safetensors"))
        assert [idf["word"].tolist(), idf["char_wb"].tolist()] == [v.idf_.tolist() for v in data.featurizer.vectorizers]


def test_fitted_temperature_is_applied_and_can_be_switched_off(run):
    model, data = run["model"], run["data"]
    _, logits = _eager(model, data, NEW_TEXTS)
    for fmt in FORMATS:
        calibrated = _probs(load_predictor(run["tmp"] / fmt).predict(NEW_TEXTS), model.class_names)
        raw = _probs(load_predictor(run["tmp"] / fmt, calibration="none").predict(NEW_TEXTS), model.class_names)
        assert torch.allclose(calibrated, (logits / TEMPERATURE).softmax(-1), atol=1e-5), fmt
        assert torch.allclose(raw, logits.softmax(-1), atol=1e-5), fmt
        assert not torch.allclose(calibrated, raw, atol=1e-3)  # the temperature does change the answer


@pytest.mark.subprocess
def test_loader_runs_without_lightning_zoo_tasks_or_data(run):
    code = ("import sys\n"
            "for m in ('lightning', 'lightning.pytorch', 'pytorch_lightning'): sys.modules[m] = None\n"
            "import zoo.inference as zi\n"
            f"for fmt in ('onnx', 'torch_export'):\n"
            f"    p = zi.load({str(run['tmp'])!r} + '/' + fmt)\n"
            f"    print(p.predict({NEW_TEXTS[:2]!r})[0]['label'])\n"
            "loaded = [m for m in sys.modules if sys.modules[m] is not None]\n"
            "assert not [m for m in loaded if m.split('.')[0] == 'lightning' or m.startswith(('zoo.tasks', "
            "'zoo.data'))], loaded\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=180)
    assert done.returncode == 0, done.stderr[-2000:]
    expected = load_predictor(run["tmp"] / "onnx").predict(NEW_TEXTS[:2])[0]["label"]
    assert done.stdout.split() == [expected, expected]


def test_serve_api_answers_and_refuses_bad_requests_per_request(run):
    from zoo.inference import read_export
    from zoo.serve.api import PredictAPI

    texts = NEW_TEXTS[:3]
    for fmt in ("onnx", "safetensors"):
        api = PredictAPI(export=read_export(run["tmp"] / fmt), backend=None, calibration="temperature", threads=1,
                         max_batch_size=8)
        api.setup("cpu")
        requests = [{"text": texts[0]}, {"text": "  "}, {"text": texts[1], "top_k": 1}, {"txt": "x"}, texts[2]]
        out = api.unbatch(api.predict(api.batch([api.decode_request(r) for r in requests])))
        responses = [api.encode_response(o) for o in out]
        expected = load_predictor(run["tmp"] / fmt).predict(texts)
        assert [responses[i]["label"] for i in (0, 2, 4)] == [e["label"] for e in expected], fmt
        assert responses[0]["probabilities"] == expected[0]["probabilities"]
        assert len(responses[2]["probabilities"]) == 1
        assert [(r.status_code, json.loads(r.body)["field"]) for r in (responses[1], responses[3])] == [
            (400, "text"), (400, "text")]


def test_cli_exports_the_run_directory(run, capsys):
    from zoo.cli import main

    folder = run["tmp"] / "runs" / run["name"] / "version_0"
    run["trainer"].save_checkpoint(folder / "checkpoints" / "best.ckpt")
    cfg = {"data": {"class_path": "ngram_text", "init_args": run["init"]}}
    (folder / "config.yaml").write_text(yaml.safe_dump(cfg, allow_unicode=True))
    out = run["tmp"] / "cli_onnx"
    # the datamodule is rebuilt from config.yaml: TF-IDF refits the same vocabulary on the same training split
    assert main(["export", str(folder), "--format", "onnx", "--out", str(out)]) == 0
    assert "verified on" in capsys.readouterr().out
    report = json.loads((folder / "export_report.json").read_text())
    assert report["onnx"]["verification"]["from_raw_inputs"]["passed"]
    direct = load_predictor(run["tmp"] / "onnx").predict(NEW_TEXTS)
    for predictor in (load_predictor(out), load_predictor(folder)):  # a run directory serves as it is
        got = predictor.predict(NEW_TEXTS)
        assert [g["label"] for g in got] == [d["label"] for d in direct]
        assert max(abs(g["confidence"] - d["confidence"]) for g, d in zip(got, direct)) <= 1e-5


def test_a_changed_featuriser_is_refused_at_load(run, tmp_path):
    from zoo.errors import ZooError
    from zoo.inference import load

    folder = tmp_path / "changed"
    shutil.copytree(run["tmp"] / "onnx", folder)
    if run["name"] == "tfidf":  # two terms swapped: every text would score against the wrong weights
        path = folder / "ngram_vocabulary.json"
        vocab = json.loads(path.read_text(encoding="utf-8"))
        vocab["word"][0], vocab["word"][1] = vocab["word"][1], vocab["word"][0]
        path.write_text(json.dumps(vocab, ensure_ascii=False), encoding="utf-8")
    else:  # other hash buckets
        meta = json.loads((folder / "zoo_export.json").read_text())
        meta["preprocessing"]["ngrams"]["buckets"] = 2048
        (folder / "zoo_export.json").write_text(json.dumps(meta))
    with pytest.raises(ZooError, match="not those the model was trained on"):
        load(folder)
    (folder / "zoo_export.json").write_text((run["tmp"] / "onnx" / "zoo_export.json").read_text())
    if run["name"] == "tfidf":
        (folder / "ngram_idf.safetensors").unlink()
        with pytest.raises(ZooError, match="cannot be read"):
            load(folder)


@pytest.mark.subprocess
def test_zoo_serve_answers_over_http(run):
    """A real ``zoo serve`` process on each export: hashed features (fastText) and the TF-IDF vocabulary and idf
    files loaded in the worker."""
    from tests.serve.test_serve import _call, _free_port, kill_group, start_server

    port = _free_port()
    proc = start_server(run["tmp"] / "onnx", port, run["tmp"], "--threads", "1", "--api-key", "k")
    try:
        expected = load_predictor(run["tmp"] / "onnx").predict(NEW_TEXTS)
        status, batch = _call(port, "/predict/batch", {"inputs": NEW_TEXTS}, key="k")
        assert status == 200 and batch["outputs"] == expected
        status, one = _call(port, "/predict", {"text": NEW_TEXTS[0], "top_k": 2}, key="k")
        assert status == 200 and one["label"] == expected[0]["label"] and len(one["probabilities"]) == 2
        status, bad = _call(port, "/predict", {"text": ""}, key="k")
        assert status == 400 and bad["field"] == "text"
        status, info = _call(port, "/info", key="k")
        assert status == 200 and info["model"]["verification"]["from_raw_inputs"]["passed"]
    finally:
        kill_group(proc)


def test_export_fails_when_the_predictors_featurisation_disagrees(run, tmp_path, monkeypatch):
    from zoo.export import ExportError
    from zoo.inference.families import NgramTextClassification

    collate = NgramTextClassification.collate

    def off(self, items):  # a featuriser that drifted from the training data's (here: every weight doubled)
        feeds = collate(self, items)
        return {**feeds, "weights": feeds["weights"] * 2}

    monkeypatch.setattr(NgramTextClassification, "collate", off)
    with pytest.raises(ExportError, match="fed from raw inputs disagrees with the eager one"):
        export_model(run["model"], run["data"], "onnx", tmp_path / "bad")
    assert not (tmp_path / "bad").exists() and not list(tmp_path.glob(".bad.*"))
