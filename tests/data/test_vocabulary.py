"""Vocabulary and script checks at data set-up, and an encoder with a multilingual vocabulary (local directory or
hub id) through fit, test and predict."""

from __future__ import annotations

import csv
import json
import logging
import random
import shutil

import pytest

from zoo.backbones.text import resolve_encoder, tiny_bert_dir
from zoo.cli import main
from zoo.data.text import TextDataModule
from zoo.data.text.vocabulary import script_of, script_shares

RU = "фильм книга цена хорошо плохо люблю ненавижу отличный ужасный сегодня".split()
EN = "movie book price good bad love hate great terrible today".split()
RU_CHARS = sorted(set("".join(RU)))


def corpus(path, words, n=64, seed=0):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = "pos" if i % 2 else "neg"
            key = words[5] if label == "pos" else words[6]
            w.writerow([" ".join([rng.choice(words) for _ in range(6)] + [key]), label])
    return str(path)


@pytest.fixture(scope="module")
def multilingual(tmp_path_factory):
    """A tiny BERT whose WordPiece vocabulary covers Latin and Cyrillic words and letters."""
    words = EN + RU + RU_CHARS + ["##" + c for c in RU_CHARS]
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_multi"), words=words))


@pytest.fixture(scope="module")
def english(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_en")))


def test_scripts_of_letters():
    assert [script_of(c) for c in "aЖλ中あ한1 "] == ["LATIN", "CYRILLIC", "GREEK", "CJK", "CJK", "CJK", None, None]
    assert script_shares(["ab", "жж"]) == {"LATIN": 0.5, "CYRILLIC": 0.5}


def _warnings(caplog, data):
    caplog.clear()
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        data.setup("fit")
    return [r.getMessage() for r in caplog.records if "vocabulary" in r.getMessage()]


def test_warning_fires_on_another_script_and_stays_silent_on_english(tmp_path, english, caplog):
    ru = TextDataModule(train=corpus(tmp_path / "ru.csv", RU), tokenizer=english, cache_dir=str(tmp_path / "c"))
    (line,) = _warnings(caplog, ru)
    assert "100% of the letters are CYRILLIC" in line and "built on LATIN" in line
    assert "model.init_args.encoder" in line and "fasttext" in line
    figures = ru.data_checks["vocabulary"]
    assert figures["unknown_token_rate"] > 0.5 and figures["data_scripts"] == {"CYRILLIC": 1.0}
    en = TextDataModule(train=corpus(tmp_path / "en.csv", EN), tokenizer=english, cache_dir=str(tmp_path / "c"))
    assert _warnings(caplog, en) == []
    assert en.data_checks["vocabulary"]["unknown_token_rate"] == 0.0


@pytest.mark.slow
def test_multilingual_encoder_by_directory_fits_tests_and_predicts(tmp_path, multilingual, caplog, capsys):
    train = corpus(tmp_path / "ru.csv", RU, n=96)
    args = ["--model", "text_classifier", "--model.init_args.encoder", multilingual, "--model.init_args.lr", "0.003",
            "--data", "text", "--data.init_args.train", train, "--data.init_args.tokenizer", multilingual,
            "--data.init_args.max_length", "16", "--data.init_args.batch_size", "16",
            "--data.init_args.cache_dir", str(tmp_path / "c"), "--trainer.accelerator", "cpu",
            "--trainer.devices", "1", "--trainer.enable_progress_bar", "false", "--trainer.default_root_dir",
            str(tmp_path / "runs")]
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        assert main(["fit", *args, "--trainer.max_epochs", "2"]) == 0
    assert not [r for r in caplog.records if "vocabulary" in r.getMessage()]
    (run,) = (tmp_path / "runs").glob("*/version_0")
    checks = json.loads((run / "data_checks.json").read_text())
    assert checks["vocabulary"]["vocabulary_share_of_data_script"]["CYRILLIC"] > 0.2
    ckpt = str(run / "checkpoints" / "best.ckpt")
    assert main(["test", *args, "--ckpt_path", ckpt]) == 0
    capsys.readouterr()
    assert main(["predict", *args, "--ckpt_path", ckpt]) == 0
    rows = [line for line in capsys.readouterr().out.splitlines() if line.strip()]
    assert rows[0].startswith("id,label") and len(rows) > 10


def test_encoder_by_hub_id_from_the_local_cache(tmp_path, multilingual, monkeypatch):
    from huggingface_hub import constants

    snapshot = tmp_path / "hub" / "models--zoo-test--tiny-multilingual" / "snapshots" / "0123abc"
    shutil.copytree(multilingual, snapshot)
    (snapshot.parents[1] / "refs").mkdir()
    (snapshot.parents[1] / "refs" / "main").write_text("0123abc")
    monkeypatch.setattr(constants, "HF_HUB_CACHE", str(tmp_path / "hub"))
    monkeypatch.setattr(constants, "HF_HUB_OFFLINE", True)
    assert resolve_encoder("zoo-test/tiny-multilingual") == snapshot
    with pytest.raises(Exception, match="hf download zoo-test/absent"):
        resolve_encoder("zoo-test/absent")


@pytest.mark.parametrize("change,expect", [
    ({}, None),
    ({"unknown_token_rate": 0.2}, "20% of the tokens are unknown"),
    ({"chars_per_token": 2.4}, "pieces of 2.4 characters"),
    ({"chars_per_token": 1.0, "data_scripts": {"CJK": 1.0}, "vocabulary_share_of_data_script": {"CJK": 0.3}}, None),
])
def test_warning_rules(change, expect):
    from zoo.data.text.vocabulary import vocabulary_warning

    report = {"unknown_token_rate": 0.0, "chars_per_token": 4.1, "data_scripts": {"LATIN": 1.0},
              "vocabulary_scripts": {"LATIN": 0.99}, "vocabulary_share_of_data_script": {"LATIN": 0.99}, **change}
    line = vocabulary_warning(report, "minilm")
    assert line is None if expect is None else expect in line


ZH = "北京 上海 公司 银行 足球 比赛 电影 导演 市场 价格".split()


def _conll(path, words, n=40, seed=0):
    rng = random.Random(seed)
    with open(path, "w", encoding="utf-8") as fh:
        for _ in range(n):
            for k in range(5):
                fh.write(f"{rng.choice(words)} {'B-LOC' if k == 0 else 'O'}\n")
            fh.write("\n")
    return str(path)


def test_token_data_gets_the_same_check_and_is_pointed_at_the_crf_tagger(tmp_path, english, caplog):
    """Entities in a script the encoder does not cover (issue 25: Japanese NER warned nowhere at fit): the same
    line and data_checks block as text classification, naming the model that fits (issue 24)."""
    from zoo.data.text import TokenDataModule

    zh = TokenDataModule(train=_conll(tmp_path / "zh.conll", ZH), tokenizer=english, cache_dir=str(tmp_path / "c"))
    (line,) = _warnings(caplog, zh)
    assert "100% of the letters are CJK" in line and "built on LATIN" in line
    assert "crf_tagger (recipes/text/ner_crf.yaml)" in line and "tfidf" not in line
    block = zh.data_checks["vocabulary"]
    assert block["data_scripts"] == {"CJK": 1.0} and block["recommended_models"] == [
        "crf_tagger (recipes/text/ner_crf.yaml)"]
    en = TokenDataModule(train=_conll(tmp_path / "en.conll", EN), tokenizer=english, cache_dir=str(tmp_path / "c"))
    assert _warnings(caplog, en) == [] and "recommended_models" not in en.data_checks["vocabulary"]


def test_cjk_classification_data_is_pointed_at_the_ngram_use_and_ensemble_models(tmp_path, english, caplog):
    zh = TextDataModule(train=corpus(tmp_path / "zh.csv", ZH), tokenizer=english, cache_dir=str(tmp_path / "c"))
    (line,) = _warnings(caplog, zh)
    for model in ("tfidf (recipes/text/*_tfidf.yaml)", "fasttext (recipes/text/*_fasttext.yaml)",
                  "use_multilingual (recipes/text/*_use.yaml)", "zoo ensemble"):
        assert model in line, model
    assert "crf_tagger" not in line
    assert zh.data_checks["vocabulary"]["recommended_models"][0].startswith("tfidf")
