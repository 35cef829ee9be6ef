"""The n-gram featuriser's checkpoint copy: ``state`` / ``from_state`` rebuild the fitted TF-IDF exactly, the
datamodule's ``state_dict`` holds tensors a ``weights_only`` load accepts, and the training split's bags come from
the fitting pass itself."""

from __future__ import annotations

import io

import numpy as np
import pytest
import torch

from tests.tasks.test_ngram import write_corpus
from zoo.data.text import NgramTextDataModule
from zoo.data.text.readers import TextDataError
from zoo.inference.ngrams import NgramFeaturizer, NgramSettings

TEXTS = ["北京 足球 比赛 球队", "банк рынок цена", "ταινία σκηνοθέτης", "market price bank", "足球 ταινία bank"] * 4


def _as_dicts(bags):
    return [dict(zip(ids.tolist(), np.round(w, 6).tolist())) for ids, w in bags]


@pytest.mark.parametrize("features", ["tfidf", "hashing"])
def test_state_rebuilds_the_same_features_and_fit_bags_equals_bags(features):
    fitted = NgramFeaturizer(NgramSettings(features=features, buckets=256, max_features=50))
    from_fit = fitted.fit_bags(TEXTS)
    assert _as_dicts(from_fit) == _as_dicts(fitted.bags(TEXTS))
    rebuilt = NgramFeaturizer.from_state(fitted.state())
    assert rebuilt.space() == fitted.space()
    more = [*TEXTS, "new unseen words 新"]
    assert _as_dicts(rebuilt.bags(more)) == _as_dicts(fitted.bags(more))


def test_datamodule_state_survives_a_weights_only_load_and_skips_the_fit(tmp_path, monkeypatch):
    path = write_corpus(tmp_path / "c.csv", n=30)
    trained = NgramTextDataModule(train=path, features="tfidf", max_features=200)
    trained.setup("fit")
    buffer = io.BytesIO()
    torch.save({"NgramTextDataModule": trained.state_dict()}, buffer)
    buffer.seek(0)
    state = torch.load(buffer, weights_only=True)["NgramTextDataModule"]
    monkeypatch.setattr(NgramFeaturizer, "fit_bags", lambda *a: pytest.fail("fitted again"))
    fresh = NgramTextDataModule(train=path, features="tfidf", max_features=200)
    fresh.load_state_dict(state)
    assert fresh.feature_space == trained.feature_space
    with pytest.raises(TextDataError, match="n-gram featuriser cannot be used"):
        NgramTextDataModule(train=path, features="tfidf").load_state_dict({"featurizer": {"settings": {}}})
