"""A token classifier trained on a user's NER data: the LoRA recipe gives the new head its own learning rate, and
a model that tags every word O says so after the epoch instead of reporting zero scores silently."""

from __future__ import annotations

import logging
from pathlib import Path

import pytest
import torch
import yaml

from tests.common.helpers import quiet_trainer
from zoo.backbones.text import tiny_bert_dir
from zoo.data.text import TokenDataModule

ROOT = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def tiny(tmp_path_factory):
    return str(tiny_bert_dir(tmp_path_factory.mktemp("tiny_bert")))


def test_ner_lora_recipe_gives_the_head_its_own_learning_rate():
    recipe = yaml.safe_load((ROOT / "recipes/text/ner_lora.yaml").read_text())
    args = recipe["model"]["init_args"]
    # the collapse to all-O: LoRA starts as the frozen encoder (B = 0), so early on the new head does the work,
    # and at the adapters' rate it learns the O prior first
    assert args["head_lr"] >= 5 * args["lr"]


def test_head_learning_rate_reaches_the_optimizer(tiny):
    from zoo.tasks.text import TokenClassifier

    model = TokenClassifier(encoder=tiny, tag_names=["O", "B-PER", "I-PER"], lr=1e-4, head_lr=1e-2,
                            peft={"method": "lora", "r": 2, "target_modules": ["query", "value"]})
    groups = model.parameter_groups()
    head = {id(p) for p in model.head.parameters()}
    rates = {g.get("lr", model.lr) for g in groups if any(id(p) in head for p in g["params"])}
    others = {g.get("lr", model.lr) for g in groups if not any(id(p) in head for p in g["params"])}
    assert rates == {1e-2} and others == {1e-4}


def test_token_classifier_that_predicts_no_entity_warns_after_the_epoch(tiny, tmp_path, caplog):
    from zoo.tasks.text import TokenClassifier

    data = TokenDataModule(dataset="ner_demo", tokenizer=tiny, max_length=32, max_samples=24, batch_size=8,
                           cache_dir=str(tmp_path / "c"))
    model = TokenClassifier(encoder=tiny, tag_names=data.class_names, lr=1e-9, scheduler="none")
    with torch.no_grad():
        model.head[1].bias[data.class_names.index("O")] = 100.0  # every word O, as after the collapse
    with caplog.at_level(logging.WARNING, logger="zoo.tasks"):
        quiet_trainer(max_epochs=1, limit_train_batches=1, num_sanity_val_steps=0).fit(model, data)
    lines = [r.getMessage() for r in caplog.records if "predicted no entity" in r.getMessage()]
    assert len(lines) == 1 and lines[0].startswith("zoo: epoch 0: the tagger predicted no entity at all")
    assert "--model.init_args.head_lr 0.01; it learns at lr 1e-09 now" in lines[0]
    assert "--trainer.max_epochs 2" in lines[0]


def test_no_entity_advice_never_repeats_what_the_run_already_sets():
    """ner_lora.yaml sets head_lr 0.01: the advice must not suggest it again (issue 25)."""
    from zoo.tasks.text.token import no_entity_advice

    recipe = no_entity_advice(lr=1e-3, head_lr=0.01, peft={"method": "lora"}, max_epochs=3)
    assert "head_lr" not in recipe and "--trainer.max_epochs 6" in recipe
    assert "it is 0.001" in no_entity_advice(lr=1e-3, head_lr=1e-3, peft=None, max_epochs=3)
    cjk = no_entity_advice(lr=1e-3, head_lr=0.01, peft=None, max_epochs=3,
                           recommended=["crf_tagger (recipes/text/ner_crf.yaml)"])
    assert cjk.startswith("if this persists: the encoder's vocabulary does not cover this data: use crf_tagger")
