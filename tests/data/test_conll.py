"""CoNLL files as users write them: tab- or space-separated columns with whitespace inside tokens, and an I- tag
that follows O, refused with the option that repairs it."""

from __future__ import annotations

import logging

import pytest

from zoo.backbones.text import tiny_bert_dir
from zoo.data.text import TextDataError, TokenDataModule, read_conll


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


# -- CoNLL columns ---------------------------------------------------------------------------------------
def test_conll_with_tabs_keeps_ideographic_and_no_break_spaces_in_tokens(tmp_path):
    path = tmp_path / "ja.tsv"
    path.write_text("東京\tB-LOC\n\u3000\tI-LOC\n駅\tI-LOC\nNew\u00a0York\tB-LOC\n\n", encoding="utf-8")
    [(tokens, tags, line)] = read_conll(path)
    assert tokens == ["東京", "\u3000", "駅", "New\u00a0York"] and tags == ["B-LOC", "I-LOC", "I-LOC", "B-LOC"]
    spaced = tmp_path / "sp.conll"
    spaced.write_text("a\u3000b NN B-ORG\nc NN O\n", encoding="utf-8")
    assert read_conll(spaced)[0][0] == ["a\u3000b", "c"]


def test_a_whitespace_word_keeps_its_tag_and_the_spans_after_it(tiny, tmp_path):
    path = tmp_path / "ja.tsv"
    path.write_text("Tokyo\tB-LOC\n\u3000\tI-LOC\nstation\tI-LOC\nJohn\tB-PER\n\n" * 4, encoding="utf-8")
    data = TokenDataModule(train=str(path), val=str(path), test=str(path), tokenizer=tiny, max_length=32,
                           cache_dir=str(tmp_path / "c"))
    data.setup("fit")
    row = data.splits["test"][0]
    assert sum(label != -100 for label in row["labels"]) == 4  # one labelled position per word
    assert [row["text"][a:b] for a, b in row["word_spans"]] == ["Tokyo", "\u3000", "station", "John"]
    assert data.truncated["test"] == 0


# -- bio: error | repair -----------------------------------------------------------------------------------
def test_orphan_inside_tag_error_names_the_option_and_repair_fixes_and_counts(tmp_path, caplog):
    path = tmp_path / "real.conll"
    path.write_text("John B-PER\nworks O\nat O\nAcme I-ORG\nCorp I-ORG\n\nParis I-LOC\n", encoding="utf-8")
    with pytest.raises(TextDataError, match=r"real\.conll line 4: tag 'I-ORG' follows 'O'.*set "
                                             r"--data\.init_args\.bio repair"):
        read_conll(path)
    with caplog.at_level(logging.WARNING, logger="zoo.data.text"):
        sents = read_conll(path, bio="repair")
    assert [tags for _, tags, _ in sents] == [["B-PER", "O", "O", "B-ORG", "I-ORG"], ["B-LOC"]]
    assert any("repaired 2 I- tag(s)" in r.getMessage() and "line 4" in r.getMessage() for r in caplog.records)
    with pytest.raises(TextDataError, match=r"data\.init_args\.bio must be one of error, repair; got 'fix'"):
        TokenDataModule(train=str(path), bio="fix")
