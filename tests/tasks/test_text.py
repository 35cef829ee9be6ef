"""Text family: tiny BERT (2 layers, hidden 32) built in the test; never the packaged 83 MB MiniLM."""

from __future__ import annotations

import csv
import json
import logging
import re
import shlex
from pathlib import Path

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.backbones.text import TextBackboneError, load_tokenizer, tiny_bert_dir
from zoo.data.text import (
    LengthGroupedBatchSampler,
    TextDataError,
    TextDataModule,
    TokenDataModule,
    align_labels,
    read_conll,
)
from zoo.tasks.text import TextClassifier, TokenClassifier

RECIPES = sorted((Path(__file__).resolve().parents[2] / "recipes" / "text").glob("*.yaml"))


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


def write_csv(path: Path, rows: list[dict], fields: list[str] | None = None) -> Path:
    with open(path, "w", newline="", encoding="utf-8") as fh:
        writer = csv.DictWriter(fh, fieldnames=fields or list(rows[0]))
        writer.writeheader()
        writer.writerows(rows)
    return path


def sentiment_rows(n: int = 60) -> list[dict]:
    good = ["great movie i love it", "happy with the book", "really good film", "love the price"]
    bad = ["terrible movie i hate it", "sad and bad book", "really bad film", "hate the late delivery"]
    return [{"text": (good if i % 2 else bad)[i % 4], "label": "pos" if i % 2 else "neg"} for i in range(n)]


def ticket_rows(n: int = 80) -> list[dict]:
    phrases = {"billing": "the card charge on my bill", "account": "login password error",
               "shipping": "late package delivery"}
    names = list(phrases)
    rows = []
    for i in range(n):
        labels = [names[i % 3]] + ([names[(i + 1) % 3]] if i % 4 == 0 else [])
        rows.append({"text": " and ".join(phrases[x] for x in labels), "labels": "|".join(sorted(labels))})
    return rows


# -- multi-label -------------------------------------------------------------------------------------------
@pytest.mark.slow
def test_multilabel_fit_metrics_thresholds_and_predict(tiny, tmp_path):
    path = write_csv(tmp_path / "tickets.csv", ticket_rows(60))
    data = TextDataModule(train=str(path), label_column="labels", label_separator="|", tokenizer=tiny, max_length=16,
                          batch_size=16, cache_dir=str(tmp_path / "cache"))
    assert data.multi_label and data.class_names == ["account", "billing", "shipping"]
    model = TextClassifier(encoder=tiny, thresholds=[0.5, 0.4, 0.6], class_weights="balanced", lr=5e-3)
    trainer = quiet_trainer(max_epochs=3, num_sanity_val_steps=0)
    trainer.fit(model, data)
    assert model.multi_label
    assert model.thresholds.tolist() == pytest.approx([0.5, 0.4, 0.6])
    results = quiet_trainer().test(model, data, verbose=False)[0]
    for key in ("test/f1_micro", "test/f1_macro", "test/exact_match"):
        assert 0.0 <= results[key] <= 1.0
    assert results["test/f1_micro"] > 0.5  # three separable phrase families
    paths = model.write_test_report(tmp_path / "report")
    report = json.loads((tmp_path / "report" / "multilabel_report.json").read_text())
    assert set(report["labels"]) == {"account", "billing", "shipping"} and len(paths) == 2
    rows = [r for batch in quiet_trainer().predict(model, data) for r in batch]
    assert {"id", "labels", "scores"} <= set(rows[0])
    assert all(set(filter(None, r["labels"].split("|"))) <= {"account", "billing", "shipping"} for r in rows)


# -- NER alignment -----------------------------------------------------------------------------------------
def test_align_labels_first_piece_only():
    labels, firsts = align_labels([None, 0, 0, 0, 1, 2, 2, None], [3, 1, 2])
    assert labels == [-100, 3, -100, -100, 1, 2, -100, -100]
    assert firsts == [1, 4, 5]


