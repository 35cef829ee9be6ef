"""zoo recommenders against each other on ml-100k (RecBole's protocol: random 8:1:1 per user, full ranking):
BPR vs LightGCN on NDCG@10, and the text-aware model vs ID-only BPR on held-out items with <= 5 training
interactions (ranked among all items, and among the cold items only).

Only about a hundred test users have such a held-out item, so one split is noisy: every model runs on several
seeded splits (``--seeds``) and the table gives each split and the mean.

    python -m benchmarks.bench_recsys_models [--seeds 2020 2021 2022] [--models bpr lightgcn text_aware]
"""

from __future__ import annotations

import argparse
import json
import statistics
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.bench_recsys import METRICS, run_zoo

#: each model at the learning rate of its recipe (BPR and text-aware: RecBole's 1e-3; LightGCN: 2e-3)
LEARNING_RATES = {"bpr": 1e-3, "lightgcn": 2e-3, "text_aware": 1e-3}
ROWS = [("", "metrics", k) for k in METRICS] + [("cold<=5 ", "cold", k) for k in METRICS] + \
       [("cold<=5 among cold ", "cold_among_cold", k) for k in METRICS]


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--seeds", type=int, nargs="+", default=[2020, 2021, 2022])
    parser.add_argument("--threads", type=int, default=1)
    parser.add_argument("--models", nargs="+", default=list(LEARNING_RATES))
    parser.add_argument("--text-aware-args", default="{}", help="JSON of extra TextAwareRecommender arguments")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from zoo.data.recsys import InteractionDataModule
    from zoo.tasks.recsys import BPR, LightGCN, TextAwareRecommender

    builders = {"bpr": lambda: BPR(embedding_dim=64, lr=LEARNING_RATES["bpr"], ks=(10,)),
                "lightgcn": lambda: LightGCN(embedding_dim=64, num_layers=2, lr=LEARNING_RATES["lightgcn"], ks=(10,)),
                "text_aware": lambda: TextAwareRecommender(embedding_dim=64, text_encoder="minilm", ks=(10,),
                                                           lr=LEARNING_RATES["text_aware"],
                                                           **json.loads(args.text_aware_args))}
    runs: dict[str, dict[int, Any]] = {name: {} for name in args.models}
    with tempfile.TemporaryDirectory() as tmp:
        for seed in args.seeds:
            for name in args.models:
                torch.manual_seed(seed)
                data = InteractionDataModule(dataset="ml-100k", split="random", seed=seed, batch_size=2048)
                runs[name][seed] = run_zoo(builders[name](), data, Path(tmp) / f"{name}-{seed}", args.epochs, 2,
                                           monitor="val/ndcg@10")
                print(seed, name, runs[name][seed]["metrics"], "cold among cold:",
                      runs[name][seed]["cold_among_cold"], flush=True)
    mean = {name: {section: {k: _mean([r[section][k] for r in by_seed.values()]) for k in METRICS}
                   for section in ("metrics", "cold", "cold_among_cold")} for name, by_seed in runs.items()}
    f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
    header = ("", *(f"{n} (mean)" for n in args.models), *(f"{n} {s}" for s in args.seeds for n in args.models))
    rows = [header]
    for label, section, k in ROWS:
        rows.append((label + k, *(f(mean[n][section][k]) for n in args.models),
                     *(f(runs[n][s][section][k]) for s in args.seeds for n in args.models)))
    rows.append(("cold<=5 users", *("" for _ in args.models),
                 *(str(runs[n][s]["cold_users"]) for s in args.seeds for n in args.models)))
    rows.append(("epochs", *("" for _ in args.models),
                 *(str(runs[n][s]["epochs"]) for s in args.seeds for n in args.models)))
    widths = [max(len(r[c]) for r in rows) for c in range(len(rows[0]))]
    print("\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows), flush=True)
    return {"dataset": "ml-100k", "split": f"zoo random 8:1:1 per user, seeds {args.seeds}",
            "learning_rates": {n: LEARNING_RATES[n] for n in args.models}, "mean": mean,
            "runs": {n: {str(s): r for s, r in by_seed.items()} for n, by_seed in runs.items()}}


def _mean(values: list[float | None]) -> float | None:
    values = [v for v in values if v is not None]
    return statistics.fmean(values) if values else None


if __name__ == "__main__":
    main()
