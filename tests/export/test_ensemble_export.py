"""``zoo export`` / ``zoo serve`` of a ``zoo ensemble``: the fastText and TF-IDF runs of
tests/tasks/test_ensemble.py combined with set temperatures and weights, exported to onnx, torch_export and safetensors
(each member through the single-model export, the ensemble verified against ``Ensemble.combine``), answering as
``zoo ensemble --load`` does, served over HTTP with a single classifier's schema; a member of weight 0 is not
exported, a drifting export is refused, and a missing member folder stops with one message."""

from __future__ import annotations

import contextlib
import csv
import hashlib
import io
import json
import shutil

import pytest
import torch

from tests.export.test_export_ngram import NEW_TEXTS
from tests.tasks.test_ensemble import runs  # noqa: F401  (pytest fixture: the two trained runs)
from zoo.cli import main
from zoo.export import load_predictor
from zoo.tasks.ensemble import Ensemble

pytestmark = [pytest.mark.slow]

FORMATS = ("onnx", "torch_export", "safetensors")
#: far from 1 and unequal, so a predictor that ignored or swapped them would answer otherwise
TEMPERATURES, WEIGHTS = (1.6, 0.7), (0.35, 0.65)


def write_ensemble(runs, out, temperatures=TEMPERATURES, weights=WEIGHTS):  # noqa: F811
    """An ensemble directory as `zoo ensemble --out` writes it, with these temperatures and weights."""
    ens = Ensemble.from_runs([runs["fasttext"], runs["tfidf"]])
    for m, t, w in zip(ens.members, temperatures, weights):
        m.temperature, m.weight = t, w
    ens.save(out)
    return out


def texts_file(path, texts):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        csv.writer(fh).writerows([["text"], *[[t] for t in texts]])
    return str(path)


def probabilities(answers, labels):
    return torch.tensor([[a["probabilities"][n] for n in labels] for a in answers])


@pytest.fixture(scope="module")
def exported(runs, tmp_path_factory):  # noqa: F811
    root = tmp_path_factory.mktemp("ensemble_export")
    ens_dir = write_ensemble(runs, root / "ens")
    printed = {}
    for fmt in FORMATS:
        buf = io.StringIO()  # capsys is function-scoped
        with contextlib.redirect_stdout(buf):
            assert main(["export", str(ens_dir), "--format", fmt, "--out", str(root / fmt), "--samples", "16"]) == 0
        printed[fmt] = buf.getvalue()
    # texts the data never saw, and rows of its test split
    texts = NEW_TEXTS + Ensemble.load(ens_dir).members[0].outputs("test").texts[:6]
    return {"root": root, "dir": ens_dir, "printed": printed, "texts": texts}


def test_export_writes_members_and_a_verified_manifest(exported):
    spec = json.loads((exported["dir"] / "ensemble.json").read_text())
    report = json.loads((exported["dir"] / "export_report.json").read_text())
    for fmt in FORMATS:
        out = exported["root"] / fmt
        assert "ensemble of 2 text_classification members" in exported["printed"][fmt]
        assert "against the PyTorch ensemble (Ensemble.combine)" in exported["printed"][fmt]
        manifest = json.loads((out / "zoo_ensemble.json").read_text())
        assert manifest["format"] == fmt and manifest["labels"] == spec["class_names"]
        source = exported["dir"] / "ensemble.json"
        digest = hashlib.sha256(source.read_bytes()).hexdigest()
        assert manifest["source"] == {"ensemble": str(source), "sha256": digest}
        assert [(m["folder"], m["run"], m["temperature"], m["weight"]) for m in manifest["members"]] == [
            (f"members/{i}", s["run"], s["temperature"], s["weight"]) for i, s in enumerate(spec["members"])]
        for i in range(2):  # each member is a complete single-model export, verified on its own
            meta = json.loads((out / "members" / str(i) / "zoo_export.json").read_text())
            assert meta["format"] == fmt and meta["verification"]["passed"]
        v = manifest["verification"]
        assert v["passed"] and v["top1_agreement"] == 1.0 and v["max_abs_diff"] <= 1e-5
        assert v["samples"] == 16 + 3  # --samples rows of the test split, then 3 of them as another batch
        assert report[fmt] == {"out": str(out), "verification": v}


