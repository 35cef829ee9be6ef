"""zoo export: every format for one model of each family, verified, and the exported predictor answering as
``zoo predict`` (Trainer.predict with the task's predict_step, which is what the CLI runs) on the same inputs."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.export import ExportError, export_model, load_predictor
from zoo.export.formats import FORMATS

ROOT = Path(__file__).resolve().parents[2]


def _predict_rows(model, data):
    rows = quiet_trainer().predict(model, datamodule=data)
    return [r for batch in rows for r in batch]


def _lora_text(tmp):
    from zoo.tasks.text.tiny import tiny_text_case

    model, data = tiny_text_case(tmp)
    model = type(model)(encoder=model.encoder_name, peft={"method": "lora", "r": 4}, lr=3e-3)
    model.bind_data(data)
    torch.manual_seed(0)
    with torch.no_grad():  # non-zero adapters, so merging them changes the encoder's weights
        for name, p in model.named_parameters():
            if "lora_B" in name:
                p.normal_(0, 0.5)
    return model, data


def _token(tmp):
    from zoo.tasks.text.tiny import tiny_token_case

    model, data = tiny_token_case(tmp)
    lines = ["Angela Merkel met Emmanuel Macron in Paris on Monday.", "Die Siemens AG baut in München.",
             "東京 is far from New York", "x"]
    (Path(tmp) / "sentences.txt").write_text("\n".join(lines), encoding="utf-8")
    data.predict_path = str(Path(tmp) / "sentences.txt")
    model.bind_data(data)
    return model, data, lines


def _image(tmp):
    from PIL import Image

    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp)
    model.bind_data(data)
    folder = Path(tmp) / "images"
    folder.mkdir()
    data.setup("fit")
    for i in range(6):
        pixels = (data.splits["test"][i]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).squeeze(-1).numpy()
        Image.fromarray(pixels).save(folder / f"img{i}.png")
    data.predict_source = str(folder)
    data.splits = {}
    return model, data, sorted(folder.glob("*.png"))


def _recsys(name, tmp):
    from zoo.registry import MODELS

    model, data = MODELS.entry(name).meta["tiny_case"](tmp)
    model.bind_data(data)
    data.prepare()
    data.predict_users = [data.user_ids[0], data.user_ids[3], "no-such-user"]
    data.unknown_users = "popular"
    return model, data


def _export_all(model, data, tmp, name):
    predictors = {}
    for fmt in FORMATS:
        meta = export_model(model, data, fmt, Path(tmp) / f"{name}_{fmt}")
        v = meta["verification"]
        print(f"{name} {fmt}: max abs diff {v['max_abs_diff']:.2e}, top-1 agreement {v['top1_agreement']:.3f}")
        assert v["passed"] and v["top1_agreement"] == 1.0
        predictors[fmt] = load_predictor(Path(tmp) / f"{name}_{fmt}")
    return predictors


@pytest.mark.slow
def test_text_classifier_with_lora_merged(tmp_path):
    model, data = _lora_text(tmp_path)
    expected = _predict_rows(model, data)
    texts = [r["text"] for r in data.splits["test"].rows]
    for fmt, predictor in _export_all(model, data, tmp_path, "text").items():
        got = predictor.predict(texts)
        diff = max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected))
        print(f"text {fmt}: max |confidence - zoo predict| {diff:.2e}")
        assert [g["label"] for g in got] == [e["label"] for e in expected]
        assert diff <= 1e-5
    meta = json.loads((tmp_path / "text_onnx" / "zoo_export.json").read_text())
    assert meta["task"] == "text_classification" and meta["labels"] == model.class_names
    assert "peft" not in json.dumps(meta.get("hparams", {})) or meta["hparams"]["peft"] is None
    merged = json.loads((tmp_path / "text_safetensors" / "zoo_export.json").read_text())
    assert merged["hparams"]["peft"] is None and (tmp_path / "text_safetensors" / "encoder" / "config.json").is_file()


@pytest.mark.slow
def test_token_classifier(tmp_path):
    model, data, lines = _token(tmp_path)
    expected = _predict_rows(model, data)
    for fmt, predictor in _export_all(model, data, tmp_path, "token").items():
        got = predictor.predict(lines)
        assert [g["entities"] for g in got] == [json.loads(e["entities"]) for e in expected], fmt
    assert any(json.loads(e["entities"]) for e in expected)  # the untrained tagger finds something to compare


@pytest.mark.slow
def test_image_classifier(tmp_path):
    model, data, files = _image(tmp_path)
    expected = _predict_rows(model, data)
    for fmt, predictor in _export_all(model, data, tmp_path, "image").items():
        got = predictor.predict([p.read_bytes() for p in files])
        diff = max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected))
        print(f"image {fmt}: max |confidence - zoo predict| {diff:.2e}")
        assert [g["label"] for g in got] == [e["label"] for e in expected] and diff <= 1e-5


@pytest.mark.slow
@pytest.mark.parametrize("name", ["bpr", "sasrec"])
def test_recommenders(name, tmp_path):
    model, data = _recsys(name, tmp_path)
    expected = _predict_rows(model, data)
    for fmt, predictor in _export_all(model, data, tmp_path, name).items():
        got = predictor.predict([{"user": u} for u in data.predict_users])
        flat = [(g["user"], r["rank"], r["item"]) for g in got for r in g["items"]]
        assert flat == [(e["user"], e["rank"], e["item"]) for e in expected], fmt
        scores = max(abs(r["score"] - e["score"]) for r, e in zip([r for g in got for r in g["items"]], expected))
        print(f"{name} {fmt}: max |score - zoo predict| {scores:.2e}")
        assert scores <= 1e-4


def test_export_refuses_what_it_cannot_do(tmp_path):
    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp_path)
    with pytest.raises(ExportError, match="--format must be one of safetensors, onnx, torch_export"):
        export_model(model, data, "tflite", tmp_path / "x")
    (tmp_path / "busy").mkdir()
    (tmp_path / "busy" / "f").write_text("x")
    with pytest.raises(ExportError, match="not empty"):
        export_model(model, data, "onnx", tmp_path / "busy")
    with pytest.raises(ExportError, match="disagrees with the eager one"):
        export_model(model, data, "onnx", tmp_path / "strict", tolerance=-1.0)
    assert not (tmp_path / "strict").exists() and not list(tmp_path.glob(".strict.*"))
    # the fitted temperature travels in zoo_export.json; calibration="none" (zoo serve --calibration none) ignores it
    with torch.no_grad():
        model.temperature.fill_(2.0)
    meta = export_model(model, data, "onnx", tmp_path / "ok")
    assert meta["temperature"] == [2.0]
    image = (data.splits["test"][0]["image"] * 255).round().to(torch.uint8).permute(1, 2, 0).numpy()
    calibrated = load_predictor(tmp_path / "ok").predict([image])[0]
    raw = load_predictor(tmp_path / "ok", calibration="none").predict([image])[0]
    with torch.no_grad():
        logits = model({"image": torch.from_numpy(image).permute(2, 0, 1)[None].float() / 255})[0]
    assert calibrated["confidence"] == pytest.approx(float((logits / 2).softmax(-1).max()), abs=1e-5)
    assert raw["confidence"] == pytest.approx(float(logits.softmax(-1).max()), abs=1e-5)
    from zoo.errors import ZooError
    from zoo.inference import load

    with pytest.raises(ZooError, match="has no torch.export program for --backend torch; use --backend onnx"):
        load(tmp_path / "ok", backend="torch")


@pytest.mark.subprocess
def test_loader_runs_where_lightning_cannot_be_imported(tmp_path):
    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp_path)
    export_model(model, data, "onnx", tmp_path / "img")
    code = ("import sys; sys.modules['lightning'] = None; sys.modules['lightning.pytorch'] = None; "
            "sys.modules['pytorch_lightning'] = None\n"
            "import numpy as np, zoo.inference as zi\n"
            f"p = zi.load({str(tmp_path / 'img')!r})\n"
            "print(p.predict([np.zeros((24, 24, 3), dtype=np.uint8)])[0]['label'])\n"
            "assert 'lightning' not in [m.split('.')[0] for m in sys.modules if sys.modules[m] is not None]\n")
    done = subprocess.run([sys.executable, "-c", code], cwd=ROOT, capture_output=True, text=True, timeout=120)
    assert done.returncode == 0, done.stderr[-2000:]
    assert done.stdout.strip() in model.class_names


#: exported in every format, and compared with zoo predict, by the tests above (the n-gram models in every format:
#: tests/export/test_export_ngram.py; their tiny cases also run through the loop below)
COVERED = {"text_classifier", "token_classifier", "image_classifier", "bpr", "sasrec"}


def _registered():
    from zoo.registry import MODELS

    return [n for n in MODELS.list() if n not in COVERED]


@pytest.mark.parametrize("name", _registered())
def test_every_other_registered_model_exports_to_onnx_verified(name, tmp_path):
    from zoo.registry import MODELS

    model, data = MODELS.entry(name).meta["tiny_case"](tmp_path)
    meta = export_model(model, data, "onnx", tmp_path / name, samples=8)
    print(f"{name} onnx: max abs diff {meta['verification']['max_abs_diff']:.2e}")
    assert meta["verification"]["passed"]
    predictor = load_predictor(tmp_path / name)
    assert predictor.task == meta["task"]


@pytest.mark.slow
def _image_run(tmp_path: Path) -> Path:
    """A run directory as `zoo fit` leaves it (checkpoint and config.yaml) of a one-step tiny image classifier."""
    import yaml

    from zoo.tasks.image import tiny_case

    model, data = tiny_case(tmp_path)
    trainer = quiet_trainer(max_steps=1, limit_val_batches=0)
    trainer.fit(model, datamodule=data)
    run = tmp_path / "runs" / "digits" / "version_0"
    trainer.save_checkpoint(run / "checkpoints" / "best.ckpt")
    cfg = {"data": {"class_path": "zoo.data.image.ImageDataModule",
                    "init_args": {"dataset": "synthetic_shapes", "dataset_kwargs": {"n": 96}, "batch_size": 16}}}
    (run / "config.yaml").write_text(yaml.safe_dump(cfg))
    return run


def test_cli_exports_a_run_directory_and_names_bad_sources(tmp_path, capsys):
    from zoo.cli import main

    run = _image_run(tmp_path)
    assert main(["export", str(run), "--format", "onnx", "--out", str(tmp_path / "out")]) == 0
    assert "verified on" in capsys.readouterr().out
    report = json.loads((run / "export_report.json").read_text())
    assert report["onnx"]["verification"]["passed"]
    meta = json.loads((tmp_path / "out" / "zoo_export.json").read_text())
    assert meta["source"]["checkpoint"].endswith("best.ckpt") and len(meta["source"]["sha256"]) == 64
    assert load_predictor(run).task == "image_classification"  # a run directory serves as it is
    assert json.loads((run / "export_report.json").read_text()) == report  # a throw-away export is not recorded
    assert main(["export", str(tmp_path / "nope"), "--format", "onnx", "--out", str(tmp_path / "o2")]) == 2
    assert "does not exist; expected a run directory" in capsys.readouterr().err
    assert main(["export", str(tmp_path), "--format", "onnx", "--out", str(tmp_path / "o3")]) == 2
    assert "is not a run directory" in capsys.readouterr().err
    assert not (tmp_path / "o2").exists() and not (tmp_path / "o3").exists()


def test_serving_a_run_directory_removes_its_on_the_fly_export_when_the_server_stops(tmp_path, monkeypatch):
    import zoo.serve

    run = _image_run(tmp_path)
    served = []

    def build(folder, **kwargs):  # what zoo serve would serve: an export folder while the server runs
        served.append((Path(folder), (Path(folder) / "zoo_export.json").is_file()))
        return "server"

    def stopped(server, host, port):  # the server stops (Ctrl-C / SIGTERM)
        raise KeyboardInterrupt

    monkeypatch.setattr(zoo.serve, "build_server", build)
    monkeypatch.setattr(zoo.serve, "_run", stopped)
    with pytest.raises(KeyboardInterrupt):
        zoo.serve.serve(run, threads=1)
    [(folder, had_export)] = served
    assert had_export and not folder.exists() and not folder.parent.exists(), "the on-the-fly export is removed"
