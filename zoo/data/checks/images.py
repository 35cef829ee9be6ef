"""Checks of image classification data: byte-identical images within and across splits, near-identical ones
across splits (perceptual hash), identical images with different labels, and the class mix per split."""

from __future__ import annotations

import hashlib
from typing import Any

import numpy as np

from zoo.data.checks.duplicates import conflicting_labels, duplicate_findings, label_shift
from zoo.data.checks.findings import Finding, SplitView, later_pairs
from zoo.data.checks.near import IMAGE_DISTANCE, hash_near_pairs

#: images hashed per step of the array path
_BLOCK = 4096
#: mean absolute difference (0-255) of two 32 x 32 grey thumbnails at most, for images with close hashes to count
#: as near-copies
MAX_PIXEL_DIFFERENCE = 6.0


def phash_arrays(images: Any) -> tuple[np.ndarray, np.ndarray]:
    """64-bit perceptual hashes of a uint8 ``[N, C, H, W]`` tensor, as uint64, and the 32 x 32 grey thumbnails
    they were computed from (uint8 ``[N, 1024]``).

    imagehash.phash's steps (grey, 32 x 32, 2-D DCT-II, the 8 x 8 lowest frequencies against their median) on a
    whole block at once: imagehash takes one PIL image at a time, 250 us each, which on the 70,000 Fashion-MNIST
    images alone would be 18 s. Files go through imagehash itself (:func:`phash_files`)."""
    import torch
    from scipy.fft import dctn

    out = np.empty(len(images), dtype=np.uint64)
    thumbs = np.empty((len(images), 1024), dtype=np.uint8)
    weights = 2 ** np.arange(63, -1, -1, dtype=np.uint64)
    for at in range(0, len(images), _BLOCK):
        block = images[at:at + _BLOCK].float()
        grey = block.mean(1, keepdim=True) if block.shape[1] != 1 else block
        small = torch.nn.functional.interpolate(grey, size=(32, 32), mode="bilinear", antialias=True,
                                                align_corners=False)[:, 0].numpy()
        low = dctn(small, type=2, axes=(1, 2))[:, :8, :8].reshape(len(small), 64)
        bits = low > np.median(low, axis=1, keepdims=True)
        out[at:at + len(small)] = (bits.astype(np.uint64) * weights).sum(1)
        thumbs[at:at + len(small)] = np.clip(small.reshape(len(small), -1).round(), 0, 255)
    return out, thumbs


def phash_files(paths: list[str]) -> tuple[np.ndarray, np.ndarray]:
    """imagehash.phash of each image file, and its 32 x 32 grey thumbnail."""
    import imagehash
    from PIL import Image

    out = np.empty(len(paths), dtype=np.uint64)
    thumbs = np.empty((len(paths), 1024), dtype=np.uint8)
    weights = 2 ** np.arange(63, -1, -1, dtype=np.uint64)
    for k, path in enumerate(paths):
        with Image.open(path) as img:
            bits = imagehash.phash(img).hash.flatten()
            thumbs[k] = np.asarray(img.convert("L").resize((32, 32), Image.Resampling.LANCZOS)).reshape(-1)
        out[k] = (bits.astype(np.uint64) * weights).sum()
    return out, thumbs


def _digests(source: Any) -> list[str]:
    if isinstance(source, list):
        out = []
        for path in source:
            with open(path, "rb") as fh:
                out.append(hashlib.sha1(fh.read()).hexdigest())
        return out
    flat = source.reshape(len(source), -1).numpy()
    return [hashlib.sha1(row.tobytes()).hexdigest() for row in flat]


def image_views(dm: Any) -> tuple[dict[str, SplitView], dict[str, Any]]:
    """Each split of a set-up :class:`~zoo.data.image.ImageDataModule` keyed by the SHA-1 of its bytes (the file,
    or the decoded array of a built-in set), and the sources."""
    names = list(dm.class_names)
    views, sources = {}, {}
    for split in ("train", "val", "test"):
        ds = dm.splits.get(split)
        if ds is None or len(ds) == 0:
            continue
        labels = [names[int(x)] for x in ds.labels] if ds.labels is not None else None
        views[split] = SplitView([str(i) for i in ds.ids], _digests(ds.source), labels)
        sources[split] = ds.source
    return views, sources


def near_duplicate_images(views: dict[str, SplitView], sources: dict[str, Any]) -> list[Finding]:
    prints = {s: phash_files(src) if isinstance(src, list) else phash_arrays(src) for s, src in sources.items()}
    found = []
    for earlier, later in later_pairs(views):
        pairs = [(j, i, d) for j, i, d in hash_near_pairs(prints[earlier][0], prints[later][0])
                 if views[later].keys[j] != views[earlier].keys[i]]
        if pairs:
            # a close hash alone is not enough on small images (two plain sneakers share most low frequencies):
            # the thumbnails must agree pixel by pixel too
            j_idx, i_idx = np.asarray([p[0] for p in pairs]), np.asarray([p[1] for p in pairs])
            diff = np.abs(prints[later][1][j_idx].astype(np.int16) - prints[earlier][1][i_idx].astype(np.int16))
            close = diff.mean(1) <= MAX_PIXEL_DIFFERENCE
            pairs = [p for p, ok in zip(pairs, close) if ok]
        if pairs:
            rows = [{"ids": [views[later].ids[j], views[earlier].ids[i]], "hamming": d} for j, i, d in pairs]
            n = len(views[later])
            found.append(Finding(
                "near_duplicates_across", "warning",
                f"{len(pairs)} of {n} {later} images are near-copies of {earlier} images (perceptual hash within "
                f"{IMAGE_DISTANCE} of 64 bits, 32 x 32 thumbnails within {MAX_PIXEL_DIFFERENCE:g}/255), "
                f"e.g. {rows[0]['ids'][0]} ~ {rows[0]['ids'][1]}",
                len(pairs), rows, {"split": later, "against": earlier}))
    return found


def check_images(dm: Any) -> tuple[dict[str, Any], list[Finding]]:
    views, sources = image_views(dm)
    found = duplicate_findings(views, "images")
    found += near_duplicate_images(views, sources)
    found += conflicting_labels(views, "images")
    labels, shift = label_shift(views)
    found += shift
    return {"rows": {s: len(v) for s, v in views.items()}, "labels": labels}, found


__all__ = ["check_images", "image_views", "phash_arrays", "phash_files"]
