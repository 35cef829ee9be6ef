"""CRF taggers exported: ``crf_tagger`` (word features, ``word_tagging`` family) and ``token_classifier`` with
``crf: true`` answer as ``zoo predict`` in every format (the Viterbi decode runs in the family, with the transition
scores from ``zoo_export.json``), long sentences cut into word windows included; ``zoo serve`` answers a request."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch

from tests.common.helpers import quiet_trainer
from tests.serve.test_serve import KEY, _call, _free_port, kill_group, start_server
from zoo.export import ExportError, export_model, load_predictor
from zoo.export.formats import FORMATS
from zoo.inference.crf import is_valid_bio

LINES = ["Angela Merkel met Emmanuel Macron in Paris on Monday .", "Die Siemens AG baut in München .",
         "東京 is far from New York and Tallinn is far from Tartu , said Mari Kask of Tallinna Vesi on Friday", "x"]


def _with_predict_file(model, data, tmp: Path):
    (tmp / "sentences.txt").write_text("\n".join(LINES), encoding="utf-8")
    data.predict_path = str(tmp / "sentences.txt")
    model.bind_data(data)
    torch.manual_seed(0)
    with torch.no_grad():  # loud random emissions: an untrained tagger then predicts entities to compare
        (model.emissions if hasattr(model, "emissions") else model.head[1]).weight.normal_(0, 1)
    return model, data


def _crf_tagger(tmp: Path, **kw):
    from zoo.data.text import TokenDataModule
    from zoo.tasks.text.crf_tagger import CRFTagger

    model = CRFTagger(word_dim=16, char_dim=8, char_filters=16, subword_dim=16, hidden=16, **kw)
    data = TokenDataModule(dataset="ner_demo", tokenizer="words", max_length=8, long_text="chunks",
                           chunk_overlap=3, max_samples=48, batch_size=16, cache_dir=str(tmp / "cache"))
    return _with_predict_file(model, data, tmp)


def _expected(model, data):
    rows = [r for b in quiet_trainer().predict(model, datamodule=data) for r in b]
    tags = [r["tags"].split() for r in rows]
    assert all(is_valid_bio(t) for t in tags) and any(t != "O" for s in tags for t in s)
    return [json.loads(r["entities"]) for r in rows]


def _answers_match(model, data, tmp: Path, formats) -> dict[str, Path]:
    expected = _expected(model, data)
    folders = {}
    for fmt in formats:
        folder = tmp / f"{type(model).__name__}_{fmt}"
        meta = export_model(model, data, fmt, folder, samples=8)
        assert meta["verification"]["passed"], meta["verification"]
        got = load_predictor(folder).predict(LINES)
        assert [g["entities"] for g in got] == expected, fmt
        folders[fmt] = folder
    return folders


@pytest.mark.slow
def test_crf_tagger_cnn_answers_as_zoo_predict_in_every_format(tmp_path):
    model, data = _crf_tagger(tmp_path, context="cnn")
    folders = _answers_match(model, data, tmp_path, FORMATS)
    meta = json.loads((folders["onnx"] / "zoo_export.json").read_text())
    assert meta["family"] == "word_tagging" and len(meta["crf"]["transitions"]) == len(model.tag_names)
    assert (folders["onnx"] / "sentencepiece.model").is_file()


@pytest.mark.slow
def test_crf_tagger_bilstm_exports_to_onnx_and_says_why_not_torch_export(tmp_path):
    model, data = _crf_tagger(tmp_path)
    _answers_match(model, data, tmp_path, ["onnx"])
    with pytest.raises(ExportError, match="try --format onnx"):
        export_model(model, data, "torch_export", tmp_path / "te")
    assert not (tmp_path / "te").exists()


@pytest.mark.slow
def test_token_classifier_with_crf_answers_as_zoo_predict_in_every_format(tmp_path):
    from zoo.tasks.text.tiny import tiny_token_case

    model, data = tiny_token_case(tmp_path)
    model = type(model)(encoder=model.encoder_name, crf=True)
    model, data = _with_predict_file(model, data, tmp_path)
    _answers_match(model, data, tmp_path, FORMATS)


@pytest.mark.slow
@pytest.mark.subprocess
@pytest.mark.timeout(400)
def test_zoo_serve_answers_a_crf_tagger_request(tmp_path):
    model, data = _crf_tagger(tmp_path)
    expected = _expected(model, data)
    export_model(model, data, "onnx", tmp_path / "served", samples=8)
    port = _free_port()
    proc = start_server(tmp_path / "served", port, tmp_path, "--api-key", KEY, "--threads", "1")
    try:
        status, answer = _call(port, "/predict", {"text": LINES[2]})
        assert status == 200 and answer["entities"] == expected[2]
        status, info = _call(port, "/info")
        assert status == 200 and info["model"]["task"] == "token_classification"
    finally:
        kill_group(proc)