def test_ner_alignment_with_words_split_into_pieces(tiny, tmp_path):
    # "okafor" and "nakamura" are not in the tiny vocabulary: they split into several word pieces
    conll = tmp_path / "train.conll"
    conll.write_text("John B-PER\nOkafor I-PER\nvisited O\nNakamura B-LOC\n.\tO\n\nMary B-PER\nsaid O\n",
                     encoding="utf-8")
    data = TokenDataModule(train=str(conll), val=str(conll), test=str(conll), tokenizer=tiny, max_length=32,
                           cache_dir=str(tmp_path / "cache"))
    data.setup("fit")
    row = data.splits["train"].rows[0]
    tok = load_tokenizer(tiny)
    pieces = tok.convert_ids_to_tokens(row["input_ids"])
    assert len(pieces) > 5 + 2  # some words became several pieces
    kept = [(p, data.class_names[lab]) for p, lab in zip(pieces, row["labels"]) if lab != -100]
    assert [t for _, t in kept] == ["B-PER", "I-PER", "O", "B-LOC", "O"]
    assert [p.startswith("##") for p, _ in kept] == [False] * 5  # only first pieces carry labels
    n_okafor = len(tok.tokenize("okafor"))
    assert n_okafor > 1 and row["labels"].count(-100) == len(pieces) - 5
    # predicted entities map back to character offsets of the sentence
    model = TokenClassifier(encoder=tiny, tag_names=data.class_names)
    batch = data.test_dataloader().collate_fn([data.splits["test"].rows[0]])
    names = data.class_names
    want = ["B-PER", "I-PER", "O", "B-LOC", "O"]
    logits = torch.full((1, batch["input_ids"].shape[1], len(names)), -5.0)
    for pos, tag in zip([i for i, lab in enumerate(row["labels"]) if lab != -100], want):
        logits[0, pos, names.index(tag)] = 5.0
    model.forward = lambda b: logits
    out = model.predict_step(batch, 0)[0]
    ents = json.loads(out["entities"])
    assert [(e["type"], e["text"]) for e in ents] == [("PER", "John Okafor"), ("LOC", "Nakamura")]
    assert all(out["text"][e["start"]:e["end"]] == e["text"] for e in ents)


def test_token_classifier_entity_metrics_and_report(tiny, tmp_path):
    data = TokenDataModule(dataset="ner_demo", tokenizer=tiny, max_length=40, max_samples=48, batch_size=16,
                           cache_dir=str(tmp_path / "cache"))
    model = TokenClassifier(encoder=tiny, lr=5e-3)
    quiet_trainer(max_epochs=1, num_sanity_val_steps=0).fit(model, data)
    res = quiet_trainer().test(model, data, verbose=False)[0]
    assert {"test/precision", "test/recall", "test/f1", "test/token_acc"} <= set(res)
    assert all(0.0 <= res[k] <= 1.0 for k in ("test/precision", "test/recall", "test/f1"))
    paths = model.write_test_report(tmp_path / "rep")
    table = json.loads((tmp_path / "rep" / "entity_report.json").read_text())
    assert {"LOC", "MONEY", "ORG", "PER"} <= set(table) and len(paths) == 2


# -- adapter-only checkpoints, exact reload, export ---------------------------------------------------------
@pytest.mark.slow
def test_lora_checkpoint_is_adapter_only_and_reloads_exactly(tiny, tmp_path):
    from lightning.pytorch.callbacks import ModelCheckpoint
    from transformers import AutoModel

    from zoo.backbones.text import pool

    path = write_csv(tmp_path / "s.csv", sentiment_rows())
    data = TextDataModule(train=str(path), tokenizer=tiny, max_length=16, batch_size=8, cache_dir=str(tmp_path / "c"))
    model = TextClassifier(encoder=tiny, peft={"method": "lora", "r": 4, "target_modules": ["query", "value"]}, lr=1e-2)
    ckpt = ModelCheckpoint(dirpath=tmp_path / "ck", filename="last")
    quiet_trainer(max_steps=4, num_sanity_val_steps=0, limit_val_batches=1, enable_checkpointing=True,
                  callbacks=[ckpt]).fit(model, data)
    saved = torch.load(ckpt.best_model_path, weights_only=True)
    keys = list(saved["state_dict"])
    assert keys and all("lora_" in k or k.startswith("head.") or k == "temperature" for k in keys)
    assert saved["zoo"]["adapter_only"] and Path(saved["zoo"]["base_model"]) == Path(tiny)
    adapter_bytes = sum(v.numel() * v.element_size() for v in saved["state_dict"].values())
    full_bytes = sum(v.numel() * v.element_size() for v in model.state_dict().values())
    assert adapter_bytes < 0.1 * full_bytes

    model.eval()
    batch = next(iter(data.test_dataloader()))
    with torch.no_grad():
        before = model(batch)
    again = TextClassifier.load_from_checkpoint(ckpt.best_model_path).eval()
    with torch.no_grad():
        assert torch.equal(again(batch), before)
    assert again.class_names == ["neg", "pos"]

    out = again.merge_and_export(tmp_path / "export")
    assert (out / "model.safetensors").is_file() and (out / "tokenizer.json").is_file()
    plain = AutoModel.from_pretrained(str(out), local_files_only=True).eval()
    from safetensors.torch import load_file

    head = load_file(str(out / "zoo_head.safetensors"))
    with torch.no_grad():
        hidden = plain(input_ids=batch["input_ids"], attention_mask=batch["attention_mask"]).last_hidden_state
        logits = pool(hidden, batch["attention_mask"], "mean") @ head["weight"].T + head["bias"]
    torch.testing.assert_close(logits, before, atol=1e-5, rtol=1e-4)
    assert json.loads((out / "zoo_head.json").read_text())["class_names"] == ["neg", "pos"]