@pytest.mark.parametrize("fmt", FORMATS)
def test_exported_ensemble_answers_as_zoo_ensemble_load(exported, fmt, capsys, tmp_path):
    texts = exported["texts"]
    new = texts_file(tmp_path / "new.csv", texts)
    capsys.readouterr()
    assert main(["ensemble", "--load", str(exported["dir"]), "--predict", new]) == 0
    rows = list(csv.DictReader(capsys.readouterr().out.splitlines()))
    ens = Ensemble.load(exported["dir"])
    _, eager, _ = ens.predict("predict", new)
    from zoo.inference import load

    predictors = [load_predictor(exported["root"] / fmt)]
    if fmt != "safetensors":  # onnx / torch_export folders also load without zoo's task classes
        predictors.append(load(exported["root"] / fmt))
    for predictor in predictors:
        answers = predictor.predict(texts)
        assert [a["label"] for a in answers] == [r["label"] for r in rows]
        assert max(abs(a["confidence"] - float(r["confidence"])) for a, r in zip(answers, rows)) <= 1e-5
        assert torch.allclose(probabilities(answers, ens.class_names), eager, atol=1e-5)


def test_calibration_none_mixes_the_members_raw_softmax(exported, tmp_path):
    texts = exported["texts"]
    new = texts_file(tmp_path / "new.csv", texts)
    ens = Ensemble.load(exported["dir"])
    calibrated = ens.predict("predict", new)[1]
    for m in ens.members:
        m.temperature = 1.0
    raw = ens.predict("predict", new)[1]
    got = probabilities(load_predictor(exported["root"] / "onnx", calibration="none").predict(texts), ens.class_names)
    assert torch.allclose(got, raw, atol=1e-5)
    assert not torch.allclose(raw, calibrated, atol=1e-3)  # the temperatures do change the answer


def test_a_member_of_weight_zero_is_not_exported(runs, tmp_path):  # noqa: F811
    ens_dir = write_ensemble(runs, tmp_path / "ens", weights=(0.0, 1.0))
    spec = json.loads((ens_dir / "ensemble.json").read_text())
    spec["members"][0]["checkpoint"] = str(tmp_path / "gone.ckpt")  # never needed: a weight of 0 is never run
    (ens_dir / "ensemble.json").write_text(json.dumps(spec))
    out = tmp_path / "out"
    assert main(["export", str(ens_dir), "--format", "onnx", "--out", str(out), "--samples", "8"]) == 0
    manifest = json.loads((out / "zoo_ensemble.json").read_text())
    assert [m["folder"] for m in manifest["members"]] == ["members/1"] and not (out / "members" / "0").exists()
    assert manifest["not_exported"] == [{"index": 0, "run": runs["fasttext"], "weight": 0.0}]
    new = texts_file(tmp_path / "new.csv", NEW_TEXTS)
    ens = Ensemble.load(ens_dir)
    expected = ens.members[1].probabilities(ens.members[1].outputs("predict", new).logits)
    got = probabilities(load_predictor(out).predict(NEW_TEXTS), ens.class_names)
    assert torch.allclose(got, expected, atol=1e-5)


def test_an_export_that_drifts_from_the_pytorch_ensemble_is_refused(exported, tmp_path, monkeypatch, capsys):
    from zoo.inference.ensemble import EnsemblePredictor

    probs = EnsemblePredictor.probabilities
    monkeypatch.setattr(EnsemblePredictor, "probabilities", lambda self, parsed: probs(self, parsed) ** 1.05)
    out = tmp_path / "bad"
    assert main(["export", str(exported["dir"]), "--format", "onnx", "--out", str(out), "--samples", "8"]) == 2
    err = capsys.readouterr().err
    assert "(the ensemble, fed from raw texts) disagrees with the eager one" in err and "Traceback" not in err
    assert not out.exists() and not list(tmp_path.glob(".bad.*"))


