"""Text tasks on Hugging Face encoders: ``TextClassifier`` (single- and multi-label) and ``TokenClassifier`` (NER).

``embed`` returns the input token embeddings (the encoder's word-embedding lookup), ``forward_embedded`` runs the
encoder on ``inputs_embeds`` (position and token-type embeddings are added inside), so embedding-space techniques
(FGM, PGD, FreeLB) perturb exactly what adversarial-training papers perturb.

With ``peft`` set (LoRA / IA3 / AdaLoRA) checkpoints hold only the trainable tensors (adapters + head) and a
reference to the base encoder; loading rebuilds the base from that reference and lays the saved tensors on top.
``merge_and_export(dir)`` writes a plain Hugging Face encoder (adapters merged, safetensors) + tokenizer + head.
"""

from __future__ import annotations

import copy
import json
from pathlib import Path
from typing import Any

import torch
import torch.nn.functional as F
from torch import Tensor, nn

from zoo.registry import MODELS
from zoo.tasks.base import ZooTask
from zoo.tasks.classification import ClassDataMismatchError, ClassificationTask, _plain

_TINY_DIRS: dict[str, Any] = {}


def _tiny_encoder_dir(tmp_dir: Any = None) -> str:
    from zoo.backbones.text import tiny_bert_dir

    key = str(tmp_dir) if tmp_dir is not None else ""
    if key not in _TINY_DIRS:
        _TINY_DIRS[key] = str(tiny_bert_dir(Path(tmp_dir) / "tiny_bert" if tmp_dir is not None else None))
    return _TINY_DIRS[key]


