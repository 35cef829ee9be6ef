"""``data.long_text: chunks`` for token classification: windows of whole words, one tag per original word."""

from __future__ import annotations

import csv
import logging
import random

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.backbones.text import load_tokenizer, tiny_bert_dir
from zoo.callbacks.prediction_writer import PredictionWriter
from zoo.data.text import TextDataError, TokenDataModule, split_words
from zoo.data.text.long_text import max_context_owners, word_spans_of
from zoo.tasks.text import TokenClassifier
from zoo.tasks.text.token import word_rows

# phrases whose tags are a function of the word; "okafor" and "nakamura" split into several word pieces
PHRASES = [(("john", "B-PER"), ("smith", "I-PER")), (("mary", "B-PER"), ("okafor", "I-PER")),
           (("acme", "B-ORG"), ("corp", "I-ORG")), (("paris", "B-LOC"),), (("nakamura", "B-ORG"),),
           (("new", "B-LOC"), ("york", "I-LOC"))]
FILLER = "the met visited works at lives said paid sent from by today yesterday".split()
TAG_OF = {w: t for phrase in PHRASES for w, t in phrase} | {w: "O" for w in FILLER}
TAGS = ["O", "B-LOC", "I-LOC", "B-ORG", "I-ORG", "B-PER", "I-PER"]


