"""Image classification on any registered or timm backbone."""

from __future__ import annotations

from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ConfigError
from zoo.registry import MODELS
from zoo.tasks.base import Optimizer, Scheduler
from zoo.tasks.classification import ClassificationTask


def tiny_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    """A seconds-fast (model, datamodule) pair for generic tests: small CNN on generated shapes."""
    from zoo.data.image import ImageDataModule

    model = ImageClassifier(backbone="small_cnn", backbone_kwargs={"width": 8}, lr=3e-3)
    data = ImageDataModule(dataset="synthetic_shapes", dataset_kwargs={"n": 96}, batch_size=16, seed=0)
    return model, data


@MODELS.register("image_classifier", tags=("image",), tiny_case=tiny_case,
                 summary="image classifier on a torchvision / timm / packaged backbone")
class ImageClassifier(ClassificationTask):
    """Single-label image classifier.

    ``embed`` returns pixels in [0, 1]; normalisation happens inside ``forward_embedded`` with the backbone's
    own mean / std, so pixel-space techniques (FGM epsilon in pixel units, mixup) need no knowledge of it.

    Args:
        backbone: a name from ``zoo list backbones`` or ``timm/<model>``.
        pretrained: load the backbone's packaged weights (only ``efficientnet_lite0`` has them offline).
        in_channels: image channels; taken from the datamodule when it has ``in_channels``.
        num_classes / class_names: taken from the datamodule when unset.
        freeze_backbone: train the head only (a linear probe). For gradual unfreezing use Lightning's
            ``BackboneFinetuning`` callback, which finds ``self.backbone``.
        backbone_kwargs: passed to the backbone builder (e.g. ``drop_path_rate`` for timm models).
        dropout: dropout before the classifier head.
        label_smoothing: cross-entropy label smoothing.
        channels_last: keep the backbone's weights and its input in channels-last (NHWC) layout, which
            mixed-precision convolutions want on CPUs with AMX and on tensor-core GPUs (ResNet-18 on 2 CPU cores:
            1.08 steps/s in bf16 with it, 0.80 without, 0.45 in fp32; docs/scaling.md). Opt-in, as timm's
            ``--channels-last``: not every backbone gains from it.
    """

    #: how zoo export / zoo serve read and answer it (zoo.inference.family)
    export_family = "image_classification"

    #: what ``embed`` returns, for techniques: pixels, clamped to this range after adversarial perturbation
    embedding_kind = "pixels"
    embedding_bounds = (0.0, 1.0)

    def __init__(
        self,
        backbone: str = "small_cnn",
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        in_channels: int | None = None,
        pretrained: bool = False,
        freeze_backbone: bool = False,
        backbone_kwargs: dict[str, Any] | None = None,
        dropout: float = 0.0,
        label_smoothing: float = 0.0,
        lr: float = 1e-3,
        weight_decay: float = 0.01,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "cosine",
        warmup_ratio: float = 0.0,
        channels_last: bool = False,
    ) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing, lr=lr,
                         weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        # validate the name now, so a typo fails at config time, not after data loading
        if not backbone.startswith("timm/"):
            from zoo.registry import BACKBONES

            BACKBONES.entry(backbone)
        self.backbone_name = backbone
        self.pretrained = pretrained
        self.freeze_backbone = freeze_backbone
        self.backbone_kwargs = dict(backbone_kwargs or {})
        self.dropout = dropout
        self.in_channels = in_channels
        self.channels_last = channels_last
        if self.num_classes is not None and in_channels is not None:
            self.build()

    def configure_from_data(self, datamodule: Any) -> None:
        data_channels = getattr(datamodule, "in_channels", None) if datamodule is not None else None
        if data_channels is not None:
            if self._built and self.in_channels != data_channels:
                raise ConfigError(f"the model was built for {self.in_channels}-channel images, "
                                  f"the data has {data_channels}")
            self.in_channels = data_channels
        if self.in_channels is None:
            self.in_channels = 3
        super().configure_from_data(datamodule)

    def build_classifier(self, num_classes: int) -> None:
        self.hparams["in_channels"] = self.in_channels
        from zoo.backbones.vision import create_vision_backbone

        self.backbone = create_vision_backbone(self.backbone_name, in_channels=self.in_channels,
                                              pretrained=self.pretrained, **self.backbone_kwargs)
        if self.freeze_backbone:
            self.backbone.requires_grad_(False)
        if self.channels_last:
            self.backbone.to(memory_format=torch.channels_last)
        mean = torch.tensor(self.backbone.default_mean, dtype=torch.float32).view(1, -1, 1, 1)
        std = torch.tensor(self.backbone.default_std, dtype=torch.float32).view(1, -1, 1, 1)
        self.register_buffer("pixel_mean", mean, persistent=False)
        self.register_buffer("pixel_std", std, persistent=False)
        self.head = nn.Sequential(nn.Dropout(self.dropout), nn.Linear(self.backbone.num_features, num_classes))

    # -- contract -------------------------------------------------------------------------------------
    def embed(self, batch: dict[str, Any]) -> Tensor:
        return batch["image"]

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any] | None = None) -> Tensor:
        x = (emb - self.pixel_mean.to(emb.dtype)) / self.pixel_std.to(emb.dtype)
        if self.channels_last:
            x = x.contiguous(memory_format=torch.channels_last)
        return self.head(self.backbone(x))