class EncoderMixin:
    """Encoder loading, PEFT, the embed / forward_embedded pair, adapter-only checkpoints and export."""

    encoder: nn.Module
    encoder_name: str
    peft_spec: dict[str, Any] | None

    def _init_encoder(self) -> None:
        from zoo.backbones.text import apply_peft, load_encoder

        encoder = load_encoder(self.encoder_name)
        encoder.train()  # from_pretrained returns eval mode, and Lightning keeps a submodule's mode as it finds it
        self.encoder = apply_peft(encoder, self.peft_spec)
        self.hidden_size = int(encoder.config.hidden_size)

    @property
    def uses_peft(self) -> bool:
        from zoo.backbones.text import is_peft

        return is_peft(self.encoder)

    def _check_tokenizer(self, datamodule: Any) -> None:
        tok = getattr(datamodule, "tokenizer", None)
        if tok is None:
            return
        from zoo.backbones.text import encoder_vocab_size

        vocab = encoder_vocab_size(self.encoder)
        if len(tok) > vocab:
            raise ClassDataMismatchError(
                f"the data's tokenizer ({getattr(datamodule, 'tokenizer_name', '?')}) has {len(tok)} tokens but the "
                f"encoder {self.encoder_name} embeds only {vocab}; set data.tokenizer to the model's encoder")

    def embed(self, batch: dict[str, Any]) -> Tensor:
        return self.encoder.get_input_embeddings()(batch["input_ids"])

    def encode(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        kwargs = {"inputs_embeds": emb, "attention_mask": batch["attention_mask"]}
        if "token_type_ids" in batch:
            kwargs["token_type_ids"] = batch["token_type_ids"]
        return self.encoder(**kwargs).last_hidden_state

    def regularisation_terms(self) -> dict[str, Tensor]:
        from zoo.backbones.text import adalora_orthogonality

        orth = adalora_orthogonality(self.encoder)
        return {} if orth is None else {"adalora_orth": orth}

    # -- adapter-only checkpoints ----------------------------------------------------------------------
    def on_save_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_save_checkpoint(checkpoint)  # type: ignore[misc]
        from zoo.backbones.text import drop_frozen_weights, resolve_encoder

        if self.uses_peft:
            drop_frozen_weights(checkpoint, self)  # type: ignore[arg-type]
        checkpoint["zoo"]["base_model"] = str(resolve_encoder(self.encoder_name))

    def on_load_checkpoint(self, checkpoint: dict[str, Any]) -> None:
        super().on_load_checkpoint(checkpoint)  # type: ignore[misc]
        from zoo.backbones.text import restore_frozen_weights

        # the frozen base comes from the encoder directory named in the hyper-parameters
        restore_frozen_weights(checkpoint, self)  # type: ignore[arg-type]

    # -- export ---------------------------------------------------------------------------------------
    def _export_encoder(self, out_dir: Path) -> None:
        from zoo.backbones.text import load_tokenizer

        encoder = copy.deepcopy(self.encoder).cpu()
        if self.uses_peft:
            encoder = encoder.merge_and_unload()
        encoder.save_pretrained(str(out_dir), safe_serialization=True)
        load_tokenizer(self.encoder_name).save_pretrained(str(out_dir))


def _head_export(module: nn.Module, out_dir: Path, meta: dict[str, Any]) -> None:
    from safetensors.torch import save_file

    from zoo.reporting.io import atomic_write_text

    tensors = {k: v.detach().cpu().contiguous() for k, v in module.state_dict().items()}
    save_file(tensors, str(out_dir / "zoo_head.safetensors"))
    atomic_write_text(out_dir / "zoo_head.json", json.dumps(meta, indent=2))


# ==========================================================================================================
def tiny_text_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    """Tiny BERT (2 layers, hidden 32) on 96 packaged tweets (3 sentiment classes); seconds on a CPU."""
    from zoo.data.text import TextDataModule

    enc = _tiny_encoder_dir(tmp_dir)
    model = TextClassifier(encoder=enc, pooling="mean", lr=3e-3)
    data = TextDataModule(dataset="tweets_sentiment", tokenizer=enc, max_length=32, max_samples=96, batch_size=16,
                          cache_dir=str(Path(tmp_dir) / "cache") if tmp_dir is not None else None)
    return model, data


@MODELS.register("text_classifier", tags=("text",), tiny_case=tiny_text_case,
                 summary="single/multi-label text classifier on a HF encoder (MiniLM by default), optional PEFT")
class TextClassifier(EncoderMixin, ClassificationTask):
    """Text (or text-pair) classifier on a local Hugging Face encoder.

    Args:
        encoder: ``minilm`` (packaged all-MiniLM-L6-v2) or a local HF model directory.
        pooling: ``mean`` over real tokens or ``cls`` (first token).
        peft: adapters as a dict (see :mod:`zoo.backbones.text`), e.g. ``{method: lora, r: 8}``; unset = full fine-tune.
        multi_label: sigmoid outputs and binary cross-entropy; taken from the datamodule when unset.
        thresholds: decision threshold(s) for multi-label, one float or one per class.
        class_weights: ``balanced`` (inverse frequency in the training data) or one weight per class; for
            multi-label these weight the positive term of each label.
        dropout: dropout on the pooled vector.
    """

    def __init__(
        self,
        encoder: str = "minilm",
        pooling: str = "mean",
        peft: dict[str, Any] | None = None,
        multi_label: bool | None = None,
        thresholds: float | list[float] = 0.5,
        class_weights: str | list[float] | None = None,
        num_classes: int | None = None,
        class_names: list[str] | None = None,
        dropout: float = 0.1,
        label_smoothing: float = 0.0,
        lr: float = 5e-5,
        weight_decay: float = 0.01,
        optimizer: str = "adamw",
        scheduler: str = "linear",
        warmup_ratio: float = 0.06,
    ) -> None:
        super().__init__(num_classes=num_classes, class_names=class_names, label_smoothing=label_smoothing, lr=lr,
                         weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        from zoo.backbones.text import check_pooling, resolve_encoder

        self.save_hyperparameters()
        resolve_encoder(encoder)  # a bad name or directory fails at config time
        self.encoder_name = encoder
        self.pooling = check_pooling(pooling)
        self.peft_spec = dict(peft) if peft else None
        self.multi_label = multi_label
        self.thresholds_arg = thresholds
        if isinstance(class_weights, str) and class_weights != "balanced":
            raise ValueError(f"model.class_weights must be 'balanced' or a list of floats, got {class_weights!r}")
        self.class_weights_arg = class_weights
        self.dropout_p = dropout
        self._test_rows: list[dict[str, Any]] = []
        if self.num_classes is not None and multi_label is not None:
            self._build()

    # -- building -------------------------------------------------------------------------------------
    def configure_from_data(self, datamodule: Any) -> None:
        if datamodule is not None:
            data_multi = getattr(datamodule, "multi_label", None)
            if data_multi is not None:
                if self._built and self.multi_label != data_multi:
                    raise ClassDataMismatchError(f"the model was built with multi_label={self.multi_label} but the "
                                                 f"data is {'multi' if data_multi else 'single'}-label")
                self.multi_label = bool(data_multi)
            if isinstance(self.class_weights_arg, str) and not self._built:
                counts = torch.tensor(datamodule.class_counts(), dtype=torch.float32)
                self._balanced = (counts, float(len(datamodule.splits["train"])))
        if self.multi_label is None:
            self.multi_label = False
        super().configure_from_data(datamodule)
        if datamodule is not None:
            self._check_tokenizer(datamodule)

    def build_network(self, num_classes: int) -> None:
        self.hparams["multi_label"] = bool(self.multi_label)
        self._init_encoder()
        self.head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(self.hidden_size, num_classes))
        weights = self._class_weight_tensor(num_classes)
        self.hparams["class_weights"] = weights.tolist() if weights is not None else None
        self.register_buffer("class_weight", weights if weights is not None else torch.ones(num_classes), persistent=False)
        self._use_weights = weights is not None
        th = self.thresholds_arg
        th = [float(th)] * num_classes if isinstance(th, int | float) else [float(x) for x in th]
        if len(th) != num_classes:
            raise ClassDataMismatchError(f"model.thresholds has {len(th)} values for {num_classes} classes")
        self.register_buffer("thresholds", torch.tensor(th), persistent=False)
        if self.multi_label:
            from torchmetrics import MetricCollection
            from torchmetrics.classification import (
                MultilabelAccuracy,
                MultilabelExactMatch,
                MultilabelF1Score,
                MultilabelPrecision,
                MultilabelRecall,
                MultilabelStatScores,
            )

            def collection() -> MetricCollection:
                return MetricCollection({
                    "f1_micro": MultilabelF1Score(num_classes, average="micro"),
                    "f1_macro": MultilabelF1Score(num_classes, average="macro"),
                    "precision_macro": MultilabelPrecision(num_classes, average="macro"),
                    "recall_macro": MultilabelRecall(num_classes, average="macro"),
                    "acc": MultilabelAccuracy(num_classes, average="micro"),
                    "exact_match": MultilabelExactMatch(num_classes),
                })

            self._ml_metrics = nn.ModuleDict({f"{s}_ml": collection() for s in ("train", "val", "test")})
            self.test_label_stats = MultilabelStatScores(num_classes, average=None)

    def _class_weight_tensor(self, num_classes: int) -> Tensor | None:
        arg = self.class_weights_arg
        if arg is None:
            return None
        if isinstance(arg, str):
            balanced = getattr(self, "_balanced", None)
            if balanced is None:  # rebuilt from a checkpoint: the weights were saved as a list
                saved = self.hparams.get("class_weights")
                return torch.tensor(saved, dtype=torch.float32) if isinstance(saved, list) else None
            counts, n = balanced
            if self.multi_label:  # BCE pos_weight: negatives per positive, capped
                return ((n - counts) / counts.clamp(min=1)).clamp(max=100.0)
            return counts.sum() / (num_classes * counts.clamp(min=1))
        if len(arg) != num_classes:
            raise ClassDataMismatchError(f"model.class_weights has {len(arg)} values for {num_classes} classes")
        return torch.tensor([float(x) for x in arg])

    # -- contract -------------------------------------------------------------------------------------
    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        from zoo.backbones.text import pool

        hidden = self.encode(emb, batch)
        return self.head(pool(hidden, batch["attention_mask"], self.pooling))

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        target = batch[self.target_key]
        if self.multi_label:
            pos_weight = self.class_weight if self._use_weights else None
            return F.binary_cross_entropy_with_logits(out.float(), target.float(), pos_weight=pos_weight)
        weight = self.class_weight if self._use_weights else None
        return F.cross_entropy(out.float(), target, weight=weight, label_smoothing=self.label_smoothing)

    # -- metrics --------------------------------------------------------------------------------------
    def update_metrics(self, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        if not self.multi_label:
            super().update_metrics(stage, out, batch)
            if stage == "test":
                self._collect_errors(out.float().softmax(-1), batch)
            return
        preds = (out.float().sigmoid() >= self.thresholds).long()
        target = batch[self.target_key].round().long()
        self._ml_metrics[f"{stage}_ml"].update(preds, target)
        if stage == "test":
            self.test_label_stats.update(preds, target)

    def log_epoch_metrics(self, stage: str) -> None:
        if not self.multi_label:
            return super().log_epoch_metrics(stage)
        values = self._ml_metrics[f"{stage}_ml"].compute()
        self.log_dict({f"{stage}/{k}": v for k, v in values.items()}, prog_bar=stage == "val")
        self._ml_metrics[f"{stage}_ml"].reset()

    def on_test_epoch_start(self) -> None:
        self._test_rows = []
        if self.multi_label:
            self.test_label_stats.reset()
        else:
            super().on_test_epoch_start()

    def on_test_epoch_end(self) -> None:
        if self.multi_label:
            self.last_label_stats = self.test_label_stats.compute().cpu()
            self.log_epoch_metrics("test")
        else:
            super().on_test_epoch_end()

    def _collect_errors(self, probs: Tensor, batch: dict[str, Any]) -> None:
        conf, pred = probs.max(-1)
        target = batch[self.target_key]
        texts = batch.get("text") or [""] * len(pred)
        ids = batch.get("id") or list(range(len(pred)))
        for i in torch.nonzero(pred != target).flatten().tolist():
            self._test_rows.append({"id": _plain(ids[i]), "true": int(target[i]), "predicted": int(pred[i]),
                                    "confidence": float(conf[i]), "p_true": float(probs[i, target[i]]),
                                    "text": texts[i]})

    def write_test_report(self, out_dir: Any) -> list[Path]:
        from zoo.reporting.text import write_multilabel_report, write_worst_examples

        out = Path(out_dir)
        names = self.class_names or []
        if self.multi_label:
            stats = getattr(self, "last_label_stats", None)
            return write_multilabel_report(stats, names, out) if stats is not None else []
        paths = super().write_test_report(out)
        rows = [{**r, "true": names[r["true"]], "predicted": names[r["predicted"]]} for r in self._test_rows]
        return paths + write_worst_examples(rows, out)

    # -- prediction -----------------------------------------------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        if not self.multi_label:
            return super().predict_step(batch, batch_idx, dataloader_idx)
        probs = self(batch).float().sigmoid()
        names = self.class_names or []
        ids = batch.get("id", list(range(len(probs))))
        rows = []
        for i, p in zip(ids, probs):
            chosen = [names[k] for k in torch.nonzero(p >= self.thresholds).flatten().tolist()]
            rows.append({"id": _plain(i), "labels": "|".join(chosen),
                         "scores": json.dumps({n: round(float(x), 4) for n, x in zip(names, p)})})
        return rows

    # -- export ---------------------------------------------------------------------------------------
    def merge_and_export(self, out_dir: str | Path) -> Path:
        """A plain HF encoder directory (adapters merged, safetensors) + tokenizer + ``zoo_head.safetensors``
        (the linear head) + ``zoo_head.json`` (labels, pooling, thresholds)."""
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._export_encoder(out)
        _head_export(self.head[1], out, {"task": "text_classification", "class_names": self.class_names,
                                         "pooling": self.pooling, "multi_label": bool(self.multi_label),
                                         "thresholds": self.thresholds.tolist()})
        return out

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        _adalora_step(self)


def _adalora_step(module: Any) -> None:
    """AdaLoRA re-allocates ranks from the gradients after each optimizer step (peft's documented loop)."""
    enc = module.encoder
    base = getattr(enc, "base_model", None)
    if base is not None and hasattr(base, "update_and_allocate"):
        base.update_and_allocate(module.global_step)


# ==========================================================================================================
def tiny_token_case(tmp_dir: Any = None) -> tuple[Any, Any]:
    """Tiny BERT on a subset of the shipped IOB2 demo file; seconds on a CPU."""
    from zoo.data.text import TokenDataModule

    enc = _tiny_encoder_dir(tmp_dir)
    model = TokenClassifier(encoder=enc, lr=3e-3)
    data = TokenDataModule(dataset="ner_demo", tokenizer=enc, max_length=48, max_samples=96, batch_size=16,
                           cache_dir=str(Path(tmp_dir) / "cache") if tmp_dir is not None else None)
    return model, data


@MODELS.register("token_classifier", tags=("text", "ner"), tiny_case=tiny_token_case,
                 summary="token classifier (NER, IOB2) on a HF encoder with entity-level F1 (seqeval), optional PEFT")
class TokenClassifier(EncoderMixin, ZooTask):
    """Token classification (named entities in IOB2) on a local Hugging Face encoder.

    Words are labelled on their first sub-token; other sub-tokens carry -100 and are ignored by the loss and
    the metrics. Metrics are entity-level (seqeval, strict IOB2): ``precision``, ``recall``, ``f1``.

    Args:
        encoder: ``minilm`` or a local HF model directory.
        peft: adapters as a dict, e.g. ``{method: lora, r: 8, target_modules: [query, value]}``.
        tag_names: the IOB2 tags (taken from the datamodule when unset).
        dropout: dropout on the token states.
    """

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
        optimizer: str = "adamw",
        scheduler: str = "linear",
        warmup_ratio: float = 0.06,
    ) -> None:
        super().__init__(lr=lr, weight_decay=weight_decay, optimizer=optimizer, scheduler=scheduler, warmup_ratio=warmup_ratio)
        from zoo.backbones.text import resolve_encoder

        self.save_hyperparameters()
        resolve_encoder(encoder)
        self.encoder_name = encoder
        self.peft_spec = dict(peft) if peft else None
        self.tag_names: list[str] | None = list(tag_names) if tag_names else None
        self.dropout_p = dropout
        self._built = False
        self._seqs: dict[str, tuple[list[list[str]], list[list[str]]]] = {}
        if self.tag_names:
            self._build()

    @property
    def class_names(self) -> list[str] | None:
        return self.tag_names

    def _build(self) -> None:
        if self._built:
            return
        if not self.tag_names:
            raise ClassDataMismatchError("TokenClassifier does not know its tags: give tag_names or train with a "
                                         "TokenDataModule")
        self.hparams["tag_names"] = list(self.tag_names)
        self._init_encoder()
        self.head = nn.Sequential(nn.Dropout(self.dropout_p), nn.Linear(self.hidden_size, len(self.tag_names)))
        self._built = True

    def configure_from_data(self, datamodule: Any) -> None:
        names = getattr(datamodule, "class_names", None) if datamodule is not None else None
        if names is not None:
            names = list(names)
            if self.tag_names is not None and self.tag_names != names:
                raise ClassDataMismatchError(f"the model was built for tags {self.tag_names} but the data has {names}")
            self.tag_names = names
        self._build()
        if datamodule is not None:
            self._check_tokenizer(datamodule)

    # -- contract -------------------------------------------------------------------------------------
    def forward_embedded(self, emb: Tensor, batch: dict[str, Any]) -> Tensor:
        return self.head(self.encode(emb, batch))

    def task_loss(self, out: Tensor, batch: dict[str, Any]) -> Tensor:
        return F.cross_entropy(out.float().flatten(0, 1), batch["labels"].flatten(), ignore_index=-100)

    # -- metrics (seqeval on word-level tag sequences) --------------------------------------------------
    def _word_tags(self, out: Tensor, batch: dict[str, Any]) -> tuple[list[list[str]], list[list[str]]]:
        names = self.tag_names or []
        pred = out.argmax(-1).cpu()
        labels = batch["labels"].cpu()
        gold_seqs, pred_seqs = [], []
        for p, g in zip(pred, labels):
            keep = g != -100
            gold_seqs.append([names[k] for k in g[keep].tolist()])
            pred_seqs.append([names[k] for k in p[keep].tolist()])
        return gold_seqs, pred_seqs

    def update_metrics(self, stage: str, out: Tensor, batch: dict[str, Any]) -> None:
        gold, pred = self._word_tags(out, batch)
        g, p = self._seqs.setdefault(stage, ([], []))
        g += gold
        p += pred

    def log_epoch_metrics(self, stage: str) -> None:
        from seqeval.metrics import f1_score, precision_score, recall_score
        from seqeval.scheme import IOB2

        gold, pred = self._seqs.pop(stage, ([], []))
        from zoo.data.distributed import distributed_world

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
        if stage == "test":
            self.last_test_sequences = (gold, pred)

    def on_test_epoch_start(self) -> None:
        self._seqs.pop("test", None)

    def write_test_report(self, out_dir: Any) -> list[Path]:
        from zoo.reporting.text import write_entity_report

        seqs = getattr(self, "last_test_sequences", None)
        return write_entity_report(*seqs, Path(out_dir)) if seqs else []

    # -- prediction: entity spans with character offsets ---------------------------------------------
    def predict_step(self, batch: dict[str, Any], batch_idx: int, dataloader_idx: int = 0) -> list[dict[str, Any]]:
        from seqeval.metrics.sequence_labeling import get_entities

        out = self(batch).float()
        probs = out.softmax(-1)
        names = self.tag_names or []
        rows = []
        for i in range(out.shape[0]):
            keep = torch.nonzero(batch["labels"][i] != -100).flatten()
            tags = [names[k] for k in out[i, keep].argmax(-1).tolist()]
            scores = probs[i, keep].max(-1).values.tolist()
            spans = batch["word_spans"][i]
            text = batch["text"][i]
            entities = []
            for etype, start, end in get_entities(tags):
                a, b = spans[start][0], spans[end][1]
                entities.append({"type": etype, "start": a, "end": b, "text": text[a:b],
                                 "score": round(min(scores[start:end + 1]), 4)})
            rows.append({"id": _plain(batch["id"][i]), "text": text, "entities": json.dumps(entities)})
        return rows

    def merge_and_export(self, out_dir: str | Path) -> Path:
        out = Path(out_dir)
        out.mkdir(parents=True, exist_ok=True)
        self._export_encoder(out)
        _head_export(self.head[1], out, {"task": "token_classification", "tag_names": self.tag_names})
        return out

    def on_train_batch_end(self, outputs: Any, batch: Any, batch_idx: int) -> None:
        _adalora_step(self)


__all__ = ["TextClassifier", "TokenClassifier"]
