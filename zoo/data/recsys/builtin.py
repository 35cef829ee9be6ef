"""Built-in interaction datasets: ml-100k (from the installed ``recbole`` package) and a synthetic clustered log."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd

from zoo.data.recsys.readers import RecsysDataError
from zoo.registry import DATASETS


def recbole_dataset_dir(name: str = "ml-100k") -> Path:
    import importlib.util

    spec = importlib.util.find_spec("recbole")
    if spec is None or not spec.submodule_search_locations:
        raise RecsysDataError("the built-in ml-100k comes from the `recbole` package; install it (`make venv` does, "
                              "with --no-deps)")
    folder = Path(list(spec.submodule_search_locations)[0]) / "dataset_example" / name
    if not (folder / f"{name}.inter").exists():
        raise RecsysDataError(f"{folder / (name + '.inter')} not found in the installed recbole package")
    return folder


@DATASETS.register("ml-100k", tags=("recsys",),
                   summary="MovieLens 100k (943 users, 1,682 movies; RecBole atomic files)")
def ml_100k() -> dict[str, Any]:
    folder = recbole_dataset_dir("ml-100k")
    return {"path": str(folder / "ml-100k.inter"), "items_path": str(folder / "ml-100k.item")}


def synthetic_log(num_users: int = 50, num_items: int = 80, per_user: int = 12, seed: int = 0,
                  num_clusters: int = 4) -> tuple[pd.DataFrame, pd.DataFrame]:
    """A small log with structure a model can learn: users and items fall in clusters, users mostly pick items
    of their cluster; item text names the cluster. Returns (interactions, items) frames."""
    rng = np.random.default_rng(seed)
    item_cluster = np.arange(num_items) % num_clusters
    rows = []
    for u in range(num_users):
        c = u % num_clusters
        own = np.flatnonzero(item_cluster == c)
        other = np.flatnonzero(item_cluster != c)
        n_own = int(round(per_user * 0.8))
        picks = np.concatenate([rng.choice(own, min(n_own, len(own)), replace=False),
                                rng.choice(other, per_user - min(n_own, len(own)), replace=False)])
        for t, it in enumerate(rng.permutation(picks)):
            rows.append((f"u{u}", f"i{it}", float(rng.integers(1, 6)), float(1_000_000 + 1000 * u + t)))
    inter = pd.DataFrame(rows, columns=["user_id", "item_id", "rating", "timestamp"])
    names = ["red", "green", "blue", "yellow", "black", "white", "purple", "orange"]
    items = pd.DataFrame({"item_id": [f"i{i}" for i in range(num_items)],
                          "title": [f"{names[item_cluster[i] % len(names)]} thing {i}" for i in range(num_items)],
                          "genres": [f"{names[item_cluster[i] % len(names)]}|group{item_cluster[i]}"
                                     for i in range(num_items)]})
    return inter, items


@DATASETS.register("synthetic_interactions", tags=("recsys",),
                   summary="generated clustered log (50 users x 80 items) for tests")
def synthetic_interactions(**kwargs: Any) -> dict[str, Any]:
    inter, items = synthetic_log(**kwargs)
    return {"interactions": inter, "items": items}
