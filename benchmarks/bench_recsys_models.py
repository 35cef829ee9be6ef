"""zoo recommenders against each other on ml-100k (RecBole's protocol: random 8:1:1 per user, full ranking):
BPR vs LightGCN on NDCG@10, and the text-aware model vs ID-only BPR on held-out items with <= 5 training
interactions (ranked among all items, and among the cold items only).

    python -m benchmarks.bench_recsys_models [--epochs 300] [--models bpr lightgcn text_aware]
"""

from __future__ import annotations

import argparse
import json
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_recsys import METRICS, run_zoo


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=["bpr", "lightgcn", "text_aware"])
    parser.add_argument("--lr", type=float, default=1e-3)
    parser.add_argument("--text-aware-args", default="{}", help="JSON of extra TextAwareRecommender arguments")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from zoo.data.recsys import InteractionDataModule
    from zoo.tasks.recsys import BPR, LightGCN, TextAwareRecommender

    builders = {"bpr": lambda: BPR(embedding_dim=64, lr=args.lr, ks=(10,)),
                "lightgcn": lambda: LightGCN(embedding_dim=64, num_layers=2, lr=args.lr, ks=(10,)),
                "text_aware": lambda: TextAwareRecommender(embedding_dim=64, text_encoder="minilm", lr=args.lr, ks=(10,),
                                                           **json.loads(args.text_aware_args))}
    results: dict[str, Any] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name in args.models:
            torch.manual_seed(args.seed)
            data = InteractionDataModule(dataset="ml-100k", split="random", seed=args.seed, batch_size=2048)
            results[name] = run_zoo(builders[name](), data, Path(tmp), args.epochs, 2)
            print(name, results[name]["metrics"], flush=True)
    names = list(results)
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    rows = [("", *names)]
    for k in METRICS:
        rows.append((k, *(f(results[n]["metrics"][k]) for n in names)))
    for k in METRICS:
        rows.append((f"cold<=5 {k}", *(f(results[n]["cold"][k]) for n in names)))
    for k in METRICS:
        rows.append((f"cold<=5 among cold {k}", *(f(results[n]["cold_among_cold"][k]) for n in names)))
    rows.append(("cold<=5 users", *(str(results[n]["cold_users"]) for n in names)))
    rows.append(("epochs", *(str(results[n]["epochs"]) for n in names)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows), flush=True)
    return {"dataset": "ml-100k", "split": "zoo random 8:1:1 per user, seed 2020", "results": results}


if __name__ == "__main__":
    main()