def test_zoo_serve_answers_with_the_combined_prediction(exported):
    from tests.serve.test_serve import _call, _free_port, kill_group, start_server

    folder = exported["root"] / "onnx"
    expected = load_predictor(folder).predict(NEW_TEXTS)
    port = _free_port()
    proc = start_server(folder, port, exported["root"], "--threads", "1", "--api-key", "k")
    try:
        status, batch = _call(port, "/predict/batch", {"inputs": NEW_TEXTS}, key="k")
        assert status == 200 and batch["outputs"] == expected
        status, one = _call(port, "/predict", {"text": NEW_TEXTS[0], "top_k": 2}, key="k")
        assert status == 200 and set(one) == {"label", "confidence", "probabilities"}
        assert one["label"] == expected[0]["label"] and len(one["probabilities"]) == 2
        status, bad = _call(port, "/predict", {"text": ""}, key="k")
        assert status == 400 and bad["field"] == "text"
        status, info = _call(port, "/info", key="k")
        assert status == 200 and len(info["model"]["members"]) == 2 and info["model"]["verification"]["passed"]
    finally:
        kill_group(proc)


def test_zoo_serve_takes_the_ensemble_directory_itself(exported):
    from zoo.export import prepared
    from zoo.inference import read_export
    from zoo.serve.api import PredictAPI

    report = (exported["dir"] / "export_report.json").read_text()
    with prepared(exported["dir"]) as folder:  # exported on the fly, as a run directory is
        assert json.loads((folder / "zoo_ensemble.json").read_text())["format"] == "safetensors"
        requests = [{"text": NEW_TEXTS[0]}, {"txt": "x"}, NEW_TEXTS[1]]
        for calibration in ("temperature", "none"):  # --calibration none: the members' softmax without temperatures
            api = PredictAPI(export=read_export(folder), backend=None, calibration=calibration, threads=1,
                             max_batch_size=4)
            api.setup("cpu")
            out = api.unbatch(api.predict(api.batch([api.decode_request(r) for r in requests])))
            responses = [api.encode_response(o) for o in out]
            expected = load_predictor(exported["root"] / "onnx", calibration=calibration).predict(NEW_TEXTS[:2])
            assert [responses[0]["label"], responses[2]["label"]] == [e["label"] for e in expected]
            for got, want in zip((responses[0], responses[2]), expected):
                assert max(abs(got["probabilities"][k] - p) for k, p in want["probabilities"].items()) <= 1e-5
            assert (responses[1].status_code, json.loads(responses[1].body)["field"]) == (400, "text")
    assert not folder.exists(), "the on-the-fly export is removed when the block ends"
    assert (exported["dir"] / "export_report.json").read_text() == report, "and leaves the directory's report alone"


def test_a_missing_member_folder_stops_with_one_message(exported, tmp_path, capsys):
    broken = tmp_path / "broken"
    shutil.copytree(exported["root"] / "onnx", broken)
    shutil.rmtree(broken / "members" / "1")
    capsys.readouterr()
    assert main(["serve", str(broken), "--port", "1"]) == 2
    err = capsys.readouterr().err.strip()
    assert "member folder members/1 is missing" in err and len(err.splitlines()) == 1 and "Traceback" not in err
    from zoo.errors import ZooError
    from zoo.inference import load

    with pytest.raises(ZooError, match="member folder members/1 is missing"):
        load(broken)
    # the ensemble directory itself, whose member run is gone: export stops before writing anything
    ens_dir = tmp_path / "ens"
    shutil.copytree(exported["dir"], ens_dir)
    spec = json.loads((ens_dir / "ensemble.json").read_text())
    spec["members"][1]["checkpoint"] = str(tmp_path / "deleted_run" / "checkpoints" / "best.ckpt")
    (ens_dir / "ensemble.json").write_text(json.dumps(spec))
    assert main(["export", str(ens_dir), "--format", "onnx", "--out", str(tmp_path / "out")]) == 2
    err = capsys.readouterr().err.strip()
    assert "deleted_run/checkpoints/best.ckpt is missing" in err and len(err.splitlines()) == 1
    assert not (tmp_path / "out").exists()
