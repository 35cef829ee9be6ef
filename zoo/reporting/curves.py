"""Loss and metric curves from the per-epoch history a :class:`~zoo.callbacks.run_report.RunReport` keeps."""

from __future__ import annotations

from pathlib import Path

from zoo.reporting.io import save_figure


def plot_curves(history: list[dict[str, float]], path: Path, keys: list[str], title: str) -> Path | None:
    """One subplot per metric name (without its stage prefix); train and val share a subplot."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    names = sorted({k.split("/", 1)[1] for row in history for k in row if "/" in k and k.split("/", 1)[1] in keys})
    if not names:
        return None
    fig, axes = plt.subplots(1, len(names), figsize=(4.5 * len(names), 3.6), squeeze=False)
    for ax, name in zip(axes[0], names):
        for stage in ("train", "val"):
            key = f"{stage}/{name}"
            pts = [(row["epoch"], row[key]) for row in history if key in row]
            if pts:
                xs, ys = zip(*pts)
                ax.plot(xs, ys, marker="o", markersize=3, label=stage)
        ax.set_title(name)
        ax.set_xlabel("epoch")
        ax.grid(alpha=0.3)
        ax.legend()
    fig.suptitle(title)
    return save_figure(fig, path, dpi=100)
