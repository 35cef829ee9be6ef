"""zoo export for the text classifiers that tests/export/test_export.py leaves out, each answering as ``zoo predict``
on the same inputs in every format: multi-label (a sigmoid and a decision threshold per label, docs/serving.md's
``multi_label`` and ``thresholds``) and text pairs (``text_pair`` requests, ``token_type_ids`` in the graph)."""

from __future__ import annotations

import csv
import json
import random

import pytest
import torch

from tests.common.helpers import quiet_trainer
from tests.export.test_export import _export_all, _predict_rows
from zoo.data.text import TextDataModule
from zoo.tasks.text.classifier import TextClassifier
from zoo.tasks.text.tiny import _tiny_encoder_dir


def _fit(model, data, steps=12):
    torch.manual_seed(0)
    quiet_trainer(max_steps=steps, limit_val_batches=0, num_sanity_val_steps=0).fit(model, data)
    data.setup("predict")


@pytest.mark.slow
def test_a_multi_label_classifier_exports_its_thresholds(tmp_path):
    enc = _tiny_encoder_dir(tmp_path)
    data = TextDataModule(dataset="tickets_multilabel", tokenizer=enc, max_length=32, max_samples=96, batch_size=16,
                          cache_dir=str(tmp_path / "cache"))
    model = TextClassifier(encoder=enc, pooling="mean", lr=3e-3)
    _fit(model, data)
    assert model.multi_label
    with torch.no_grad():  # per-label thresholds that differ, so the export must carry each one
        model.label_mode.thresholds.copy_(torch.linspace(0.3, 0.6, len(model.class_names)))
    expected = _predict_rows(model, data)
    texts = [r["text"] for r in data.splits["test"].rows]
    scores = [json.loads(e["scores"]) for e in expected]
    thresholds = model.label_mode.thresholds.tolist()
    # a score within rounding of its threshold could fall either way; the data has none
    assert all(abs(s[n] - t) > 1e-3 for s in scores for n, t in zip(model.class_names, thresholds))
    assert any(e["labels"] for e in expected)  # something to compare: not every text below every threshold
    for fmt, predictor in _export_all(model, data, tmp_path, "multilabel").items():
        got = predictor.predict(texts)
        assert [g["labels"] for g in got] == [[x for x in e["labels"].split("|") if x] for e in expected], fmt
        diff = max(abs(g["scores"][n] - s[n]) for g, s in zip(got, scores) for n in model.class_names)
        print(f"multi-label {fmt}: max |score - zoo predict| {diff:.2e}")
        assert diff <= 1e-4, fmt  # zoo predict rounds scores to 4 decimals
        meta = json.loads((tmp_path / f"multilabel_{fmt}" / "zoo_export.json").read_text())
        assert meta["multi_label"] is True, fmt
        torch.testing.assert_close(torch.tensor(meta["thresholds"]), torch.tensor(thresholds))


def _pairs_csv(path, n=72, seed=0):
    """``same`` when both sides name the same animal, else ``different``: a label only the pair determines."""
    rng = random.Random(seed)
    animals = "cat dog horse cow sheep goat duck fox".split()
    rows = []
    for i in range(n):
        a = rng.choice(animals)
        b = a if i % 2 else rng.choice([x for x in animals if x != a])
        rows.append({"text": f"the {a} number {i} sat", "pair": f"a {b} was seen",
                     "label": "same" if a == b else "different"})
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, ["text", "pair", "label"])
        writer.writeheader()
        writer.writerows(rows)
    return rows


@pytest.mark.slow
def test_a_text_pair_classifier_exports_and_answers_text_pair_requests(tmp_path):
    enc = _tiny_encoder_dir(tmp_path)
    rows = _pairs_csv(tmp_path / "pairs.csv")
    data = TextDataModule(train=str(tmp_path / "pairs.csv"), text_pair_column="pair", tokenizer=enc, max_length=32,
                          batch_size=16, cache_dir=str(tmp_path / "cache"))
    model = TextClassifier(encoder=enc, pooling="cls", lr=3e-3)
    _fit(model, data)
    expected = _predict_rows(model, data)
    test_rows = data.splits["test"].rows
    assert all("token_type_ids" in r for r in test_rows) and any(1 in r["token_type_ids"] for r in test_rows)
    requests = [{"text": rows[int(r["id"].rsplit(":", 1)[1]) - 1]["text"],
                 "text_pair": rows[int(r["id"].rsplit(":", 1)[1]) - 1]["pair"]} for r in test_rows]
    assert [q["text"] for q in requests] == [r["text"] for r in test_rows]
    for fmt, predictor in _export_all(model, data, tmp_path, "pairs").items():
        meta = json.loads((tmp_path / f"pairs_{fmt}" / "zoo_export.json").read_text())
        assert meta["preprocessing"]["text_pair"] is True, fmt
        got = predictor.predict(requests)
        diff = max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected))
        print(f"text pair {fmt}: max |confidence - zoo predict| {diff:.2e}")
        assert [g["label"] for g in got] == [e["label"] for e in expected] and diff <= 1e-5, fmt
        # the pair matters to the exported model: the same text with its second side dropped answers otherwise
        alone = predictor.predict([{"text": q["text"], "text_pair": "nothing was seen"} for q in requests])
        assert max(abs(a["confidence"] - g["confidence"]) for a, g in zip(alone, got)) > 1e-4, fmt
