"""``ImageSet``: a split of an image source as ``{"image", "label", "id"}`` items."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import torch
from torch.utils.data import Dataset

from zoo.data.image.readers import load_image_file


class ImageSet(Dataset):
    """Items ``{"image": float [C,H,W] in [0,1], "label": int, "id": str}`` from arrays or files."""

    def __init__(self, source: Any, labels: np.ndarray | None, ids: list[str], in_channels: int,
                 transform: Callable[[torch.Tensor], torch.Tensor]) -> None:
        self.source = source  # uint8 tensor [N, C, H, W] or list of file paths
        self.labels = labels
        self.ids = ids
        self.in_channels = in_channels
        self.transform = transform

    def __len__(self) -> int:
        return len(self.ids)

    def _load(self, i: int) -> torch.Tensor:
        if isinstance(self.source, torch.Tensor):
            return self.source[i]
        return load_image_file(self.source[i], self.in_channels)

    def __getitem__(self, i: int) -> dict[str, Any]:
        item: dict[str, Any] = {"image": self.transform(self._load(i)), "id": self.ids[i]}
        item["label"] = int(self.labels[i]) if self.labels is not None else -1
        return item


__all__ = ["ImageSet"]