@pytest.mark.parametrize("method", ["ia3", "adalora"])
def test_other_peft_methods_train(tiny, tmp_path, method):
    path = write_csv(tmp_path / "s.csv", sentiment_rows(32))
    data = TextDataModule(train=str(path), tokenizer=tiny, max_length=16, batch_size=8, cache_dir=str(tmp_path / "c"))
    spec = {"method": method} if method == "ia3" else {"method": method, "init_r": 4, "target_r": 2, "total_step": 10}
    model = TextClassifier(encoder=tiny, peft=spec, lr=1e-2)
    quiet_trainer(max_steps=3, num_sanity_val_steps=0, limit_val_batches=1).fit(model, data)
    trainable = [n for n, p in model.named_parameters() if p.requires_grad and not n.startswith("head.")]
    assert trainable and all(("ia3_" if method == "ia3" else "lora_") in n for n in trainable)


def test_bad_peft_method_names_the_flag(tiny):
    with pytest.raises(TextBackboneError, match="model.init_args.peft.method must be one of none, lora, ia3, adalora"):
        TextClassifier(encoder=tiny, peft={"method": "prefix"}, num_classes=2, multi_label=False)


# -- data: truncation, caching, batching ---------------------------------------------------------------------
def test_truncation_is_reported_and_tokenization_cached(tiny, tmp_path, caplog, monkeypatch):
    rows = sentiment_rows(20) + [{"text": " ".join(["good"] * 40), "label": "pos"}]
    path = write_csv(tmp_path / "s.csv", rows)
    kw = dict(train=str(path), tokenizer=tiny, max_length=12, val_fraction=0.0, test_fraction=0.0,
              cache_dir=str(tmp_path / "cache"))
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        data = TextDataModule(**kw)
        data.setup("fit")
    assert data.truncated["train"] == 1
    assert re.search(r"1 of 21 texts \(4.8%\) are longer than max_length=12 tokens and were truncated; "
                     r"--data.init_args.long_text chunks reads all of it \(windows of 12 tokens", caplog.text)
    assert max(data.splits["train"].lengths) == 12
    assert len(list((tmp_path / "cache").glob("*.npz"))) == 1
    # a second datamodule on the same content reads the cache instead of tokenizing
    again = TextDataModule(**kw)
    original = type(again.tokenizer).__call__

    def no_second_tokenization(self, *args, **kwargs):
        # the vocabulary check tokenizes a sample without special tokens on every set-up; the splits must not be
        if kwargs.get("add_special_tokens", True):
            pytest.fail("tokenized twice")
        return original(self, *args, **kwargs)

    monkeypatch.setattr(type(again.tokenizer), "__call__", no_second_tokenization)
    again.setup("fit")
    assert [r["input_ids"] for r in again.splits["train"].rows] == [r["input_ids"] for r in data.splits["train"].rows]


def test_length_grouped_batches_cover_everything_once():
    lengths = [(i * 37) % 100 + 1 for i in range(250)]
    sampler = LengthGroupedBatchSampler(lengths, batch_size=8, shuffle=True, seed=0, pool_batches=4)
    batches = list(sampler)
    flat = sorted(i for b in batches for i in b)
    assert flat == list(range(250)) and len(batches) == len(sampler)
    spread = sum(max(lengths[i] for i in b) - min(lengths[i] for i in b) for b in batches) / len(batches)
    assert spread < 25  # random batches of 8 from 1..100 would spread about 75
    assert [sorted(b) for b in list(sampler)] != [sorted(b) for b in batches]  # reshuffled next epoch


def test_dynamic_padding_pads_to_batch_longest(tiny, tmp_path):
    path = write_csv(tmp_path / "s.csv", sentiment_rows(24))
    data = TextDataModule(train=str(path), tokenizer=tiny, max_length=64, batch_size=4, cache_dir=str(tmp_path / "c"))
    for batch in data.train_dataloader():
        assert batch["input_ids"].shape[1] == int(batch["attention_mask"].sum(1).max())


