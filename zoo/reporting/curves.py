"""Loss and metric curves from the per-epoch history a :class:`~zoo.callbacks.run_report.RunReport` keeps."""

from __future__ import annotations

import math
import re
from pathlib import Path

from zoo.reporting.io import save_figure

#: panels per row of a curves figure: a recommender logs a dozen metrics, and one row of them is unreadable
MAX_COLUMNS = 4
_AT_K = re.compile(r"^(?P<base>.+)@(?P<k>\d+)$")

#: (panel title, [(legend label, epochs, values)])
Panel = tuple[str, list[tuple[str, list[float], list[float]]]]


def curve_panels(history: list[dict[str, float]], keys: list[str]) -> list[Panel]:
    """One panel per metric name (without its stage prefix), train and val in the same panel; metrics that
    differ only in their cut-off (``ndcg@5``, ``ndcg@10``, ...) share one panel, ``ndcg@K``, a line per K."""
    wanted = set(keys)
    names = sorted({k.split("/", 1)[1] for row in history for k in row
                    if "/" in k and k.split("/", 1)[1] in wanted})
    groups: dict[str, list[tuple[int, str]]] = {}
    for name in names:
        m = _AT_K.match(name)
        title, k = (f"{m['base']}@K", int(m["k"])) if m else (name, -1)
        groups.setdefault(title, []).append((k, name))
    panels: list[Panel] = []
    for title in sorted(groups):
        lines = []
        for k, name in sorted(groups[title]):
            for stage in ("train", "val"):
                key = f"{stage}/{name}"
                pts = [(row["epoch"], row[key]) for row in history if key in row]
                if pts:
                    label = stage if k < 0 else f"{stage} @{k}"
                    lines.append((label, [p[0] for p in pts], [p[1] for p in pts]))
        panels.append((title, lines))
    return panels


def grid_shape(panels: int) -> tuple[int, int]:
    """(rows, columns) of a grid for ``panels`` subplots, at most :data:`MAX_COLUMNS` wide."""
    cols = max(1, min(MAX_COLUMNS, panels))
    return max(1, math.ceil(panels / cols)), cols


def plot_curves(history: list[dict[str, float]], path: Path, keys: list[str], title: str) -> Path | None:
    """The panels of :func:`curve_panels` in a grid at most :data:`MAX_COLUMNS` wide."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    panels = curve_panels(history, keys)
    if not panels:
        return None
    rows, cols = grid_shape(len(panels))
    fig, axes = plt.subplots(rows, cols, figsize=(4.5 * cols, 3.6 * rows), squeeze=False)
    flat = list(axes.flat)
    for ax, (name, lines) in zip(flat, panels):
        for label, xs, ys in lines:
            ax.plot(xs, ys, marker="o", markersize=3, label=label)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    for ax in flat[len(panels):]:
        fig.delaxes(ax)
    fig.suptitle(title)
    return save_figure(fig, path, dpi=100)


__all__ = ["MAX_COLUMNS", "Panel", "curve_panels", "grid_shape", "plot_curves"]
