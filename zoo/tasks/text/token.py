"""``TokenClassifier``: named entities (IOB2) on a Hugging Face encoder, scored at entity level with seqeval."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor

from zoo.backbones.text import resolve_encoder
from zoo.compat import attached_trainer
from zoo.distributed import distributed_world
from zoo.reporting.text import write_entity_report
from zoo.tasks.base import Optimizer, Scheduler, ZooTask
from zoo.tasks.classification import Calibrated, ClassDataMismatchError, _plain
from zoo.tasks.text.encoder import EncoderMixin

log = logging.getLogger("zoo.tasks")


def word_rows(values: Tensor, batch: dict[str, Any]) -> list[Tensor]:
    """Per text of the batch, ``values`` (one entry per token position: logits, probabilities, tag ids) at the
    first sub-token of each of its words, in word order. The windows of a chunked text (``window_doc``, from
    ``data.long_text: chunks``) are joined: the data labels each word in exactly one of them, the window where
    it has the most context, so a text gets one entry per word however many windows hold it."""
    keep = batch["labels"] != -100
    doc = batch.get("window_doc")
    docs = list(range(len(keep))) if doc is None else doc.tolist()
    parts: list[list[Tensor]] = [[] for _ in range(max(docs, default=-1) + 1)]
    for i, d in enumerate(docs):
        parts[d].append(values[i][keep[i].to(values.device)])
    return [torch.cat(p) for p in parts]


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


class TokenClassifier(EncoderMixin, Calibrated, ZooTask):
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
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler,
                         warmup_ratio=warmup_ratio)
        self.save_hyperparameters()
        resolve_encoder(encoder)  # a bad name or directory fails at config time
        self.encoder_name = encoder
        self.peft_spec = dict(peft) if peft else None
        self.tag_names: list[str] | None = list(tag_names) if tag_names else None
        self.dropout_p = dropout
        self.head_lr = head_lr
        #: word-level (gold, predicted) tag sequences of the running epoch, per stage
        self._seqs: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        self.last_test_sequences: tuple[list[list[str]], list[list[str]]] | None = None
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
        self.register_temperature()

    def parameter_groups(self) -> list[dict[str, Any]]:
        groups = super().parameter_groups()
        if self.head_lr is None:
            return groups
        head = {id(p) for p in self.head.parameters()}
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
        return F.cross_entropy(out.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    # -- metrics (seqeval on word-level tag sequences) --------------------------------------------------
    def _word_tags(self, out: Tensor, batch: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
        names = self.tag_names or []
        gold = [[names[k] for k in g.tolist()] for g in word_rows(batch["labels"].cpu(), batch)]
        pred = [[names[k] for k in p.tolist()] for p in word_rows(out.argmax(-1).cpu(), batch)]
        # words the model never saw (cut by max_length or max_chunks) are scored as untagged: their entities
        # count as missed, so a long-sentence corpus does not flatter a truncating model
        for i, cut in enumerate(batch.get("cut_tags") or []):
            gold[i] += [names[k] for k in cut]
            pred[i] += ["O"] * len(cut)
        return gold, pred

    def update_metrics(self, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        gold, pred = self._word_tags(out, batch)
        g, p = self._seqs.setdefault(stage, ([], []))
        g += gold
        p += pred

    def log_epoch_metrics(self, stage: str) -> None:
        from seqeval.metrics import f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2

        gold, pred = self._seqs.pop(stage, ([], []))
        world, _ = distributed_world()
        if world > 1:  # seqeval is no torchmetrics metric: every rank scores the sequences of all ranks
            parts: list[Any] = [None] * world
            torch.distributed.all_gather_object(parts, (gold, pred))
            gold = [s for g, _ in parts for s in g]
            pred = [s for _, p in parts for s in p]
        if not gold:
            return
        kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
        values = {"precision": precision_score(gold, pred, **kw), "recall": recall_score(gold, pred, **kw),
                  "f1": f1_score(gold, pred, **kw)}
        flat_g = [t for s in gold for t in s]
        flat_p = [t for s in pred for t in s]
        values["token_acc"] = sum(a == b for a, b in zip(flat_g, flat_p)) / max(1, len(flat_g))
        self.log_dict({f"{stage}/{k}": float(v) for k, v in values.items()}, prog_bar=stage == "val")
        if stage == "val":
            self._warn_if_no_entities(gold, pred)
        if stage == "test":
            self.last_test_sequences = (gold, pred)

    def _warn_if_no_entities(self, gold: list[list[str]], pred: list[list[str]]) -> None:
        """An all-``O`` model scores a high token accuracy and an entity F1 of 0: say so after the epoch."""
        trainer = attached_trainer(self)
        if trainer is None or trainer.sanity_checking or not trainer.is_global_zero:
            return
        if any(t != "O" for s in pred for t in s) or not any(t != "O" for s in gold for t in s):
            return
        checks = getattr(getattr(trainer, "datamodule", None), "data_checks", None) or {}
        log.warning("zoo: epoch %d: the token classifier predicted no entity at all (every word 'O') on %d validation "
                    "sentences; %s (see 'When NER predicts only O' in docs/text.md)", trainer.current_epoch, len(gold),
                    no_entity_advice(self.lr, self.head_lr, self.peft_spec, trainer.max_epochs,
                                     (checks.get("vocabulary") or {}).get("recommended_models")))

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step("test", batch)  # logits for the calibration report (zoo.callbacks.trust)

    def on_test_epoch_start(self) -> None:
        self._seqs.pop("test", None)

    def write_test_report(self, out_dir: Any) -> list[Path]:
        seqs = self.last_test_sequences
        return write_entity_report(*seqs, Path(out_dir)) if seqs else []

    # -- prediction: entity spans with character offsets ---------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        from seqeval.metrics.sequence_labeling import get_entities

        out = self(batch).float()
        names = self.tag_names or []
        rows = []
        for i, logits in enumerate(word_rows(out, batch)):
            tags = [names[k] for k in logits.argmax(-1).tolist()]
            scores = self.probabilities(logits).max(-1).values.tolist()
            spans = batch["word_spans"][i]
            text = batch["text"][i]
            entities = []
            for etype, start, end in get_entities(tags):
                a, b = spans[start][0], spans[end][1]
                entities.append({"type": etype, "start": a, "end": b, "text": text[a:b],
                                 "score": round(min(scores[start:end + 1]), 4)})
            rows.append({"id": _plain(batch["id"][i]), "text": text, "entities": json.dumps(entities),
                         "tags": " ".join(tags)})
        return rows

    def export_meta(self) -> dict[str, Any]:
        return {"task": "token_classification", "tag_names": self.tag_names}


__all__ = ["TokenClassifier", "no_entity_advice", "word_rows"]
