"""ID-embedding optimizer, before / after: test NDCG@10 on ml-100k (zoo's random 8:1:1 split) over three seeded
splits for BPR, LightGCN, NeuMF and two-tower, each at its recipe's hyper-parameters, early stopping on
val/ndcg@10 (patience 10).

    python -m benchmarks.bench_recsys_optim [--seeds 2020 2021 2022] [--models bpr neumf two_tower lightgcn]
        [--sparse-embeddings true|false]   # omitted: the model's default
        [--embedding-backend torch|fbgemm|auto] [--embedding-optimizer rowwise_adagrad ...] [--lr 0.05]

``--sparse-embeddings false`` is the dense Adam path every recommender used before sparse row-wise updates.
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_recsys import run_zoo

#: the recipes' hyper-parameters (recipes/recsys/*_ml100k.yaml)
RECIPES: dict[str, tuple[str, dict[str, Any], int, int]] = {
    # name: (class, init args, batch size, max epochs)
    "bpr": ("BPR", {"embedding_dim": 64, "lr": 1e-3}, 2048, 300),
    "lightgcn": ("LightGCN", {"embedding_dim": 64, "num_layers": 2, "reg_weight": 1e-5, "lr": 2e-3}, 2048, 300),
    "neumf": ("NeuMF", {"embedding_dim": 32, "mlp_layers": (64, 32, 16), "num_negatives": 4, "lr": 1e-3}, 2048, 100),
    "two_tower": ("TwoTower", {"embedding_dim": 64, "tower_layers": (128,), "temperature": 0.1,
                               "logq_correction": True, "lr": 1e-3}, 1024, 100),
    "text_aware": ("TextAwareRecommender", {"embedding_dim": 64, "text_encoder": "minilm", "lr": 1e-3}, 2048, 300),
}


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--models", nargs="+", default=list(RECIPES))
    parser.add_argument("--sparse-embeddings", choices=("true", "false"), default=None)
    parser.add_argument("--embedding-backend", default=None, help="model.embedding_backend (omitted: its default)")
    parser.add_argument("--embedding-optimizer", default=None, help="model.embedding_optimizer")
    parser.add_argument("--lr", type=float, default=None, help="instead of the recipe's")
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--out", default=None, help="write the results as JSON here")
    args = parser.parse_args(argv)
    import torch

    import zoo.tasks.recsys as recsys
    from zoo.data.recsys import InteractionDataModule

    torch.set_num_threads(args.threads)
    extra: dict[str, Any] = {} if args.sparse_embeddings is None else {
        "sparse_embeddings": args.sparse_embeddings == "true"}
    for key in ("embedding_backend", "embedding_optimizer", "lr"):
        if getattr(args, key) is not None:
            extra[key] = getattr(args, key)
    runs: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            cls_name, kwargs, batch, epochs = RECIPES[name]
            runs[name] = {}
            for seed in args.seeds:
                torch.manual_seed(seed)
                model = getattr(recsys, cls_name)(ks=(10,), **{**kwargs, **extra})
                data = InteractionDataModule(dataset="ml-100k", split="random", seed=seed, batch_size=batch)
                r = run_zoo(model, data, Path(tmp) / f"{name}-{seed}", epochs, 1, monitor="val/ndcg@10")
                runs[name][str(seed)] = {"ndcg@10": r["metrics"]["ndcg@10"], "epochs": r["epochs"],
                                         "epoch_s": r["epoch_s"]}
                print(name, seed, runs[name][str(seed)], flush=True)
    summary = {n: {"mean_ndcg@10": statistics.fmean(r["ndcg@10"] for r in by.values()),
                   "sd_ndcg@10": statistics.pstdev([r["ndcg@10"] for r in by.values()]),
                   "median_epoch_s": statistics.median(r["epoch_s"] for r in by.values())} for n, by in runs.items()}
    for n, s in summary.items():
        print(f"{n:<10} NDCG@10 {s['mean_ndcg@10']:.4f} ± {s['sd_ndcg@10']:.4f}  s/epoch {s['median_epoch_s']:.3f}")
    out = {"sparse_embeddings": args.sparse_embeddings or "model default",
           **{k: v for k, v in extra.items() if k != "sparse_embeddings"}, "seeds": args.seeds, "runs": runs,
           "summary": summary}
    if args.out:
        Path(args.out).write_text(json.dumps(out, indent=2))
    return out


if __name__ == "__main__":
    main()