@pytest.fixture(scope="module")
def enc(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


def write_conll(path, n, lo, hi, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            for _ in range(rng.randint(lo, hi)):
                for word, tag in rng.choice(PHRASES) if rng.random() < 0.4 else ((rng.choice(FILLER), "O"),):
                    fh.write(f"{word} {tag}\n")
            fh.write("\n")
    return str(path)


def oracle(model, enc):
    """A forward that scores each position's tag from its token id: the tag of the word a first piece starts."""
    tok = load_tokenizer(enc)
    names = model.tag_names
    table = torch.full((len(tok), len(names)), -5.0)
    table[:, names.index("O")] = 5.0
    firsts = {}
    for word, tag in TAG_OF.items():
        first = tok.convert_tokens_to_ids(tok.tokenize(word)[0])
        assert firsts.setdefault(first, word) == word  # every word has a first piece of its own
        table[first] = -5.0
        table[first, names.index(tag)] = 5.0
    model.forward = lambda batch: table[batch["input_ids"]]


def data_for(path, enc, tmp_path, **kw):
    return TokenDataModule(train=path, val=path, test=path, tokenizer=enc, batch_size=4, tags=TAGS,
                           cache_dir=str(tmp_path / "c"), **kw)


def test_long_text_options_for_tokens(tmp_path, enc, caplog):
    path = write_conll(tmp_path / "a.conll", 4, 12, 14)
    data = data_for(path, enc, tmp_path, max_length=10, long_text="chunks", max_chunks=2)
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        data.setup("fit")
    assert data.truncated["test"] == 4 and "test split: 4 sentences are longer than max_chunks=2 windows" in caplog.text
    with pytest.raises(TextDataError, match="head_tail would leave the middle words of a sentence untagged; token "
                                            "classification takes truncate or chunks"):
        TokenDataModule(train=path, tokenizer=enc, long_text="head_tail")
    with pytest.raises(TextDataError, match="data.init_args.long_text must be one of truncate, chunks; got 'window'"):
        TokenDataModule(train=path, tokenizer=enc, long_text="window")
    with pytest.raises(TextDataError, match="data.init_args.chunk_overlap"):
        TokenDataModule(train=path, tokenizer=enc, long_text="chunks", max_length=16, chunk_overlap=8)


def test_a_sentence_that_fits_gets_the_ids_and_predictions_of_truncate(tmp_path, enc):
    path = write_conll(tmp_path / "short.conll", 12, 2, 6)
    plain = data_for(path, enc, tmp_path, max_length=48)
    chunked = data_for(path, enc, tmp_path, max_length=48, long_text="chunks")
    plain.setup("fit")
    chunked.setup("fit")
    for a, b in zip(plain.splits["train"].rows, chunked.splits["train"].rows, strict=True):
        assert a == b
    for a, b in zip(plain.splits["test"].rows, chunked.splits["test"].rows, strict=True):
        assert b["windows"] == [a["input_ids"]] and b["window_labels"] == [a["labels"]]
        assert b["word_spans"] == a["word_spans"]
    torch.manual_seed(0)
    model = TokenClassifier(encoder=enc)
    model.bind_data(plain)
    rows = [quiet_trainer().predict(model, d) for d in (plain, chunked)]
    assert rows[0] == rows[1] and len(rows[0][0]) == 4


def test_every_word_of_a_long_sentence_gets_one_tag_in_order(tmp_path, enc):
    path = write_conll(tmp_path / "long.conll", 8, 15, 25)
    data = data_for(path, enc, tmp_path, max_length=16, long_text="chunks", chunk_overlap=4, max_chunks=64)
    data.setup("fit")
    counts = data.data_checks["long_text"]["test"]
    assert counts["longer_than_max_length"] == counts["texts"] == 8 and counts["windows"] > 3 * 8
    # training: one example per window, each word labelled on its first piece
    assert len(data.splits["train"]) == data.data_checks["long_text"]["train"]["windows"] == counts["windows"]
    model = TokenClassifier(encoder=enc, lr=1e-3)
    quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0).fit(model, data)
    # validation / test: the windows merge back into one tag per word; an oracle on the ids gets every word right
    oracle(model, enc)
    result = quiet_trainer().test(model, data, verbose=False)[0]
    gold, pred = model.last_test_sequences
    texts = [r["text"] for r in data.splits["test"].rows]  # the test loader groups by length: compare sorted
    assert sorted(gold) == sorted([TAG_OF[w] for w in t.split()] for t in texts) and pred == gold
    assert result["test/f1"] == 1.0 and result["test/token_acc"] == 1.0
    # truncate at the same length does not see the words past the window: they are scored as untagged, so the
    # entities there are missed (the score does not leave them out), and the oracle's recall falls
    plain = data_for(path, enc, tmp_path, max_length=16)
    cut = quiet_trainer().test(model, plain, verbose=False)[0]
    assert sorted(model.last_test_sequences[0]) == sorted(gold)
    assert cut["test/recall"] < 0.6 and cut["test/f1"] < 0.75


@pytest.mark.parametrize("how",
                         [{"long_text": "truncate"}, {"long_text": "chunks", "max_chunks": 1, "chunk_overlap": 2}])
def test_words_the_model_never_sees_count_as_missed(tmp_path, enc, how):
    from zoo.baselines.references import _words_and_tags

    path = write_conll(tmp_path / "long.conll", 6, 12, 16)
    data = data_for(path, enc, tmp_path, max_length=12, **how)
    data.setup("fit")
    for row in data.splits["test"].rows:
        words, tags = _words_and_tags(row, TAGS)  # the reference baseline reads every word, seen or not
        assert words == row["text"].split() and tags == [TAG_OF[w] for w in words]
        assert row["cut_tags"] and len(row["word_spans"]) + len(row["cut_spans"]) == len(words)
    assert all("cut_tags" not in r for r in data.splits["train"].rows)  # training needs only what it sees
    model = TokenClassifier(encoder=enc)
    model.bind_data(data)
    oracle(model, enc)
    result = quiet_trainer().test(model, data, verbose=False)[0]
    gold, pred = model.last_test_sequences
    assert sorted(gold) == sorted([TAG_OF[w] for w in r["text"].split()] for r in data.splits["test"].rows)
    seen = [len(r["word_spans"]) for r in data.splits["test"].rows]
    assert sum(t != "O" for p in pred for t in p) < sum(t != "O" for g in gold for t in g)
    assert result["test/recall"] < 1.0 and sum(seen) < sum(map(len, gold))


def test_max_context_picks_the_window_where_a_word_is_farthest_from_an_edge(tmp_path, enc):
    # word 1 sits on w0's edge side less than on w1's; word 2 is on w0's right edge; -1 marks special tokens
    assert max_context_owners([[-1, 0, 1, 2, -1], [-1, 1, 2, 3, -1]]) == {0: 0, 1: 0, 2: 1, 3: 1}
    assert word_spans_of([1] * 20, keep=8, overlap=3, max_chunks=10) == [(0, 8), (5, 13), (10, 18), (15, 20)]
    # a word longer than a window sits alone; the overlap never starts a window on a word it cannot hold
    assert word_spans_of([1, 1, 20, 1, 1], keep=4, overlap=1, max_chunks=10) == [(0, 2), (2, 3), (3, 5)]
    line = " ".join(FILLER + FILLER[:7])  # 20 one-piece words: windows of 8 (max_length 10) sharing 3
    (tmp_path / "p.txt").write_text(line + "\n", encoding="utf-8")
    data = data_for(write_conll(tmp_path / "t.conll", 6, 2, 4), enc, tmp_path, max_length=10, long_text="chunks",
                    chunk_overlap=3, predict=str(tmp_path / "p.txt"))
    names = data.class_names
    model = TokenClassifier(encoder=enc, tag_names=names)
    # one text in the batch: its window j scores tag j at every position
    model.forward = lambda b: torch.eye(len(names))[:len(b["input_ids"]), None].expand(*b["input_ids"].shape, -1)
    [[row]] = quiet_trainer().predict(model, data)
    # overlaps (5 6 7), (10 11 12), (15 16 17): the middle word is a tie, kept by the longer, then earlier window
    owners = [0] * 7 + [1] * 5 + [2] * 5 + [3] * 3
    assert row["tags"].split() == [names[j] for j in owners]
    batch = data.predict_dataloader().collate_fn(data.splits["predict"].rows)
    assert [len(x) for x in word_rows(batch["labels"], batch)] == [20]


def test_predict_writes_one_row_per_text_with_a_tag_per_word(tmp_path, enc):
    long = " ".join(w for phrase in PHRASES for w, _ in phrase) + " " + " ".join(FILLER)
    lines = [long, "John Smith met Mary Okafor in Paris , said Acme Corp .", long + " " + long]
    (tmp_path / "p.txt").write_text("\n".join(lines) + "\n", encoding="utf-8")
    data = data_for(write_conll(tmp_path / "t.conll", 6, 2, 4), enc, tmp_path, max_length=12, long_text="chunks",
                    chunk_overlap=3, max_chunks=32, predict=str(tmp_path / "p.txt"))
    model = TokenClassifier(encoder=enc, tag_names=data.class_names)
    oracle(model, enc)
    out = tmp_path / "preds.csv"
    quiet_trainer(callbacks=[PredictionWriter(str(out))]).predict(model, data, return_predictions=False)
    rows = list(csv.DictReader(out.open(encoding="utf-8")))
    assert [r["text"] for r in rows] == lines
    for row in rows:
        words = split_words(row["text"])[0]
        assert row["tags"].split() == [TAG_OF.get(w.lower(), "O") for w in words]
    assert '"text": "John Smith"' in rows[1]["entities"] and '"text": "Mary Okafor"' in rows[1]["entities"]
