"""On-disk tokenization cache: ragged token-id lists keyed by content, tokenizer vocabulary and settings.

A second run (or ``zoo test`` after ``zoo fit``) then skips tokenization; an unreadable or unwritable cache only
costs the time to tokenize again.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import numpy as np

log = logging.getLogger("zoo.data.text")
CACHE_VERSION = 1

Ragged = dict[str, list[list[int]]]


def default_cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE", Path.home() / ".cache" / "zoo")) / "text"


def tokenizer_fingerprint(tokenizer: Any) -> str:
    h = hashlib.sha256()
    h.update(type(tokenizer).__name__.encode())
    h.update(json.dumps(sorted(tokenizer.get_vocab().items()), ensure_ascii=False).encode())
    h.update(repr(getattr(tokenizer, "do_lower_case", None)).encode())
    return h.hexdigest()[:16]


def save_ragged(path: Path, arrays: Ragged, extra: dict[str, Any]) -> None:
    """Ragged int lists as flat arrays + offsets in an .npz (loadable with allow_pickle=False), atomically."""
    payload: dict[str, np.ndarray] = {}
    for key, seqs in arrays.items():
        lengths = np.fromiter((len(s) for s in seqs), dtype=np.int64, count=len(seqs))
        payload[f"{key}__flat"] = np.fromiter((x for s in seqs for x in s), dtype=np.int64, count=int(lengths.sum()))
        payload[f"{key}__offsets"] = np.concatenate([[0], np.cumsum(lengths)])
    payload["__extra"] = np.frombuffer(json.dumps(extra).encode(), dtype=np.uint8)
    path.parent.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp.npz")
    np.savez(tmp, **payload)
    tmp.replace(path)


def load_ragged(path: Path) -> tuple[Ragged, dict[str, Any]]:
    with np.load(path, allow_pickle=False) as data:
        extra = json.loads(bytes(data["__extra"]).decode())
        arrays = {}
        for key in [k[:-6] for k in data.files if k.endswith("__flat")]:
            flat, offsets = data[f"{key}__flat"], data[f"{key}__offsets"]
            arrays[key] = [flat[offsets[i]:offsets[i + 1]].tolist() for i in range(len(offsets) - 1)]
    return arrays, extra


def cached(cache_dir: Path, kind: str, max_length: int, tokenizer: Any, content: Any,
           build: Callable[[], tuple[Ragged, dict[str, Any]]]) -> tuple[Ragged, dict[str, Any]]:
    """``build()``'s result for this content, tokenizer and ``max_length``, from ``cache_dir`` when it is there."""
    h = hashlib.sha256()
    h.update(json.dumps([CACHE_VERSION, kind, max_length, tokenizer_fingerprint(tokenizer)]).encode())
    h.update(json.dumps(content, ensure_ascii=False, sort_keys=True).encode())
    path = cache_dir / f"{kind}-{h.hexdigest()[:24]}.npz"
    if path.is_file():
        try:
            return load_ragged(path)
        except (OSError, ValueError, KeyError):
            log.warning("zoo: ignoring unreadable tokenization cache %s", path)
    arrays, extra = build()
    try:
        save_ragged(path, arrays, extra)
    except OSError as err:  # a read-only cache dir must not stop training
        log.warning("zoo: could not write tokenization cache %s: %s", path, err)
    return arrays, extra


__all__ = ["CACHE_VERSION", "cached", "default_cache_dir", "load_ragged", "save_ragged", "tokenizer_fingerprint"]
