"""An exported text model reads a long request as its run's data read it (``data.long_text``): a token classifier
trained with ``chunks`` tags every word of a long sentence, its windows merged as ``zoo predict`` merges them; a
text classifier pools its windows (``chunks``, with the run's ``chunk_pooling``) or keeps the head and the tail
(``head_tail``). Each answers as ``zoo predict`` on the same long texts, in every format; a truncating tagger says
how many words it left untagged."""

from __future__ import annotations

import json

import pytest
import torch

from tests.data.test_token_chunks import FILLER, PHRASES, TAGS, write_conll
from tests.export.test_export import _export_all, _predict_rows
from zoo.data.text import TextDataModule, TokenDataModule, split_words
from zoo.tasks.text import TokenClassifier
from zoo.tasks.text.classifier import TextClassifier
from zoo.tasks.text.tiny import _tiny_encoder_dir

LONG = " ".join(w for phrase in PHRASES for w, _ in phrase) + " " + " ".join(FILLER)


@pytest.mark.slow
@pytest.mark.parametrize("long_text", ["chunks", "truncate"])
def test_a_tagger_answers_long_sentences_as_zoo_predict(tmp_path, long_text):
    enc = _tiny_encoder_dir(tmp_path)
    lines = [LONG, "John Smith met Mary Okafor in Paris , said Acme Corp .", LONG + " " + LONG, "paris"]
    (tmp_path / "p.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    conll = write_conll(tmp_path / "t.conll", 8, 2, 4)
    data = TokenDataModule(train=conll, val=conll, test=conll, tokenizer=enc, batch_size=4, tags=TAGS,
                           cache_dir=str(tmp_path / "c"), max_length=12, long_text=long_text, chunk_overlap=3,
                           max_chunks=32, predict=str(tmp_path / "p.txt"))
    torch.manual_seed(3)
    model = TokenClassifier(encoder=enc, tag_names=TAGS)
    model.bind_data(data)
    expected = [json.loads(e["entities"]) for e in _predict_rows(model, data)]
    assert sum(map(len, expected)) >= 3  # the untrained tagger finds entities to compare
    n_words = [len(split_words(line)[0]) for line in lines]
    for fmt, predictor in _export_all(model, data, tmp_path, f"tagger_{long_text}").items():
        got = predictor.predict(lines)
        assert [g["entities"] for g in got] == expected, fmt
        untagged = [g.get("untagged_words", 0) for g in got]
        if long_text == "chunks":
            assert untagged == [0, 0, 0, 0], fmt
        else:  # 10 word pieces fit a window of 12: the rest of a long sentence is not read, and the answer says so
            assert untagged[0] > 0 and untagged[2] == n_words[2] - (n_words[0] - untagged[0]) and untagged[3] == 0, fmt
    if long_text == "chunks":  # entities past what one window holds are found (and so compared) too
        from zoo.backbones.text import load_tokenizer

        tok, (words, spans) = load_tokenizer(enc), split_words(lines[2])
        pieces = [len(tok.tokenize(w)) for w in words]
        first_cut = next(i for i in range(len(words)) if sum(pieces[:i + 1]) > 10)  # 12 less [CLS] and [SEP]
        assert any(e["start"] >= spans[first_cut][0] for e in expected[2])


@pytest.mark.slow
@pytest.mark.parametrize("long_text, pooling", [("chunks", "max"), ("chunks", "mean"), ("head_tail", "mean")])
def test_a_text_classifier_answers_long_texts_as_zoo_predict(tmp_path, long_text, pooling):
    enc = _tiny_encoder_dir(tmp_path)
    data = TextDataModule(dataset="tweets_sentiment", tokenizer=enc, max_length=12, max_samples=96, batch_size=16,
                          long_text=long_text, chunk_overlap=2, cache_dir=str(tmp_path / "cache"))
    torch.manual_seed(0)
    model = TextClassifier(encoder=enc, pooling="mean", chunk_pooling=pooling)
    model.bind_data(data)
    expected = _predict_rows(model, data)
    texts = [r["text"] for r in data.splits["test"].rows]
    assert data.long_text_counts["test"]["longer_than_max_length"] >= len(texts) // 2  # most need more than a window
    for fmt, predictor in _export_all(model, data, tmp_path, f"text_{long_text}_{pooling}").items():
        meta = json.loads((tmp_path / f"text_{long_text}_{pooling}_{fmt}" / "zoo_export.json").read_text())
        assert meta["preprocessing"]["long_text"] == long_text
        got = predictor.predict(texts)
        diff = max(abs(g["confidence"] - e["confidence"]) for g, e in zip(got, expected))
        print(f"{long_text}/{pooling} {fmt}: max |confidence - zoo predict| {diff:.2e}")
        assert [g["label"] for g in got] == [e["label"] for e in expected] and diff <= 1e-5, fmt
