"""Every registered model: its tiny case fits, validates, tests and predicts in a plain Lightning Trainer."""

import math

import pytest
import torch

import zoo
from tests.common.helpers import quiet_trainer
from zoo.registry import MODELS
from zoo.tasks.base import ZooTask, implements_contract

ALL_MODELS = MODELS.list()


def test_registry_is_not_empty():
    assert "image_classifier" in ALL_MODELS


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_has_a_tiny_case_and_the_contract(name):
    entry = MODELS.entry(name)
    assert callable(entry.meta.get("tiny_case")), f"{name} must register tiny_case=... for the generic tests"
    model, _ = entry.meta["tiny_case"]()
    assert isinstance(model, ZooTask)
    assert implements_contract(model) == []


@pytest.mark.parametrize("name", ALL_MODELS)
def test_every_model_fast_dev_runs_and_learns(name, tmp_path):
    model, data = MODELS.entry(name).meta["tiny_case"](tmp_path)
    trainer = quiet_trainer(fast_dev_run=2)
    trainer.fit(model, data)
    before = {k: v.detach().clone() for k, v in model.state_dict().items() if v.is_floating_point()}
    trainer = quiet_trainer(max_steps=3, limit_val_batches=1, num_sanity_val_steps=0)
    trainer.fit(model, data)
    changed = [k for k, v in model.state_dict().items() if k in before and not torch.equal(before[k], v)]
    assert changed, f"{name}: no parameter changed after 3 steps"
    loss = trainer.callback_metrics["train/loss"]
    assert math.isfinite(float(loss))
    results = quiet_trainer(limit_test_batches=2).test(model, data, verbose=False)
    assert results and all(math.isfinite(v) for v in results[0].values())
    preds = quiet_trainer(limit_predict_batches=1).predict(model, data)
    assert preds and preds[0], f"{name}: predict returned nothing"


def test_create_model_by_name():
    model = zoo.create_model("image_classifier", backbone="small_cnn", num_classes=4, in_channels=1)
    out = model({"image": torch.rand(2, 1, 12, 12)})
    assert out.shape == (2, 4)


def test_unknown_model_name_suggests_close_matches():
    with pytest.raises(KeyError, match="Did you mean: image_classifier"):
        zoo.create_model("image_clasifier")
