"""metrics.png: one panel per metric, the @K cut-offs of a metric in one panel, laid out in a grid."""

from __future__ import annotations

import math

from PIL import Image


def test_metrics_png_is_a_grid_with_one_panel_per_at_k_metric(tmp_path):
    from zoo.reporting.curves import MAX_COLUMNS, curve_panels, plot_curves

    names = [f"{m}@{k}" for m in ("ndcg", "recall", "precision", "hit_rate") for k in (5, 10, 20)] + ["mrr", "auc",
                                                                                                     "coverage"]
    history = [{"epoch": float(e), **{f"val/{n}": 0.1 * e for n in names}} for e in range(3)]
    panels = curve_panels(history, names)
    assert [t for t, _ in panels] == ["auc", "coverage", "hit_rate@K", "mrr", "ndcg@K", "precision@K", "recall@K"]
    assert [label for label, *_ in dict(panels)["ndcg@K"]] == ["val @5", "val @10", "val @20"]
    path = plot_curves(history, tmp_path / "m.png", names, "metrics")
    width, height = Image.open(path).size
    assert (width, height) == (450 * MAX_COLUMNS, 360 * math.ceil(7 / MAX_COLUMNS))  # 15 metrics: 1800 x 720
