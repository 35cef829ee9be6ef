"""What the named-entity taggers share (``TokenClassifier``, ``CRFTagger``): word-level tag sequences from a
batch, entity-level metrics (seqeval, strict IOB2), the no-entity warning, the entity report after ``zoo test`` and
``zoo predict``'s entity spans with character offsets. A tagger says how it turns its outputs into tags per word
(:meth:`EntityTagging.decode_words`): the arg-max of its logits, or a CRF's constrained Viterbi path."""

from __future__ import annotations

import json
import logging
from pathlib import Path
from typing import Any

import torch
from torch import Tensor

from zoo.compat import attached_trainer
from zoo.distributed import distributed_world
from zoo.reporting.text import write_entity_report
from zoo.tasks.classification import _plain

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


class EntityTagging:
    """Mixed into a ``ZooTask`` with ``tag_names``; the task's output is one row of logits (or emissions) per
    position, its batches carry ``labels`` (-100 where no word starts)."""

    tag_names: list[str] | None

    def init_entity_state(self) -> None:
        #: word-level (gold, predicted) tag sequences of the running epoch, per stage
        self._seqs: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        self.last_test_sequences: tuple[list[list[str]], list[list[str]]] | None = None

    def decode_words(self, out: Tensor, batch: dict[str, Any]) -> list[list[int]]:
        """Per text, the tag id of each word it shows the model (default: the arg-max of the logits)."""
        return [row.tolist() for row in word_rows(out.argmax(-1).cpu(), batch)]

    def _word_tags(self, out: Tensor, batch: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
        names = self.tag_names or []
        gold = [[names[k] for k in g.tolist()] for g in word_rows(batch["labels"].cpu(), batch)]
        pred = [[names[k] for k in p] for p in self.decode_words(out, batch)]
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
        self.log_dict({f"{stage}/{k}": float(v) for k, v in values.items()}, prog_bar=stage == "val")  # type: ignore[attr-defined]
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
        log.warning("zoo: epoch %d: the tagger predicted no entity at all (every word 'O') on %d validation "
                    "sentences; %s (see 'When NER predicts only O' in docs/text.md)", trainer.current_epoch, len(gold),
                    self.entity_advice(trainer.max_epochs, (checks.get("vocabulary") or {}).get("recommended_models")))

    def entity_advice(self, max_epochs: int | None, recommended: list[str] | None) -> str:
        """What to try when the tagger predicts only ``O``, from the run's own settings (a tagger with more knobs
        says more)."""
        out = [f"the encoder's vocabulary does not cover this data: use {recommended[0]}"] if recommended else []
        out.append(f"train longer (--trainer.max_epochs {2 * max_epochs})" if max_epochs and max_epochs > 0
                   else "train longer")
        return "if this persists: " + "; or ".join(out)

    def test_step(self, batch: dict[str, Any], batch_idx: int) -> Tensor:
        return self._eval_step("test", batch)  # type: ignore[attr-defined]  # logits for the calibration report

    def on_test_epoch_start(self) -> None:
        self._seqs.pop("test", None)

    def write_test_report(self, out_dir: Any) -> list[Path]:
        seqs = self.last_test_sequences
        return write_entity_report(*seqs, Path(out_dir)) if seqs else []

    # -- prediction: entity spans with character offsets ---------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        from seqeval.metrics.sequence_labeling import get_entities

        out = self(batch).float()  # type: ignore[operator]
        names = self.tag_names or []
        rows = []
        for i, (logits, ids) in enumerate(zip(word_rows(out, batch), self.decode_words(out, batch))):
            tags = [names[k] for k in ids]
            # the score of a word: the calibrated probability of its tag (the one decoded, arg-max or Viterbi)
            probs = self.probabilities(logits)  # type: ignore[attr-defined]
            scores = probs.gather(-1, torch.tensor(ids, dtype=torch.long)[:, None]).squeeze(-1).tolist()
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


__all__ = ["EntityTagging", "word_rows"]
