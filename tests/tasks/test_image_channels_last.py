"""image_classifier(channels_last=True): the same function in NHWC layout, trainable under bf16 autocast, exportable."""

from __future__ import annotations

import math

import pytest
import torch

from tests.common.helpers import quiet_trainer
from tests.export.test_export import _export_all, _image
from zoo.tasks.image import ImageClassifier


def _pair(data):
    plain = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8})
    nhwc = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8}, channels_last=True)
    plain.bind_data(data)
    nhwc.bind_data(data)
    nhwc.load_state_dict(plain.state_dict())
    return plain, nhwc


def test_channels_last_changes_the_layout_not_the_function(tmp_path):
    from zoo.tasks.image import tiny_case

    _, data = tiny_case(tmp_path)
    data.setup("fit")
    plain, nhwc = _pair(data)
    convs = [m.weight for m in nhwc.backbone.modules() if isinstance(m, torch.nn.Conv2d)]
    assert convs and all(w.is_contiguous(memory_format=torch.channels_last) for w in convs)
    assert not all(m.weight.is_contiguous(memory_format=torch.channels_last)
                   for m in plain.backbone.modules() if isinstance(m, torch.nn.Conv2d))
    batch = {"image": torch.stack([data.splits["val"][i]["image"] for i in range(8)])}
    plain.eval(), nhwc.eval()
    with torch.no_grad():
        torch.testing.assert_close(nhwc(batch), plain(batch), atol=1e-5, rtol=1e-5)


@pytest.mark.slow
def test_channels_last_trains_under_bf16_autocast(tmp_path):
    from zoo.tasks.image import tiny_case

    _, data = tiny_case(tmp_path)
    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8}, lr=3e-3, channels_last=True)
    trainer = quiet_trainer(max_steps=3, precision="bf16-mixed")
    trainer.fit(model, datamodule=data)
    loss = trainer.callback_metrics["train/loss"]
    assert math.isfinite(float(loss))
    assert next(m for m in model.backbone.modules() if isinstance(m, torch.nn.Conv2d)).weight.is_contiguous(
        memory_format=torch.channels_last)  # the layout survives the optimizer's steps


@pytest.mark.slow
def test_a_channels_last_model_exports_to_every_format(tmp_path):
    plain, data, files = _image(tmp_path)
    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8}, channels_last=True)
    model.bind_data(data)
    model.load_state_dict(plain.state_dict())
    for fmt, predictor in _export_all(model, data, tmp_path, "image_nhwc").items():
        assert len(predictor.predict([p.read_bytes() for p in files])) == len(files), fmt
