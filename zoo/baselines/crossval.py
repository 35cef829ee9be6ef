"""Out-of-sample probabilities for the training split itself (``zoo inspect --cross-validate K``), so that
cleanlab can rank suspect labels in train: the data's reference model (the same features and logistic regression
as :mod:`zoo.baselines.references`) fitted K times by scikit-learn's ``cross_val_predict``, each fold scored by a
model that never saw it. The reference, not the recipe's network: K trainings of a network take K fits, K
logistic regressions take seconds, and confident learning needs reasonable out-of-sample probabilities, not the
best model."""

from __future__ import annotations

from typing import Any

import numpy as np

from zoo.baselines.references import NoReference, _pixels


def cross_validated_probabilities(dm: Any, k: int, seed: int = 0) -> tuple[np.ndarray, np.ndarray, list[str]]:
    """(given labels, K-fold out-of-sample class probabilities, row ids) of every row of the train split of a set-up
    single-label text or image datamodule."""
    from sklearn.linear_model import LogisticRegression
    from sklearn.model_selection import StratifiedKFold, cross_val_predict
    from sklearn.pipeline import FeatureUnion, make_pipeline

    if getattr(dm, "multi_label", False):
        raise NoReference("cross-validated label issues need single-label data")
    ds = dm.splits["train"]
    rows = getattr(ds, "rows", None)
    if rows is not None:
        from sklearn.feature_extraction.text import TfidfVectorizer

        x: Any = [r["text"] for r in rows]
        y = np.asarray([r["label"] for r in rows])
        ids = [str(r["id"]) for r in rows]
        model = make_pipeline(FeatureUnion([
            ("word", TfidfVectorizer(analyzer="word", ngram_range=(1, 2), sublinear_tf=True, max_features=200_000)),
            ("char", TfidfVectorizer(analyzer="char_wb", ngram_range=(2, 4), min_df=2, sublinear_tf=True,
                                     max_features=200_000))]), LogisticRegression(max_iter=1000, C=10.0))
    else:
        from sklearn.preprocessing import StandardScaler

        x, y = _pixels(ds, len(ds))  # every row, in order, so the ids line up
        ids = [str(i) for i in ds.ids]
        model = make_pipeline(StandardScaler(), LogisticRegression(max_iter=1000))
    smallest = int(np.bincount(y)[np.unique(y)].min()) if len(y) else 0
    if smallest < k:
        raise NoReference(f"--cross-validate {k} needs at least {k} training rows of every class (one has "
                          f"{smallest})")
    folds = StratifiedKFold(n_splits=k, shuffle=True, random_state=seed)
    probs = cross_val_predict(model, x, y, cv=folds, method="predict_proba")
    full = np.zeros((len(y), len(dm.class_names)))
    full[:, np.unique(y)] = probs  # classes absent from train keep probability 0
    return y, full, ids


__all__ = ["cross_validated_probabilities"]
