"""Checkpoints written before the 0.2 layout (tests/common/fixtures/legacy_0_1, made with commit cfe0fb1) still load,
through every entry point, and give the outputs they gave then."""

import subprocess
import sys
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file

import zoo

FIXTURES = Path(__file__).resolve().parents[1] / "common" / "fixtures" / "legacy_0_1"
REPO = Path(__file__).resolve().parents[2]


@pytest.fixture(scope="module")
def reference():
    return load_file(str(FIXTURES / "reference_outputs.safetensors"))


def test_image_checkpoint_loads_with_its_class_and_with_load_checkpoint(reference):
    from zoo.tasks.image import ImageClassifier

    for model in (ImageClassifier.load_from_checkpoint(FIXTURES / "image_classifier.ckpt"),
                  zoo.load_checkpoint(FIXTURES / "image_classifier.ckpt")):
        assert isinstance(model, ImageClassifier)
        with torch.no_grad():
            logits = model.eval()({"image": reference["image_x"]})
        torch.testing.assert_close(logits, reference["image_logits"], rtol=0, atol=1e-6)


def test_cli_checkpoint_loads_and_tests_through_the_cli(reference, tmp_path):
    model = zoo.load_checkpoint(FIXTURES / "digits_tiny_cli.ckpt")
    with torch.no_grad():
        logits = model.eval()({"image": reference["digits_x"]})
    torch.testing.assert_close(logits, reference["digits_logits"], rtol=0, atol=1e-6)
    proc = subprocess.run([sys.executable, "-m", "zoo.cli", "test", "--config", str(REPO / "recipes/vision/digits_tiny.yaml"),
                           "--ckpt_path", str(FIXTURES / "digits_tiny_cli.ckpt"), "--trainer.enable_progress_bar", "false",
                           "--trainer.limit_test_batches", "2"], capture_output=True, text=True, cwd=tmp_path, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    assert "test/acc" in proc.stdout + proc.stderr


def test_adapter_only_text_checkpoint_loads_on_its_base_encoder(reference):
    from zoo.tasks.text import TextClassifier

    model = TextClassifier.load_from_checkpoint(FIXTURES / "text_classifier_lora.ckpt", encoder=str(FIXTURES / "tiny_bert"))
    ids = reference["text_input_ids"]
    with torch.no_grad():
        logits = model.eval()({"input_ids": ids, "attention_mask": (ids > 0).long()})
    torch.testing.assert_close(logits, reference["text_logits"], rtol=0, atol=1e-5)


def test_recommender_checkpoint_keeps_weights_and_id_maps(reference):
    from zoo.tasks.recsys import BPR

    model = BPR.load_from_checkpoint(FIXTURES / "bpr.ckpt")
    assert len(model.user_ids) == 50 and model.num_items == 80 and len(model.item_ids) == 81  # [PAD] + 80 items
    with torch.no_grad():
        scores = model.eval().full_sort_scores(torch.arange(5))
    torch.testing.assert_close(scores, reference["bpr_scores"], rtol=0, atol=1e-6)


def test_old_checkpoint_of_another_task_is_still_refused():
    from zoo.checkpoints import CheckpointMismatchError
    from zoo.tasks.recsys import BPR

    with pytest.raises(CheckpointMismatchError, match="ImageClassifier"):
        BPR.load_from_checkpoint(FIXTURES / "image_classifier.ckpt")


@pytest.mark.parametrize(("old", "new"), [
    ("zoo.callbacks.FGM", "zoo.techniques.FGM"),
    ("zoo.callbacks.adversarial.PGD", "zoo.techniques.PGD"),
    ("zoo.callbacks.regularization.Mixup", "zoo.techniques.Mixup"),
    ("zoo.callbacks.distillation.Distillation", "zoo.techniques.Distillation"),
    ("zoo.callbacks.scale.TorchCompile", "zoo.callbacks.compile.TorchCompile"),
    ("zoo.callbacks.reporting.RunReport", "zoo.callbacks.RunReport"),
])
def test_class_paths_of_moved_classes_still_resolve_in_yaml(old, new):
    from zoo.cli import _registry_class_path

    assert _registry_class_path(old) == new
