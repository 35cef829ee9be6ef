"""``data.long_text``: truncate / head_tail / chunks, and the model's pooling of window logits."""

from __future__ import annotations

import csv
import logging
import random

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.backbones.text import load_tokenizer, pool, tiny_bert_dir
from zoo.data.text import TextDataError, TextDataModule
from zoo.data.text.long_text import frame, head_tail, windows
from zoo.tasks.text import TextClassifier

WORDS = "good bad great terrible love hate happy sad movie film book price".split()


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


def write_csv(path, n, lo, hi, seed=0):
    rng = random.Random(seed)
    with open(path, "w", newline="") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            key = "love" if label == "pos" else "hate"
            words = [rng.choice(WORDS) for _ in range(rng.randint(lo, hi))]
            words.insert(rng.randrange(len(words) + 1), key)
            w.writerow([" ".join(words), label])
    return str(path)


def test_windows_cover_the_text_with_overlap(enc):
    tok = load_tokenizer(enc)
    body = list(range(1000, 1100))
    wins = windows(tok, body, max_length=20, overlap=5, max_chunks=50)
    inner = [w[1:-1] for w in wins]
    assert all(len(w) <= 20 for w in wins) and wins[0][0] == tok.cls_token_id and wins[0][-1] == tok.sep_token_id
    assert inner[0] == body[:18] and inner[1][:5] == body[13:18]  # 18 tokens per window, 5 shared
    assert inner[-1][-1] == body[-1]
    assert sorted({t for w in inner for t in w}) == body  # nothing lost
    assert len(windows(tok, body, 20, 5, max_chunks=2)) == 2
    assert windows(tok, body[:10], 20, 5, 50) == [frame(tok, body[:10])]


def test_head_tail_keeps_the_start_and_the_end(enc):
    tok = load_tokenizer(enc)
    body = list(range(1000, 1100))
    ids = head_tail(tok, body, max_length=22)
    assert len(ids) == 22 and ids[1:6] == body[:5] and ids[6:-1] == body[-15:]


def test_bad_long_text_names_the_option(tmp_path, enc):
    with pytest.raises(TextDataError, match="data.init_args.long_text must be one of truncate, head_tail, chunks"):
        TextDataModule(train=write_csv(tmp_path / "a.csv", 8, 3, 5), tokenizer=enc, long_text="window")
    with pytest.raises(TextDataError, match="data.init_args.chunk_overlap"):
        TextDataModule(train=write_csv(tmp_path / "a.csv", 8, 3, 5), tokenizer=enc, max_length=16, chunk_overlap=8,
                       long_text="chunks")


def _logits(model, data):
    model.eval()
    out = {}
    with torch.no_grad():
        for batch in data.split_loader("test", train=False, grouped=False):
            for i, row in zip(batch["id"], model(batch)):
                out[i] = row
    return out


def test_chunks_predicts_a_short_text_as_truncate_does(tmp_path, enc):
    path = write_csv(tmp_path / "short.csv", 40, 3, 8)
    common = dict(train=path, tokenizer=enc, max_length=32, batch_size=8, cache_dir=str(tmp_path / "c"))
    plain = TextDataModule(**common)
    chunked = TextDataModule(long_text="chunks", **common)
    torch.manual_seed(0)
    model = TextClassifier(encoder=enc)
    model.bind_data(plain)
    a, b = _logits(model, plain), _logits(model, chunked)
    assert a.keys() == b.keys() and all(torch.allclose(a[k], b[k], atol=1e-5) for k in a)


@pytest.mark.parametrize("pooling", ["mean", "max"])
def test_chunks_train_test_and_predict_pool_the_windows(tmp_path, enc, pooling):
    path = write_csv(tmp_path / "long.csv", 48, 30, 60)
    data = TextDataModule(train=path, tokenizer=enc, max_length=16, long_text="chunks", chunk_overlap=4,
                          batch_size=8, cache_dir=str(tmp_path / "c"))
    model = TextClassifier(encoder=enc, lr=3e-3, chunk_pooling=pooling)
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, data)
    batch = next(iter(data.split_loader("test", train=False, grouped=False)))
    assert len(batch["window_doc"]) > len(batch["label"])  # every text here needs several windows
    assert model(batch).shape == (len(batch["label"]), 2)
    # the pooled logits are the mean / max of each document's own window logits
    model.eval()
    out = model(batch)
    flat = model.head(pool(model.encode(model.embed(batch), batch), batch["attention_mask"], model.pooling))
    first = flat[batch["window_doc"] == 0]
    want = first.mean(0) if pooling == "mean" else first.amax(0)
    assert torch.allclose(out[0], want, atol=1e-5)
    results = quiet_trainer(limit_test_batches=2).test(model, data, verbose=False)
    assert 0.0 <= results[0]["test/acc"] <= 1.0
    preds = quiet_trainer(limit_predict_batches=1).predict(model, data)
    assert len(preds[0]) == data.eval_batch_size
    assert data.long_text_counts["train"]["windows"] > data.long_text_counts["train"]["texts"]


def test_chunks_does_not_call_long_texts_truncated(tmp_path, enc, caplog):
    # with chunks a long text is split, not cut: no "were truncated" warning, and only windows past max_chunks
    # count as truncated (the model card's truncation rate)
    path = write_csv(tmp_path / "long.csv", 24, 30, 60)
    common = dict(train=path, tokenizer=enc, max_length=16, batch_size=8, cache_dir=str(tmp_path / "c"))
    with caplog.at_level(logging.INFO, logger="zoo"):
        chunked = TextDataModule(long_text="chunks", chunk_overlap=4, max_chunks=64, **common)
        chunked.setup("fit")
    assert "were split into windows" in caplog.text and "were truncated" not in caplog.text
    per_text = chunked.long_text_counts["train"]["windows"] / chunked.long_text_counts["train"]["texts"]
    assert per_text >= 2 and f"a batch of 8 texts runs about {round(per_text * 8)} sequences" in caplog.text
    assert chunked.truncated["train"] == 0
    caplog.clear()
    with caplog.at_level(logging.INFO, logger="zoo"):
        cut = TextDataModule(**common)
        cut.setup("fit")
    assert "were truncated" in caplog.text and cut.truncated["train"] > 0
