"""The task contract on its own: traits and hooks with their defaults, the one training step, and a user's own
LightningModule that implements only the three methods."""

import lightning.pytorch as pl
import pytest
import torch
from torch import nn

from zoo.contract import (
    HOOK_DEFAULTS,
    TRAIT_DEFAULTS,
    contract_training_step,
    implements_contract,
    task_hook,
    trait,
)
from zoo.errors import ConfigError
from zoo.tasks.base import ZooTask


class Plain(pl.LightningModule):
    """A user's module: only the three contract methods."""

    def __init__(self) -> None:
        super().__init__()
        self.lin = nn.Linear(3, 2)

    def embed(self, batch):
        return batch["x"]

    def forward_embedded(self, emb, batch):
        return self.lin(emb)

    def task_loss(self, out, batch):
        return nn.functional.cross_entropy(out, batch["y"])


class WithPenalty(Plain):
    def regularization_terms(self):
        return {"l1": self.lin.weight.abs().sum()}


class OldSpelling(Plain):
    def regularisation_terms(self):
        return {"l1": self.lin.weight.abs().sum()}


BATCH = {"x": torch.ones(4, 3), "y": torch.tensor([0, 1, 0, 1])}


def test_a_plain_module_meets_the_protocol_and_gets_every_default():
    module = Plain()
    assert implements_contract(module) == []
    for name, default in TRAIT_DEFAULTS.items():
        assert trait(module, name) == default
    for name, fn in HOOK_DEFAULTS.items():
        assert task_hook(module, name) is fn


def test_unknown_trait_or_hook_names_are_refused():
    with pytest.raises(AttributeError, match="not a trait"):
        trait(Plain(), "embeding_kind")
    with pytest.raises(AttributeError, match="not a hook"):
        task_hook(Plain(), "regularisation_terms")


def test_zoo_task_stubs_do_not_count_as_implementations():
    assert implements_contract(ZooTask()) == ["embed", "forward_embedded", "task_loss"]
    assert implements_contract(ZooTask) == ["embed", "forward_embedded", "task_loss"]


def test_a_user_module_regularization_terms_are_added_to_the_loss():
    torch.manual_seed(0)
    module = WithPenalty()
    plain = module.task_loss(module.forward_embedded(module.embed(BATCH), BATCH), BATCH)
    total = contract_training_step(module, BATCH)
    assert torch.allclose(total, plain + module.lin.weight.abs().sum())


def test_the_old_spelling_is_refused_with_the_new_name_not_ignored():
    with pytest.raises(ConfigError, match="regularization_terms"):
        contract_training_step(OldSpelling(), BATCH)


def test_traits_declared_by_a_task_are_read():
    from zoo.tasks.image import ImageClassifier

    model = ImageClassifier(backbone="small_cnn", num_classes=3, in_channels=1)
    assert trait(model, "target_key") == "label"
    assert trait(model, "embedding_bounds") == (0.0, 1.0)
    assert trait(model, "soft_targets") is True
    assert trait(model, "monitor") == "val/f1_macro"
