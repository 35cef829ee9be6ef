"""Image transforms: uint8 image -> float tensor in [0, 1] (the model normalises), resized, with optional
torchvision v2 training augmentations configured by name in YAML::

    augment:
      - RandomHorizontalFlip
      - RandAugment: {num_ops: 2, magnitude: 9}
      - RandomErasing: {p: 0.25}
"""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import torch

from zoo.data.image.readers import ImageDataError

AugmentSpec = str | dict[str, dict[str, Any] | None]
# augmentations that need float input (applied after conversion to [0, 1])
_FLOAT_ONLY = {"RandomErasing", "GaussianNoise", "Normalize"}


def build_augmentations(specs: Sequence[AugmentSpec] | None) -> tuple[list[Callable], list[Callable]]:
    """Turn ``["RandomHorizontalFlip", {"RandAugment": {"num_ops": 2}}]`` into torchvision v2 transforms,
    split into those applied on uint8 images and those needing float images."""
    from torchvision.transforms import v2

    before, after = [], []
    for i, spec in enumerate(specs or []):
        if isinstance(spec, str):
            name, kwargs = spec, {}
        elif isinstance(spec, dict) and len(spec) == 1:
            name, kwargs = next(iter(spec.items()))
            kwargs = dict(kwargs or {})
        else:
            raise ImageDataError(f"augment[{i}] must be a transform name or {{Name: {{args}}}}, got {spec!r}")
        cls = getattr(v2, name, None)
        if not (isinstance(cls, type) and issubclass(cls, torch.nn.Module)):
            families = ("Random", "Rand", "Trivial", "Auto", "Color", "Gaussian", "Center", "Resize")
            known = sorted(n for n in dir(v2) if n[0].isupper() and n.startswith(families))
            raise ImageDataError(f"augment[{i}]: torchvision.transforms.v2 has no transform {name!r}; "
                                 f"e.g. {', '.join(known)}")
        try:
            transform = cls(**kwargs)
        except TypeError as err:
            raise ImageDataError(f"augment[{i}] {name}: {err}") from None
        (after if name in _FLOAT_ONLY else before).append(transform)
    return before, after


def image_transform(image_size: int | None, before: Sequence[Callable] = (),
                    after: Sequence[Callable] = ()) -> Callable[[torch.Tensor], torch.Tensor]:
    """uint8 image -> (square ``image_size``) -> ``before`` -> float in [0, 1] -> ``after``."""
    from torchvision.transforms import v2

    steps: list[Any] = [v2.ToImage()]
    if image_size:
        steps.append(v2.Resize((image_size, image_size), antialias=True))
    steps += before
    steps.append(v2.ToDtype(torch.float32, scale=True))
    steps += after
    return v2.Compose(steps)


__all__ = ["AugmentSpec", "build_augmentations", "image_transform"]
