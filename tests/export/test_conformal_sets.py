"""Prediction sets in served answers: ``zoo export`` keeps ``zoo test``'s split-conformal threshold only when that
test measured this model's probabilities, and the answers' sets follow the LAC rule of zoo.reporting.conformal
(the end-to-end check, fit -> test -> export -> predict, is in tests/cli/test_ngram_no_refit.py)."""

from __future__ import annotations

import torch

from zoo.export import conformal_threshold
from zoo.inference.requests import conformal_of, probability_answers
from zoo.reporting.conformal import prediction_sets


def _trust(temperature=(1.5,), kind="single", threshold=0.7):
    return {"kind": kind, "calibration": {"temperature": list(temperature)},
            "conformal": [{"method": "aps", "target": 0.9, "threshold": 0.95, "coverage": 0.9, "n_cal": 50},
                          {"method": "lac", "target": 0.8, "threshold": 0.4, "coverage": 0.8, "n_cal": 50},
                          {"method": "lac", "target": 0.9, "threshold": threshold, "coverage": 0.91, "n_cal": 50}]}


def test_the_threshold_travels_only_when_the_test_measured_this_model():
    got = conformal_threshold(_trust(), [1.5])
    assert got == {"method": "lac", "coverage": 0.9, "threshold": 0.7, "n_cal": 50, "test_coverage": 0.91}
    assert conformal_threshold(_trust(), [1.2]) is None  # another checkpoint's (or calibration's) probabilities
    assert conformal_threshold(_trust(kind="multi"), [1.5]) is None
    assert conformal_threshold(_trust(threshold=float("inf")), [1.5]) is None  # too few calibration rows
    assert conformal_threshold(None, [1.5]) is None


def test_answers_sets_follow_the_lac_rule_and_vanish_without_the_calibration():
    probs = torch.tensor([[0.5, 0.35, 0.15], [0.9, 0.06, 0.04], [0.2, 0.3, 0.5]])
    names = ["a", "b", "c"]
    meta = {"temperature": [1.5], "conformal": {"method": "lac", "coverage": 0.9, "threshold": 0.7}}
    conf = conformal_of(meta, torch.tensor([1.5]))
    rows = probability_answers(probs, [{}, {}, {}], names, conf)
    expected = prediction_sets(probs, 0.7, "lac")
    for row, members in zip(rows, expected):
        assert set(row["prediction_set"]) == {names[j] for j in torch.nonzero(members).flatten().tolist()}
        assert row["prediction_set"][0] == row["label"] and row["prediction_set_coverage"] == 0.9
    assert rows[0]["prediction_set"] == ["a", "b"] and rows[1]["prediction_set"] == ["a"]
    # served with --calibration none (temperature 1): the threshold was not measured on these probabilities
    assert conformal_of(meta, torch.tensor([1.0])) is None
    assert "prediction_set" not in probability_answers(probs, [{}], names, None)[0]
