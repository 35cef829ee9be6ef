"""``TokenClassifier``: named entities (IOB2) on a Hugging Face encoder, scored at entity level with seqeval."""

from __future__ import annotations

from typing import Any

import torch.nn.functional as F
from torch import Tensor

from zoo.backbones.text import resolve_encoder
from zoo.backbones.use import is_use
from zoo.errors import ConfigError
from zoo.inference.crf import join_windows
from zoo.tasks.base import Optimizer, Scheduler, ZooTask
from zoo.tasks.classification import Calibrated, ClassDataMismatchError
from zoo.tasks.text.crf import LinearChainCRF, compact
from zoo.tasks.text.encoder import EncoderMixin
from zoo.tasks.text.entities import EntityTagging, word_rows


def no_entity_advice(lr: float, head_lr: float | None, peft: dict[str, Any] | None, max_epochs: int | None,
                     recommended: list[str] | None = None) -> str:
    """What to change when a tagger predicts only ``O``, from the run's own settings: never a value it already has."""
    out = []
    if recommended:  # the encoder's vocabulary does not cover the data's script (zoo.data.text.vocabulary)
        out.append(f"the encoder's vocabulary does not cover this data: use {recommended[0]}")
    if head_lr is None:
        out.append(f"give the head its own rate (--model.init_args.head_lr 0.01; it learns at lr {lr:g} now"
                   + (", set for the adapters)" if peft else ")"))
    elif head_lr < 0.01:
        out.append(f"raise the head's rate (--model.init_args.head_lr 0.01; it is {head_lr:g})")
    longer = f"--trainer.max_epochs {2 * max_epochs}" if max_epochs and max_epochs > 0 else "more epochs"
    out.append(f"train longer ({longer})")
    return "if this persists: " + "; or ".join(out)


class TokenClassifier(EntityTagging, EncoderMixin, Calibrated, ZooTask):
    """Token classification (named entities in IOB2) on a local Hugging Face encoder.

    Words are labelled on their first sub-token; other sub-tokens carry -100 and are ignored by the loss and
    the metrics. Metrics are entity-level (seqeval, strict IOB2): ``precision``, ``recall``, ``f1``.

    Args:
        encoder: ``minilm`` or a local HF model directory.
        peft: adapters as a dict, e.g. ``{method: lora, r: 8, target_modules: [query, value]}``.
        tag_names: the IOB2 tags (taken from the datamodule when unset).
        dropout: dropout on the token states.
        head_lr: learning rate of the linear head (default: ``lr``). With adapters, ``lr`` suits the adapters
            and a freshly initialised head needs more (see "When NER predicts only O" in docs/text.md).
        crf: a linear-chain CRF over the words' first sub-tokens (IOB2-constrained transitions, trained by its
            likelihood, decoded by Viterbi at validation, test, predict and in exports) instead of one arg-max per
            word; its transitions learn at ``head_lr``.
    """

    #: how zoo export / zoo serve read and answer it (zoo.inference.family)
    export_family = "token_classification"

    monitor = "val/f1"
    monitor_mode = "max"

    def __init__(
        self,
        encoder: str = "minilm",
        peft: dict[str, Any] | None = None,
        tag_names: list[str] | None = None,
        dropout: float = 0.1,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        optimizer: Optimizer = "adamw",
        scheduler: Scheduler = "linear",
        warmup_ratio: float = 0.06,
        head_lr: float | None = None,
        crf: bool = False,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        resolve_encoder(encoder)  # a bad name or directory fails at config time
        if is_use(encoder):
            raise ConfigError(f"--model.init_args.encoder: {encoder} encodes whole sentences (no per-token "
                              f"states to tag); a "
                              "token_classifier needs a Hugging Face encoder (minilm or a model directory)")
        self.encoder_name = encoder
        self.peft_spec = dict(peft) if peft else None
        self.tag_names: list[str] | None = list(tag_names) if tag_names else None
        self.dropout_p = dropout
        self.head_lr = head_lr
        self.use_crf = crf
        self.crf: LinearChainCRF | None = None
        self.init_entity_state()
        if self.tag_names:
            self.build()

    @property
    def class_names(self) -> list[str] | None:
        return self.tag_names

    # -- data and building ----------------------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        names = getattr(datamodule, "class_names", None) if datamodule is not None else None
        if names is not None:
            names = list(names)
            if self.tag_names is not None and self.tag_names != names:
                raise ClassDataMismatchError(f"the model was built for tags {self.tag_names} but the data has {names}")
            self.tag_names = names
        super().configure_from_data(datamodule)

    def build_network(self) -> None:
        if not self.tag_names:
            raise ClassDataMismatchError("TokenClassifier does not know its tags: give tag_names or train with a "
                                         "TokenDataModule")
        self.hparams["tag_names"] = list(self.tag_names)
        self.build_encoder_and_head(len(self.tag_names))
        if self.use_crf:
            self.crf = LinearChainCRF(self.tag_names)
        self.register_temperature()

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.head_lr is None:
            return groups
        head = {id(p) for m in (self.head, self.crf) if m is not None for p in m.parameters()}
        out = []
        for group in groups:
            rest = [p for p in group["params"] if id(p) not in head]
            mine = [p for p in group["params"] if id(p) in head]
            out += [{**group, "params": rest}] if rest else []
            out += [{**group, "params": mine, "lr": self.head_lr}] if mine else []
        return out

    # -- contract -------------------------------------------------------------------------------------
    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.head(self.encode(emb, batch))

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        if self.crf is not None:
            keep = batch["labels"] != -100
            emissions, mask = compact(out, keep)
            tags, _ = compact(batch["labels"], keep)
            return self.crf.nll(emissions, tags, mask)
        return F.cross_entropy(out.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    def entity_advice(self, max_epochs: int | None, recommended: list[str] | None) -> str:
        return no_entity_advice(self.lr, self.head_lr, self.peft_spec, max_epochs, recommended)

    # -- tags per word: arg-max, or the CRF's constrained Viterbi path over the first sub-tokens -----------
    def decode_words(self, out: Tensor, batch: dict[str, Any]) -> list[list[int]]:
        if self.crf is None:
            return super().decode_words(out, batch)
        packed, mask = compact(out.float(), batch["labels"] != -100)
        paths = self.crf.decode(packed, mask)
        doc = batch.get("window_doc")
        docs = list(range(len(paths))) if doc is None else doc.tolist()
        parts: list[list[list[int]]] = [[] for _ in range(max(docs, default=-1) + 1)]
        for d, path in zip(docs, paths):  # the windows of a chunked text, each decoded alone, in order
            parts[d].append(path)
        return [join_windows(p, self.tag_names or []) for p in parts]

    def export_meta(self) -> dict[str, Any]:
        meta: dict[str, Any] = {"task": "token_classification", "tag_names": self.tag_names}
        if self.crf is not None:
            meta["crf"] = self.crf.export_scores()
        return meta


__all__ = ["TokenClassifier", "no_entity_advice", "word_rows"]