def test_text_pair_columns(tiny, tmp_path):
    rows = [{"a": r["text"], "b": "the book", "label": r["label"]} for r in sentiment_rows(24)]
    path = write_csv(tmp_path / "p.csv", rows)
    data = TextDataModule(train=str(path), text_column="a", text_pair_column="b", tokenizer=tiny, max_length=32,
                          cache_dir=str(tmp_path / "c"))
    batch = next(iter(data.train_dataloader()))
    assert int(batch["token_type_ids"].max()) == 1


# -- bad inputs: one clear error each -----------------------------------------------------------------------
def test_empty_text_names_file_and_row(tiny, tmp_path):
    rows = sentiment_rows(6)
    rows[3]["text"] = "   "
    path = write_csv(tmp_path / "e.csv", rows)
    with pytest.raises(TextDataError, match=r"e\.csv row 4: empty text in column 'text'"):
        TextDataModule(train=str(path), tokenizer=tiny).setup("fit")


def test_missing_label_column(tiny, tmp_path):
    path = write_csv(tmp_path / "m.csv", [{"text": "good", "sentiment": "pos"}])
    with pytest.raises(TextDataError,
                       match=r"m\.csv: missing column 'label' \(set --data\.init_args\.label_column\); "
                             r"found columns: text, sentiment"):
        TextDataModule(train=str(path), tokenizer=tiny).setup("fit")


def test_unseen_label_at_test_time(tiny, tmp_path):
    train = write_csv(tmp_path / "train.csv", sentiment_rows(10))
    test = write_csv(tmp_path / "test.csv", [{"text": "good", "label": "pos"}, {"text": "meh", "label": "neutral"}])
    with pytest.raises(TextDataError,
                       match=r"test\.csv row 2: label 'neutral' never occurs in the training data \(neg, pos\)"):
        TextDataModule(train=str(train), test=str(test), tokenizer=tiny).setup("fit")


def test_conll_tag_breaking_bio(tmp_path):
    path = tmp_path / "bad.conll"
    path.write_text("John B-PER\nworks O\nat O\nAcme I-ORG\n", encoding="utf-8")
    with pytest.raises(TextDataError,
                       match=r"bad\.conll line 4: tag 'I-ORG' follows 'O', which breaks BIO; an entity must start with "
                             r"B-ORG"):
        read_conll(path)


def test_non_utf8_file(tiny, tmp_path):
    path = tmp_path / "latin.csv"
    path.write_bytes("text,label\ncaf\xe9 good,pos\nbad,neg\n".encode("latin-1"))
    with pytest.raises(TextDataError, match=r"latin\.csv is not valid utf-8 text .*set --data\.init_args\.encoding"):
        TextDataModule(train=str(path), tokenizer=tiny).setup("fit")
    conll = tmp_path / "latin.conll"
    conll.write_bytes("Andr\xe9 B-PER\n".encode("latin-1"))
    with pytest.raises(TextDataError, match=r"latin\.conll is not valid utf-8"):
        read_conll(conll)


def test_encoder_dir_without_tokenizer(tiny, tmp_path):
    from transformers import AutoModel

    bare = tmp_path / "bare"
    AutoModel.from_pretrained(tiny, local_files_only=True).save_pretrained(str(bare))
    with pytest.raises(TextBackboneError,
                       match=r"encoder directory .*bare has no tokenizer: expected one of tokenizer.json, vocab.txt"):
        load_tokenizer(bare)
    with pytest.raises(TextBackboneError, match="neither a registered text backbone"):
        TextClassifier(encoder=str(tmp_path / "nowhere"))


# -- every text recipe parses and fast-dev-runs (encoder swapped for the tiny BERT) -------------------------
@pytest.mark.slow
@pytest.mark.parametrize("recipe", RECIPES, ids=lambda p: p.stem)
def test_text_recipe_fast_dev_runs_with_tiny_encoder(recipe, tiny, tmp_path, capsys):
    from zoo.cli import main

    first = recipe.read_text().splitlines()[0]
    overrides = shlex.split(first.split(":", 1)[1]) if first.startswith("# zoo-test-overrides:") else []
    # n-gram recipes (fasttext, tfidf) and crf_tagger (word features) have no encoder or tokenizer to swap
    encoder = (["--model.init_args.encoder", tiny, "--data.init_args.tokenizer", tiny,
                "--data.init_args.cache_dir", str(tmp_path / "cache")] if "encoder:" in recipe.read_text() else [])
    rc = main(["fit", "--config", str(recipe), "--trainer.fast_dev_run", "1", "--trainer.precision", "32-true",
               *encoder, "--trainer.enable_progress_bar", "false", "--trainer.enable_model_summary", "false",
               *overrides])
    assert rc == 0, capsys.readouterr().err[-3000:]


