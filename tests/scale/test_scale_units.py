"""FSDP wrap policy per backbone family, torch.compile callback, progress-bar throughput, CLI defaults."""

from __future__ import annotations

from pathlib import Path

import pytest
import torch
from torch import nn

from tests.common.helpers import quiet_trainer
from zoo.compat import is_compiled, wandb_init_kwargs
from zoo.registry import MODELS
from zoo.scale import (
    ZooFSDPStrategy,
    backbone_family,
    fsdp_auto_wrap_policy,
    fsdp_block_classes,
    resolved_accelerator,
)

REPO = Path(__file__).resolve().parents[2]


def test_fsdp_wraps_each_transformer_layer_of_an_hf_encoder():
    from transformers import BertConfig, BertModel

    model = BertModel(BertConfig(vocab_size=50, hidden_size=16, num_hidden_layers=2, num_attention_heads=2,
                                 intermediate_size=32, max_position_embeddings=32))
    wrapper = nn.Module()
    wrapper.encoder = model  # as a zoo text task holds it
    wrapper.head = nn.Linear(16, 3)
    assert backbone_family(wrapper) == "hf"
    assert {c.__name__ for c in fsdp_block_classes(wrapper)} == {"BertLayer"}


def test_fsdp_wraps_timm_blocks():
    import timm

    vit = timm.create_model("vit_tiny_patch16_224", pretrained=False, img_size=32, patch_size=8, depth=2, num_classes=3)
    assert backbone_family(vit) == "timm"
    assert {c.__name__ for c in fsdp_block_classes(vit)} == {"Block"}
    effnet = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=3)
    names = {c.__name__ for c in fsdp_block_classes(effnet)}
    assert "InvertedResidual" in names and "DepthwiseSeparableConv" in names


def test_fsdp_wraps_torchvision_residual_blocks_and_leaves_small_models_whole():
    from zoo.backbones.vision import create_vision_backbone

    resnet = create_vision_backbone("resnet18", in_channels=3)
    assert {c.__name__ for c in fsdp_block_classes(resnet)} == {"BasicBlock"}
    small = create_vision_backbone("small_cnn", in_channels=1, width=4)
    assert fsdp_block_classes(small) == set()
    assert fsdp_auto_wrap_policy(small) is None
    policy = fsdp_auto_wrap_policy(resnet)
    assert {c.__name__ for c in policy._module_classes} == {"BasicBlock"}


def test_fsdp_overlay_strategy_builds():
    strategy = ZooFSDPStrategy(sharding_strategy="FULL_SHARD", state_dict_type="full")
    assert "auto_wrap_policy" not in strategy.kwargs


def test_fsdp_strategy_chooses_the_wrap_policy_when_it_wraps_the_model(monkeypatch):
    """zoo.compat's adapter asks choose_auto_wrap_policy at wrap time; an explicit policy wins."""
    from lightning.pytorch.strategies import FSDPStrategy
    from torchvision.models import resnet18

    seen = []
    monkeypatch.setattr(FSDPStrategy, "_setup_model", lambda self, model: seen.append(dict(self.kwargs)) or model)
    resnet = resnet18(num_classes=3)
    ZooFSDPStrategy()._setup_model(resnet)
    assert {c.__name__ for c in seen[-1]["auto_wrap_policy"]._module_classes} == {"BasicBlock"}
    ZooFSDPStrategy(auto_wrap_policy={nn.Linear})._setup_model(resnet)
    assert seen[-1]["auto_wrap_policy"]._module_classes == {nn.Linear}
    assert ZooFSDPStrategy().choose_auto_wrap_policy(nn.Linear(2, 2)) is None


def test_resolved_accelerator():
    assert resolved_accelerator("cpu") == "cpu"
    assert resolved_accelerator("cuda") == "gpu"
    assert resolved_accelerator("auto") == ("gpu" if torch.cuda.is_available() else resolved_accelerator("auto"))


def test_compile_callback_compiles_children_in_place_and_trains():
    from zoo.callbacks.compile import TorchCompile

    model, data = MODELS.entry("image_classifier").meta["tiny_case"]()
    compile_cb = TorchCompile(backend="eager")
    trainer = quiet_trainer(max_steps=2, limit_val_batches=1, num_sanity_val_steps=0, callbacks=[compile_cb])
    trainer.fit(model, data)
    assert set(compile_cb.compiled) >= {"backbone", "head"}
    assert "metrics" not in compile_cb.compiled
    assert is_compiled(model.backbone)
    assert not any("_orig_mod" in k for k in model.state_dict())
    with pytest.raises(ValueError, match="mode must be"):
        TorchCompile(mode="fast")


def test_cli_adds_rich_progress_with_throughput_and_groups_wandb_runs_by_recipe(monkeypatch):
    from zoo.callbacks.progress import ZooProgressBar
    from zoo.callbacks.tracking import WandbLogger
    from zoo.cli import ZooCLI

    monkeypatch.delenv("WANDB_MODE", raising=False)
    recipe = REPO / "recipes" / "vision" / "digits.yaml"
    overlay = REPO / "recipes" / "overlays" / "logger" / "wandb.yaml"
    cli = ZooCLI(args=["--config", str(recipe), "--config", str(overlay)], run=False)
    assert isinstance(cli.trainer.progress_bar_callback, ZooProgressBar)
    logger = cli.trainer.logger
    assert isinstance(logger, WandbLogger)
    assert wandb_init_kwargs(logger)["group"] == "digits"
    import os

    assert os.environ["WANDB_MODE"] == "offline"
    assert {"task:ImageClassifier", "backbone:small_cnn"} <= set(wandb_init_kwargs(logger)["tags"])
