"""Image classifiers (``image_classification``): a request's image (base64, bytes, a path, a PIL image or an
array) decoded, converted to the run's channels and resized as zoo's image data resizes."""

from __future__ import annotations

import base64
import binascii
import io
import re
from pathlib import Path
from typing import Any

import numpy as np
import torch

from zoo.inference.families.text import classifier_answers
from zoo.inference.family import ExportSpec, Family, output_axes, register_family, sample_batches
from zoo.inference.requests import InferenceInputError, top_k_field


@register_family
class ImageClassification(Family):
    """``{"image": base64}`` (or raw bytes, a path, a PIL image, a uint8 array) -> label and probabilities."""

    name = task = "image_classification"
    summary = "image (base64 / upload) -> label, confidence, probabilities"

    @classmethod
    def describe(cls, model: Any, datamodule: Any, samples: int) -> ExportSpec:
        feeds = sample_batches(datamodule, ["image"], samples)
        h, w = feeds[0]["image"].shape[-2:]
        backbone = getattr(model, "backbone", None)
        pre = {"channels": int(datamodule.in_channels), "image_size": datamodule.image_size,
               "input_size": [int(h), int(w)], "pixels": "float in [0, 1]; the graph normalises with mean / std",
               "mean": list(getattr(backbone, "default_mean", [])), "std": list(getattr(backbone, "default_std", []))}
        return ExportSpec(["image"], output_axes(["image"], {0: "batch"}, {0: "batch"}),
                          {"labels": list(model.class_names or []), "preprocessing": pre}, feeds)

    def parse(self, item: Any) -> dict[str, Any]:
        from PIL import Image, UnidentifiedImageError

        raw = item.get("image") if isinstance(item, dict) else item
        if isinstance(item, dict) and "image" not in item:
            raise InferenceInputError("image", "missing; expected a base64-encoded PNG/JPEG/... file")
        channels = int(self.pre["channels"])
        try:
            if isinstance(raw, str) and isinstance(item, dict):
                raw = base64.b64decode(raw, validate=True)
            if isinstance(raw, bytes | bytearray):
                img: Any = Image.open(io.BytesIO(raw))
            elif isinstance(raw, str | Path):
                img = Image.open(raw)
            elif isinstance(raw, np.ndarray):
                img = Image.fromarray(raw)
            elif hasattr(raw, "convert"):
                img = raw
            else:
                raise InferenceInputError("image", f"expected a base64-encoded image file, got {type(raw).__name__}")
            _check_pixels(img)
            array = np.asarray(img.convert("L" if channels == 1 else "RGB"), dtype=np.uint8).copy()
        except (binascii.Error, ValueError) as err:
            if isinstance(err, InferenceInputError):
                raise
            raise InferenceInputError("image", f"not valid base64 ({err}); expected a base64-encoded image "
                                      "file") from None
        except Image.DecompressionBombError as err:  # PIL's own refusal, at twice the limit, reading the header
            found = re.search(r"\((\d+) pixels\)", str(err))
            raise _too_many_pixels(f"{found.group(1)} pixels" if found else "its pixel count") from None
        except (UnidentifiedImageError, OSError, SyntaxError) as err:
            reason = str(err).split(" <")[0]  # PIL names the in-memory buffer object: noise to a client
            raise InferenceInputError("image", f"does not decode as an image ({reason}); expected a PNG/JPEG/... "
                                      "file") from None
        if array.ndim == 2:
            array = array[:, :, None]
        pixels = torch.from_numpy(array).permute(2, 0, 1).contiguous()
        size = self.pre.get("image_size")
        h, w = (size, size) if size else self.pre["input_size"]
        if tuple(pixels.shape[1:]) != (h, w):
            # the same resize as zoo's image data (torchvision v2, antialiased); also fits other sizes to the graph's
            from torchvision.transforms.v2 import functional as TF

            pixels = TF.resize(pixels, [h, w], antialias=True)
        return {"image": pixels.float() / 255.0, "top_k": top_k_field(item, None, len(self.meta.labels))}

    def collate(self, items: list[Any]) -> dict[str, torch.Tensor]:
        return {"image": torch.stack([it["image"] for it in items])}

    def answers(self, out: torch.Tensor | None, items: list[Any], temperature: torch.Tensor) -> list[dict[str, Any]]:
        return classifier_answers(self, out, items, temperature)


__all__ = ["ImageClassification"]


def _check_pixels(img: Any) -> None:
    """Refuse an image larger than PIL's pixel limit (``Image.MAX_IMAGE_PIXELS``, ``zoo serve --max-image-pixels``)
    before its pixels are decoded: PIL itself only warns below twice the limit."""
    from PIL import Image

    size = getattr(img, "size", None)
    if Image.MAX_IMAGE_PIXELS and size and size[0] * size[1] > Image.MAX_IMAGE_PIXELS:
        raise _too_many_pixels(f"{size[0]}x{size[1]} pixels")


def _too_many_pixels(shown: str) -> InferenceInputError:
    from PIL import Image

    return InferenceInputError("image", f"{shown} is over the server's limit of {Image.MAX_IMAGE_PIXELS} pixels (a "
                               "decompression-bomb guard; zoo serve --max-image-pixels sets it)", status=413)
