"""Word segmentation for the n-gram featurisers (``data.segmenter``): jieba for Chinese, fugashi + unidic-lite for
Japanese, ``auto`` from the training texts' script, and the setting travelling with an export's featuriser."""

from __future__ import annotations

import csv

import numpy as np
import pytest

from zoo.data.text import NgramTextDataModule, TextDataError
from zoo.inference.ngrams import NgramFeaturizer, NgramSettings
from zoo.inference.segmenters import choose_segmenter, word_tokenizer

pytest.importorskip("jieba")
ZH = ["我爱北京天安门", "今天北京的天气很好", "股票市场今天大涨", "银行调整贷款利率"]
JA = ["東京は日本の首都です", "今日はとても暑いですね", "株式市場が大きく上昇した"]


def test_segmenters_split_words_where_the_script_writes_no_spaces():
    assert word_tokenizer("jieba")("我爱北京天安门，今天天气很好！")[:4] == ["我", "爱", "北京", "天安门"]
    assert word_tokenizer("fugashi")("東京は日本の首都です。")[:5] == ["東京", "は", "日本", "の", "首都"]
    assert word_tokenizer("none") is None


def test_auto_picks_the_segmenter_from_the_script():
    assert [choose_segmenter(ZH), choose_segmenter(JA), choose_segmenter(["a plain English text"])] == \
        ["jieba", "fugashi", "none"]


def test_word_ngrams_become_words_and_the_export_copy_segments_alike(tmp_path):
    plain = NgramFeaturizer(NgramSettings("tfidf", (1, 1), None)).fit(ZH)
    assert "我爱北京天安门" in plain.vocabularies()[0]  # without segmentation a whole sentence is one "word"
    settings = NgramSettings("tfidf", (1, 2), (2, 3), segmenter="jieba")
    fitted = NgramFeaturizer(settings).fit(ZH)
    assert {"北京", "天安门", "北京 天安门"} <= set(fitted.vocabularies()[0])
    files = fitted.save(tmp_path)
    meta = {"preprocessing": {"ngrams": settings.to_json(), "feature_space": fitted.space()}, "files": files}
    again = NgramFeaturizer.load(tmp_path, meta)
    assert again.settings.segmenter == "jieba"
    texts = ["北京银行今天很好", "天安门"]
    np.testing.assert_allclose(again.matrix(texts).toarray(), fitted.matrix(texts).toarray())


def _corpus(path, texts):
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        w.writerows((t, "ab"[i % 2]) for i, t in enumerate(texts * 4))
    return str(path)


def test_the_datamodule_resolves_auto_and_refuses_an_unknown_segmenter(tmp_path):
    data = NgramTextDataModule(train=_corpus(tmp_path / "zh.csv", ZH), features="tfidf", segmenter="auto",
                               val_fraction=0.25, test_fraction=0.25)
    data.setup("fit")
    assert data.segmenter == "jieba" and data.settings().segmenter == "jieba"
    with pytest.raises(TextDataError, match="--data.init_args.segmenter must be one of none, jieba, fugashi, auto"):
        NgramTextDataModule(train=str(tmp_path / "zh.csv"), segmenter="mecab")
