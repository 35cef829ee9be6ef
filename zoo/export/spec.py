"""What an export of one model holds: its task family, the graph's named inputs and output, the preprocessing the
predictor repeats, and sample inputs from the run's own data for verification.

The graph is the model's own ``forward`` (classifiers) or ``full_sort_scores`` (recommenders) over named batch
tensors, so any registered model of a known family exports without per-class code.
"""

from __future__ import annotations

import copy
from dataclasses import dataclass, field
from typing import Any

import torch
from torch import Tensor, nn

from zoo.errors import ZooError
from zoo.tasks.classification import ClassificationTask
from zoo.tasks.recsys.base import RecommenderTask
from zoo.tasks.text.classifier import TextClassifier
from zoo.tasks.text.encoder import EncoderMixin
from zoo.tasks.text.ngram import BagOfNgramsTask
from zoo.tasks.text.token import TokenClassifier


class ExportError(ZooError, ValueError):
    """A model, source or setting that cannot be exported; the message says which and what is accepted."""


class Graph(nn.Module):
    """The exported function: positional tensors (in ``names`` order) -> logits / scores."""

    def __init__(self, model: nn.Module, names: list[str], recsys: bool) -> None:
        super().__init__()
        self.model, self.names, self.recsys = model, list(names), recsys

    def forward(self, *tensors: Tensor) -> Tensor:
        batch = dict(zip(self.names, tensors))
        if self.recsys:
            return self.model.full_sort_scores(batch["user"], batch.get("history"))
        return self.model(batch)


class TableScorer(nn.Module):
    """A recommender whose scores are inner products, frozen as its user and item tables (LightGCN's graph
    propagation, two towers' MLPs run once at export): ``scores = users[user] @ items.T``."""

    def __init__(self, users: Tensor, items: Tensor) -> None:
        super().__init__()
        self.register_buffer("user_vectors", users.detach().float().contiguous())
        self.register_buffer("item_vectors", items.detach().float().contiguous())

    def forward(self, user: Tensor) -> Tensor:
        return self.user_vectors[user] @ self.item_vectors.T


@dataclass
class ExportSpec:
    task: str
    inputs: list[str]
    #: per input: axis -> name of the dynamic axes (batch, sequence)
    dynamic: dict[str, dict[int, str]]
    meta: dict[str, Any]
    samples: list[dict[str, Tensor]] = field(default_factory=list)
    max_sequence: int | None = None
    #: what is exported instead of the model's own function (a recommender's tables), when not None
    scorer: nn.Module | None = None
    #: per sample batch, the raw inputs it was made from, when the predictor's own preprocessing is to be verified
    #: too (the n-gram models: texts featurised by the exported folder's vectorizers)
    raw: list[list[Any]] = field(default_factory=list)


def merged(model: Any) -> Any:
    """The model with PEFT adapters merged into its encoder (a copy; the model itself is left as it is)."""
    if isinstance(model, EncoderMixin) and model.uses_adapters():
        model = copy.deepcopy(model)
        model.encoder = model.encoder.merge_and_unload()
        model.peft_spec = None
        model.hparams["peft"] = None
    return model.eval()


def temperature_of(model: nn.Module) -> list[float]:
    """The fitted temperature if the model has one (calibration), else the identity."""
    t = model.state_dict().get("temperature")
    return [float(x) for x in t.flatten()] if isinstance(t, Tensor) and t.numel() else [1.0]


