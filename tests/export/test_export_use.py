"""A ``use_multilingual`` text classifier (here a tiny USE-shaped encoder with its own SentencePiece model) exports
to every format and the exported predictor, tokenizing with the SentencePiece asset written beside the graph,
answers as ``zoo predict``."""

from __future__ import annotations

import json

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.export import export_model, load_predictor
from zoo.export.formats import FORMATS


@pytest.mark.slow
def test_a_use_classifier_answers_as_zoo_predict_in_every_format(tmp_path):
    from zoo.tasks.text.tiny import tiny_use_text_case

    model, data = tiny_use_text_case(tmp_path)
    model.bind_data(data)
    torch.manual_seed(0)
    with torch.no_grad():  # a head that separates the classes, so labels differ between texts
        model.head[1].weight.normal_(0, 3.0)
    expected = [r for batch in quiet_trainer().predict(model, datamodule=data) for r in batch]
    texts = [r["text"] for r in data.splits["test"].rows]
    assert len({e["label"] for e in expected}) > 1
    for fmt in FORMATS:
        folder = tmp_path / fmt
        meta = export_model(model, data, fmt, folder)
        assert meta["verification"]["passed"] and meta["verification"]["top1_agreement"] == 1.0, fmt
        got = load_predictor(folder).predict(texts)
        assert [g["label"] for g in got] == [e["label"] for e in expected], fmt
        assert max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected)) <= 1e-5, fmt
    assert (tmp_path / "onnx" / "tokenizer" / "tokenizer.json").is_file()
    manifest = json.loads((tmp_path / "safetensors" / "zoo_export.json").read_text())
    encoder_config = json.loads((tmp_path / "safetensors" / "encoder" / "config.json").read_text())
    assert manifest["hparams"]["encoder"] == "encoder" and encoder_config["zoo_encoder"] == "use_multilingual"
