"""crf_tagger's word-level data and options: rows one position per word, windows of words, the USE-m3 subword
initialisation (only the rows of pieces seen in training) and frozen subword rows."""

import numpy as np
import pytest
import torch

from zoo.data.text import TokenDataModule
from zoo.tasks.text.crf_tagger import CRFTagger, reverse_within

SMALL = {"word_dim": 8, "char_dim": 4, "char_filters": 8, "subword_dim": 8, "hidden": 8}


def _data(tmp_path, **kw):
    return TokenDataModule(dataset="ner_demo", tokenizer="words", max_samples=32, batch_size=8,
                           cache_dir=str(tmp_path), **kw)


def test_word_rows_hold_one_position_per_word_and_chunks_own_each_word_once(tmp_path):
    data = _data(tmp_path)
    data.setup("fit")
    row = data.splits["test"].rows[0]
    n = len(row["word_spans"])
    assert len(row["input_ids"]) == len(row["chars"]) == len(row["pieces"]) == len(row["labels"]) == n
    assert all(ch and min(ch) > 0 for ch in row["chars"]) and all(min(p) > 0 for p in row["pieces"])
    chunked = _data(tmp_path, max_length=8, long_text="chunks", chunk_overlap=3)
    chunked.setup("fit")
    long = next(r for r in chunked.splits["test"].rows if len(r["windows"]) > 1)
    owned = [lab for win in long["window_labels"] for lab in win if lab != -100]
    assert len(owned) == len(long["word_spans"])  # each word labelled in exactly one window
    batch = next(iter(chunked.test_dataloader()))
    assert batch["chars"].shape[:2] == batch["input_ids"].shape and "window_doc" in batch


def test_backward_lstm_input_is_each_sentence_reversed_within_its_length():
    x = torch.arange(8.0).view(2, 4, 1)
    out = reverse_within(x, torch.tensor([3, 4]))
    assert out.squeeze(-1).tolist() == [[2.0, 1.0, 0.0, 3.0], [7.0, 6.0, 5.0, 4.0]]


@pytest.mark.slow
def test_usem3_init_copies_the_rows_of_the_training_pieces_and_can_freeze_them(tmp_path):
    from zoo.backbones.usem3 import subword_rows

    data = _data(tmp_path)
    model = CRFTagger(subword_init="usem3", freeze_subwords=True, **SMALL)
    model.bind_data(data)
    vocab = data.piece_vocabulary()
    assert model.piece_emb.weight.shape == (len(vocab) + 2, 512) and model.hparams["num_pieces"] == len(vocab)
    np.testing.assert_allclose(model.piece_emb.weight[2:5].detach().numpy(), subword_rows([v - 1 for v in vocab[:3]]))
    assert int(model.piece_index[vocab[0]]) == 2 and int(model.piece_index[0]) == 0
    assert not model.piece_emb.weight.requires_grad and model.piece_proj.weight.requires_grad