def _loader_samples(datamodule: Any, names: list[str], limit: int,
                    raw: list[list[Any]] | None = None) -> list[dict[str, Tensor]]:
    """Up to ``limit`` rows of test (else validation) batches; each batch's ``text`` goes to ``raw`` if given."""
    loader = None
    for getter in ("test_dataloader", "val_dataloader"):
        try:
            loader = getattr(datamodule, getter)()
            break
        except Exception:  # a datamodule without that split: try the next one
            continue
    if loader is None:
        raise ExportError(f"{type(datamodule).__name__} yields no test or validation batches to verify the export on")
    out, seen = [], 0
    for batch in loader:
        feeds = {n: batch[n] for n in names if isinstance(batch.get(n), Tensor)}
        out.append(feeds)
        if raw is not None:
            raw.append(list(batch["text"]))
        seen += len(next(iter(feeds.values())))
        if seen >= limit:
            break
    if out:
        # a second shape than the traced one (3 rows, trailing padding cut), so verification catches a graph that
        # kept the example's batch or sequence size
        first = {n: t[:3] for n, t in out[0].items()}
        mask = first.get("attention_mask")
        if mask is not None:
            width = max(2, int(mask.sum(1).max()))
            first = {n: t[:, :width] for n, t in first.items()}
        out.append(first)
        if raw is not None:
            raw.append(raw[0][:3])
    return out


def describe(model: Any, datamodule: Any, samples: int = 64) -> ExportSpec:
    """The :class:`ExportSpec` of a bound model and its datamodule."""
    if isinstance(model, RecommenderTask):
        return _recsys(model, datamodule, samples)
    if isinstance(model, BagOfNgramsTask):
        return _ngram(model, datamodule, samples)
    if isinstance(model, TokenClassifier | TextClassifier):
        return _text(model, datamodule, samples)
    if isinstance(model, ClassificationTask) and hasattr(datamodule, "in_channels"):
        return _image(model, datamodule, samples)
    raise ExportError(f"zoo export handles text classifiers (HF encoders, n-gram models), token classifiers, image "
                      f"classifiers and recommenders; {type(model).__name__} with {type(datamodule).__name__} is none "
                      "of them")


def _text(model: Any, datamodule: Any, samples: int) -> ExportSpec:
    from zoo.data.text.words import WORD_RE

    token = isinstance(model, TokenClassifier)
    pair = bool(getattr(datamodule, "text_pair_column", None))
    names = ["input_ids", "attention_mask"] + (["token_type_ids"] if pair else [])
    dynamic = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["output"] = {0: "batch", 1: "sequence"} if token else {0: "batch"}
    tok = datamodule.tokenizer
    pre = {"max_length": int(datamodule.max_length), "pad_id": int(tok.pad_token_id or 0), "text_pair": pair}
    # how a text longer than max_length was read (data.long_text): the predictor cuts requests the same way
    long_text = str(getattr(datamodule, "long_text", "truncate"))
    pre["long_text"] = long_text
    if long_text == "chunks":
        pre["chunk_overlap"], pre["max_chunks"] = int(datamodule.chunk_overlap), int(datamodule.max_chunks)
    meta: dict[str, Any] = {"labels": list(model.class_names or []), "preprocessing": pre}
    if token:
        pre["word_pattern"] = WORD_RE.pattern
    else:
        meta["multi_label"] = bool(model.multi_label)
        meta["thresholds"] = [float(x) for x in model.thresholds]
        if long_text == "chunks":
            pre["chunk_pooling"] = str(model.chunk_pooling)
    spec = ExportSpec("token_classification" if token else "text_classification", names, dynamic, meta,
                      _loader_samples(datamodule, names, samples), max_sequence=int(datamodule.max_length))
    spec.meta["tokenizer"] = tok
    return spec


