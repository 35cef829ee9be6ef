"""The n-gram text models (``fasttext``, ``tfidf``) and their data (``ngram_text``): any script, no tokenizer.

The registry-iterating tests (fit / test / predict, every technique incl. FGM on the bag embeddings, DDP) pick
both models up through their tiny cases; this file checks what is particular to them."""

from __future__ import annotations

import csv
import random

import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.checkpoints import load_checkpoint
from zoo.data.text import NgramTextDataModule, TextDataError
from zoo.tasks.classification import ClassDataMismatchError
from zoo.tasks.text import FastTextClassifier, TfidfClassifier

# three classes told apart only by which words occur: Chinese, Russian and Greek vocabularies mixed
WORDS = {"sport": "足球 比赛 球队 进球 матч команда гол αγώνας ομάδα γκολ",
         "money": "银行 市场 价格 股票 банк рынок цена τράπεζα αγορά τιμή",
         "film": "电影 导演 演员 故事 фильм режиссёр актёр ταινία σκηνοθέτης ηθοποιός"}
FILLER = "的 是 在 и в на και το η".split()


def write_corpus(path, n=150, seed=0):
    rng = random.Random(seed)
    with open(path, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["text", "label"])
        for i in range(n):
            label = list(WORDS)[i % 3]
            words = [rng.choice(FILLER) for _ in range(6)] + rng.sample(WORDS[label].split(), 2)
            rng.shuffle(words)
            w.writerow([" ".join(words), label])
    return str(path)


def accuracy(model, data):
    return quiet_trainer().test(model, data, verbose=False)[0]["test/acc"]


@pytest.mark.slow
@pytest.mark.parametrize("features,cls", [("hashing", FastTextClassifier), ("tfidf", TfidfClassifier)])
def test_learns_other_scripts_and_round_trips_a_checkpoint(tmp_path, features, cls):
    data = NgramTextDataModule(train=write_corpus(tmp_path / "c.csv"), features=features, buckets=4096,
                               batch_size=16)
    torch.manual_seed(0)
    model = cls(lr=5e-2)
    trainer = quiet_trainer(max_epochs=8, enable_checkpointing=False)
    trainer.fit(model, data)
    assert accuracy(model, data) >= 0.9  # chance is 1/3
    path = tmp_path / "m.ckpt"
    trainer.save_checkpoint(path)
    again = load_checkpoint(path).eval()
    again.bind_data(data)
    batch = next(iter(data.split_loader("test", train=False, grouped=False)))
    model.eval()
    with torch.no_grad():
        assert torch.allclose(model(batch), again(batch), atol=1e-6)


def test_fasttext_embed_is_the_mean_of_its_ngram_vectors(tmp_path):
    data = NgramTextDataModule(train=write_corpus(tmp_path / "c.csv"), buckets=1024, word_ngrams=[1, 1],
                               char_ngrams=None, batch_size=4)
    model = FastTextClassifier(dim=8)
    model.bind_data(data)
    batch = next(iter(data.split_loader("train", train=False, grouped=False)))
    emb = model.embed(batch)
    assert emb.shape == (4, 8)
    row = batch["input_ids"][0][batch["weights"][0] > 0]
    counts = batch["weights"][0][batch["weights"][0] > 0]
    assert counts.sum() == pytest.approx(1.0)  # each n-gram's share of the text
    assert torch.allclose(emb[0], (model.bag.weight[row] * counts[:, None]).sum(0), atol=1e-6)


def test_model_refuses_features_it_was_not_trained_on(tmp_path):
    path = write_corpus(tmp_path / "c.csv")
    model = FastTextClassifier()
    model.bind_data(NgramTextDataModule(train=path, buckets=1024))
    with pytest.raises(ClassDataMismatchError, match="not those the model was trained on"):
        model.bind_data(NgramTextDataModule(train=path, buckets=2048))
    with pytest.raises(ClassDataMismatchError, match="needs --data.init_args.features hashing"):
        FastTextClassifier().bind_data(NgramTextDataModule(train=path, features="tfidf"))


@pytest.mark.parametrize("kwargs,match", [
    ({"features": "bow"}, "data.init_args.features must be one of hashing, tfidf"),
    ({"word_ngrams": None, "char_ngrams": None}, "both null"),
    ({"char_ngrams": [4, 2]}, "data.init_args.char_ngrams must satisfy"),
])
def test_bad_settings_name_the_option(tmp_path, kwargs, match):
    with pytest.raises(TextDataError, match=match):
        NgramTextDataModule(train=write_corpus(tmp_path / "c.csv", n=12), **kwargs)


def test_fasttext_forward_exports_to_onnx(tmp_path):
    onnxruntime = pytest.importorskip("onnxruntime")
    data = NgramTextDataModule(train=write_corpus(tmp_path / "c.csv"), buckets=1024, batch_size=4)
    model = FastTextClassifier(dim=8).eval()
    model.bind_data(data)
    batch = next(iter(data.split_loader("test", train=False, grouped=False)))

    class Graph(torch.nn.Module):  # the tensors a server feeds: padded feature ids and their weights
        def __init__(self) -> None:
            super().__init__()
            self.model = model

        def forward(self, input_ids, weights):
            return self.model({"input_ids": input_ids, "weights": weights})

    path = tmp_path / "fasttext.onnx"
    torch.onnx.export(Graph(), (batch["input_ids"], batch["weights"]), str(path), input_names=["input_ids", "weights"],
                      output_names=["logits"],
                      dynamic_axes={"input_ids": {0: "b", 1: "n"}, "weights": {0: "b", 1: "n"}},
                      dynamo=False)
    session = onnxruntime.InferenceSession(str(path))
    got = session.run(None, {"input_ids": batch["input_ids"].numpy(), "weights": batch["weights"].numpy()})[0]
    with torch.no_grad():
        assert torch.allclose(torch.from_numpy(got), model(batch), atol=1e-5)