@pytest.mark.slow
def test_cli_fit_then_predict_raw_sentences_with_lora_checkpoint(tiny, tmp_path):
    from zoo.cli import main

    recipe = next(p for p in RECIPES if p.stem == "ner_lora")
    common = ["--config", str(recipe), "--model.init_args.encoder", tiny, "--data.init_args.tokenizer", tiny,
              "--data.init_args.cache_dir", str(tmp_path / "cache"), "--data.init_args.max_samples", "32",
              "--trainer.precision", "32-true", "--trainer.enable_progress_bar", "false",
              "--trainer.enable_model_summary", "false"]
    assert main(["fit", *common, "--trainer.max_steps", "2", "--trainer.limit_val_batches", "1"]) == 0
    ckpt = tmp_path / "runs" / "ner_lora" / "version_0" / "checkpoints" / "last.ckpt"
    saved = torch.load(ckpt, weights_only=True)
    assert saved["zoo"]["adapter_only"] and all("lora_" in k or k.startswith("head.") or k == "temperature"
                                                for k in saved["state_dict"])
    sentences = tmp_path / "sentences.txt"
    sentences.write_text("John Smith paid 5 million dollars to Acme Corp in Paris.\n\nMary visited London.\n",
                         encoding="utf-8")
    assert main(["predict", *common, "--ckpt_path", str(ckpt), "--data.init_args.predict", str(sentences),
                 "--output", str(tmp_path / "preds.csv")]) == 0
    with open(tmp_path / "preds.csv", encoding="utf-8") as fh:
        rows = list(csv.DictReader(fh))
    assert [r["text"] for r in rows] == ["John Smith paid 5 million dollars to Acme Corp in Paris.",
                                         "Mary visited London."]
    for r in rows:
        for e in json.loads(r["entities"]):
            assert r["text"][e["start"]:e["end"]] == e["text"] and e["type"] in {"PER", "ORG", "LOC", "MONEY"}


def test_worst_misclassified_table_orders_by_confidence(tmp_path):
    from zoo.reporting.text import write_worst_examples

    rows = [{"id": f"r{i}", "true": "a", "predicted": "b", "confidence": c, "p_true": 1 - c, "text": f"text | {i}"}
            for i, c in enumerate([0.55, 0.91, 0.7])]
    csv_path, md_path = write_worst_examples(rows, tmp_path, top=2)
    with open(csv_path, encoding="utf-8") as fh:
        assert [r["id"] for r in csv.DictReader(fh)] == ["r1", "r2"]
    md = md_path.read_text()
    assert "The 2 most confident of 3 test errors" in md and "| r1 | a | b | 0.910 | 0.090 | text / 1 |" in md


def test_adalora_adds_its_orthogonality_regulariser(tiny, tmp_path):
    """peft adds AdaLoRA's ||PP^T - I|| penalty only when the wrapped model computes the loss; zoo computes it,
    so the term is added by the task (logged as train/loss_adalora_orth) and equals peft's formula."""
    from zoo.backbones.text import adalora_orthogonality

    path = write_csv(tmp_path / "s.csv", sentiment_rows(32))
    data = TextDataModule(train=str(path), tokenizer=tiny, max_length=16, batch_size=8, cache_dir=str(tmp_path / "c"))
    model = TextClassifier(encoder=tiny, peft={"method": "adalora", "init_r": 4, "target_r": 2, "total_step": 10,
                                               "orth_reg_weight": 0.3}, lr=1e-2)
    trainer = quiet_trainer(max_steps=2, num_sanity_val_steps=0, limit_val_batches=0, log_every_n_steps=1)
    trainer.fit(model, data)
    assert float(trainer.callback_metrics["train/loss_adalora_orth"]) > 0
    expected, count = 0.0, 0
    for name, p in model.encoder.named_parameters():
        if ("lora_A" in name or "lora_B" in name) and "default" in name:
            cov = p @ p.T if "lora_A" in name else p.T @ p
            expected += float(torch.norm(cov - torch.eye(cov.shape[0]), p="fro"))
            count += 1
    assert count > 0
    assert float(adalora_orthogonality(model.encoder)) == pytest.approx(0.3 * expected / count, rel=1e-5)
    lora = TextClassifier(encoder=tiny, peft={"method": "lora", "r": 4}, num_classes=2, multi_label=False)
    assert adalora_orthogonality(lora.encoder) is None and lora.regularization_terms() == {}