def _ngram(model: Any, datamodule: Any, samples: int) -> ExportSpec:
    """``fasttext`` / ``tfidf``: the graph reads bags of n-grams (``input_ids``, ``weights``); the featuriser's
    settings (and TF-IDF vocabulary / idf, written by :func:`zoo.export.export_model`) travel beside it."""
    featurizer = getattr(datamodule, "featurizer", None)
    if featurizer is None:
        raise ExportError(f"exporting {type(model).__name__} needs its ngram_text data (the n-gram featuriser), not "
                          f"{type(datamodule).__name__}")
    names = ["input_ids", "weights"]
    dynamic: dict[str, dict[int, str]] = {n: {0: "batch", 1: "sequence"} for n in names}
    dynamic["output"] = {0: "batch"}
    pre = {"ngrams": featurizer.settings.to_json(), "feature_space": dict(model.feature_space), "pad_id": 0}
    meta: dict[str, Any] = {"labels": list(model.class_names or []), "multi_label": False, "preprocessing": pre}
    raw: list[list[Any]] = []
    feeds = _loader_samples(datamodule, names, samples, raw)
    # a text has at most one entry per feature, plus the pad column
    spec = ExportSpec("text_classification", names, dynamic, meta, feeds,
                      max_sequence=int(model.feature_space["num_features"]) + 1, raw=raw)
    spec.meta["featurizer"] = featurizer
    return spec


def _image(model: Any, datamodule: Any, samples: int) -> ExportSpec:
    feeds = _loader_samples(datamodule, ["image"], samples)
    h, w = feeds[0]["image"].shape[-2:]
    backbone = getattr(model, "backbone", None)
    pre = {"channels": int(datamodule.in_channels), "image_size": datamodule.image_size, "input_size": [int(h), int(w)],
           "pixels": "float in [0, 1]; the graph normalises with mean / std",
           "mean": list(getattr(backbone, "default_mean", [])), "std": list(getattr(backbone, "default_std", []))}
    return ExportSpec("image_classification", ["image"], {"image": {0: "batch"}, "output": {0: "batch"}},
                      {"labels": list(model.class_names or []), "preprocessing": pre}, feeds)


def _recsys(model: Any, datamodule: Any, samples: int) -> ExportSpec:
    from zoo.data.recsys import InteractionDataModule

    if not isinstance(datamodule, InteractionDataModule):
        raise ExportError(f"exporting {type(model).__name__} needs its InteractionDataModule (seen items, histories)")
    history_len = model.train_batch_spec().history_len
    names = ["user"] + (["history"] if history_len else [])
    view = datamodule.eval_view("predict")
    n = datamodule.num_users
    users = torch.arange(min(n, samples))
    feeds = []
    for chunk in users.split(max(2, (len(users) + 1) // 2)):
        f = {"user": chunk}
        if history_len:
            f["history"] = view.history.last(chunk, history_len)
        feeds.append(f)
    dynamic = {n: {0: "batch"} for n in names}
    dynamic["output"] = {0: "batch"}
    item_texts = getattr(datamodule, "item_texts", None)
    meta = {"preprocessing": {"top_k": int(model.top_k), "unknown_users": datamodule.unknown_users,
                              "history_len": int(history_len)},
            "recsys": {"user_ids": [str(u) for u in datamodule.user_ids],
                       "item_ids": [str(i) for i in datamodule.item_ids],
                       "item_names": [str(t)[:200] for t in item_texts] if item_texts else None}}
    # what predict excludes (every known interaction), the popularity fallback and the histories it scores from
    tables = {"seen_indptr": view.exclude.indptr.long(), "seen_indices": view.exclude.items.long(),
              "popularity": datamodule.item_train_counts.float()}
    if history_len:
        tables["history"] = view.history.last(torch.arange(n), history_len)
    spec = ExportSpec("recommendation", names, dynamic, meta, feeds)
    spec.meta["tables"] = tables
    if not history_len:
        try:
            with torch.no_grad():
                users_v, items_v = model.retrieval_vectors(torch.arange(n))
            spec.scorer = TableScorer(users_v, items_v).eval()
            spec.meta["scorer"] = "tables"
        except (ZooError, NotImplementedError, AttributeError):
            pass  # scores that are no inner products (NeuMF): the model's own full_sort_scores is exported
    return spec


__all__ = ["ExportError", "ExportSpec", "Graph", "TableScorer", "describe", "merged", "temperature_of"]
