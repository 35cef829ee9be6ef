"""How zoo's BPR scales with the log: prepare time, seconds per training epoch, seconds per full-ranking
evaluation and peak RSS at 0.25 M / 1 M / 4 M / 16 M synthetic interactions (not a pass/fail test).

    python -m benchmarks.bench_recsys_scale [--sizes 0.25 1 4 16] [--paths default] [--dense]
        [--recbole-max 4] [--eval-users 20000] [--out results.jsonl]
    python -m benchmarks.bench_recsys_scale --ann 100000 1000000   # FAISS top-10 recall vs exact

The log: a fixed-seed power-law generator, users = n / 50 and items = n / 100 (fixed ratios: each size is the same
shape of log), duplicate (user, item) pairs dropped, written as Parquet (row groups of 1 M) and read through
``InteractionDataModule(path=...)``, i.e. the streaming reader. BPR dim 64, batch 4096, Adam 1e-3, one negative,
random 8:1:1 split. Each size runs in its own process so its peak RSS (``ru_maxrss``) is its own. The zoo paths
(``--paths``): ``default`` (BPR as a recipe gets it: ``sparse_embeddings`` and ``embedding_backend`` on ``auto``),
``sparse`` (row-wise lazy Adam, torch backend), ``dense`` (dense Adam: one optimizer step touches every row, not the
batch's; ``--dense`` adds it), ``fbgemm`` (fbgemm's fused row-wise Adagrad, lr 0.05) and ``adagrad`` (the torch
backend's row-wise Adagrad, the same arithmetic). Every result records the load average before and after it, and
the summary gives each zoo path's epoch, and epoch plus evaluation, as a ratio to RecBole's at the same size.
The epoch is the training pass alone (its batches, negatives, steps), from Lightning's epoch start to the start of
validation, as RecBole's ``_train_epoch`` timed beside it; ``epoch_and_eval_s`` is zoo's whole epoch with its
evaluation; ``epoch_cpu_s`` the CPU seconds of the epoch (the steadier figure on a shared machine with
``BENCH_THREADS=1``). Torch runs ``BENCH_THREADS`` (default 2) intra-op threads in both tools' processes.
Evaluation: full ranking of every item for the first ``--eval-users`` validation users (all of them below that), in
the datamodule's bounded user blocks; the per-user time is also given. RecBole 1.2.1's BPR runs one epoch and one
full-sort evaluation on the same file (atomic format) for sizes up to ``--recbole-max`` millions.
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any


def synthetic_power_law(n: int, seed: int = 0) -> Any:
    import numpy as np
    import pandas as pd

    rng = np.random.default_rng(seed)
    num_users, num_items = max(10, n // 50), max(10, n // 100)
    # Zipf-like popularity over ranks (exponent < 1 keeps a long but not degenerate tail), shuffled ids
    user_p = 1.0 / np.arange(1, num_users + 1) ** 0.6
    item_p = 1.0 / np.arange(1, num_items + 1) ** 0.9
    users = rng.choice(num_users, n, p=user_p / user_p.sum())
    items = rng.choice(num_items, n, p=item_p / item_p.sum())
    keys, first = np.unique(users.astype(np.int64) * num_items + items, return_index=True)
    first.sort()
    return pd.DataFrame({"user_id": users[first], "item_id": items[first], "timestamp": np.arange(len(first))})


#: zoo path -> BPR arguments
PATHS: dict[str, dict[str, Any]] = {
    "default": {"lr": 1e-3},
    "sparse": {"lr": 1e-3, "sparse_embeddings": True, "embedding_backend": "torch"},
    "dense": {"lr": 1e-3, "sparse_embeddings": False, "embedding_backend": "torch"},
    "fbgemm": {"lr": 0.05, "embedding_backend": "fbgemm", "embedding_optimizer": "rowwise_adagrad"},
    "adagrad": {"lr": 0.05, "embedding_backend": "torch", "embedding_optimizer": "rowwise_adagrad"},
}


def run_size(millions: float, kind: str, eval_users: int, workdir: Path) -> dict[str, Any]:
    """One size in this process (the parent starts one process per size)."""
    import lightning.pytorch as pl
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from zoo.data.recsys import InteractionDataModule
    from zoo.tasks.recsys import BPR

    n = int(millions * 1_000_000)
    path = workdir / f"log_{n}.parquet"
    if not path.exists():
        pq.write_table(pa.Table.from_pandas(synthetic_power_law(n), preserve_index=False), path,
                       row_group_size=1_000_000)
    out: dict[str, Any] = {"size_m": millions, "path": kind}
    start = time.perf_counter()
    data = InteractionDataModule(path=str(path), split="random", seed=0, batch_size=4096, eval_batch_size=4096)
    data.prepare()
    out["prepare_s"] = time.perf_counter() - start
    out["rss_after_prepare_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    out.update(interactions=int(sum(len(p[0]) for p in data.parts.values())), users=data.num_users,
               items=data.num_items)
    torch.manual_seed(0)
    model = BPR(embedding_dim=64, ks=(10,), **PATHS[kind])
    model.bind_data(data)
    view = data.eval_view("val")
    view.users = view.users[:eval_users]  # the same users every run: the first ones by index
    out["eval_users"] = len(view.users)
    times: dict[str, list[float]] = {"epoch": [], "eval": [], "epoch_and_eval": [], "epoch_cpu": []}

    class Timer(pl.Callback):
        # Lightning runs the end-of-epoch validation before on_train_epoch_end, so the training part ends where
        # validation starts: RecBole's _train_epoch, timed beside it, does not evaluate either
        def on_train_epoch_start(self, *a: Any) -> None:
            self.t, self.cpu = time.perf_counter(), time.process_time()

        def on_train_epoch_end(self, *a: Any) -> None:
            times["epoch_and_eval"].append(time.perf_counter() - self.t)

        def on_validation_epoch_start(self, *a: Any) -> None:
            self.v = time.perf_counter()
            times["epoch"].append(self.v - self.t)
            times["epoch_cpu"] = [time.process_time() - self.cpu]

        def on_validation_epoch_end(self, *a: Any) -> None:
            times["eval"].append(time.perf_counter() - self.v)

    trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                         enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                         callbacks=[Timer()])
    trainer.fit(model, data)
    out["embedding_backend"] = "fbgemm" if model._fused is not None else "torch"
    out["row_wise_torch"] = any(t.sparse for t in model.sparse_tables())
    out["epoch_s"], out["eval_s"] = times["epoch"][0], times["eval"][0]
    out["epoch_and_eval_s"], out["epoch_cpu_s"] = times["epoch_and_eval"][0], times["epoch_cpu"][0]
    out["ms_per_step"] = 1000 * out["epoch_s"] / trainer.global_step
    out["eval_ms_per_user"] = 1000 * out["eval_s"] / max(1, out["eval_users"])
    out["val_ndcg@10"] = float(trainer.callback_metrics["val/ndcg@10"])
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    out["peak_rss_gb_per_m"] = out["peak_rss_gb"] / (out["interactions"] / 1e6)
    return out


def run_recbole(millions: float, workdir: Path) -> dict[str, Any]:
    """RecBole's BPR on the same log: one epoch and one full-sort evaluation (its own split and loaders)."""
    from benchmarks.bench_recsys import recbole_environment

    n = int(millions * 1_000_000)
    folder = workdir / "recbole" / f"syn{n}"
    folder.mkdir(parents=True, exist_ok=True)
    df = synthetic_power_law(n)
    with open(folder / f"syn{n}.inter", "w") as fh:
        fh.write("user_id:token\titem_id:token\ttimestamp:float\n")
        df.to_csv(fh, sep="\t", header=False, index=False)
    out: dict[str, Any] = {"size_m": millions, "path": "recbole"}
    with recbole_environment(folder.parent):
        from recbole.config import Config
        from recbole.data import create_dataset, data_preparation
        from recbole.model.general_recommender import BPR
        from recbole.trainer import Trainer
        from recbole.utils import init_seed

        start = time.perf_counter()
        config = Config(model="BPR", dataset=f"syn{n}", config_dict={
            "data_path": str(folder.parent), "epochs": 1, "show_progress": False, "state": "ERROR",
            "train_batch_size": 4096, "eval_batch_size": 4096 * 16, "metrics": ["NDCG"], "topk": [10],
            "valid_metric": "NDCG@10", "load_col": {"inter": ["user_id", "item_id", "timestamp"]},
            "save_dataset": False, "save_dataloaders": False})
        init_seed(0, True)
        dataset = create_dataset(config)
        train, valid, _ = data_preparation(config, dataset)
        out["prepare_s"] = time.perf_counter() - start
        model = BPR(config, train.dataset)
        trainer = Trainer(config, model)
        start, start_cpu = time.perf_counter(), time.process_time()
        trainer._train_epoch(train, 0, show_progress=False)
        out["epoch_s"], out["epoch_cpu_s"] = time.perf_counter() - start, time.process_time() - start_cpu
        start = time.perf_counter()
        result = trainer.evaluate(valid, load_best_model=False, show_progress=False)
        out["eval_s"] = time.perf_counter() - start
        out["val_ndcg@10"] = float(result["ndcg@10"])
        out["eval_users"] = int(valid.dataset.user_num)
    out["peak_rss_gb"] = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2 ** 20
    return out


def ann_recall(num_items: int, dim: int = 64, users: int = 1000, k: int = 10, seed: int = 0) -> dict[str, Any]:
    """FAISS HNSW top-K vs exact top-K on a catalogue of ``num_items`` vectors: recall@K and time per user. The
    vectors are a trained-looking mixture (items around 1,000 centres, users near them), not pure noise, on which
    every ANN index does worst."""
    import torch

    from zoo.tasks.recsys.retrieval import FaissIndex, recall_at_k

    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(1000, dim, generator=g)
    items = (centres[torch.randint(0, 1000, (num_items + 1,), generator=g)]
             + 0.5 * torch.randn(num_items + 1, dim, generator=g))
    queries = centres[torch.randint(0, 1000, (users,), generator=g)] + 0.5 * torch.randn(users, dim, generator=g)
    start = time.perf_counter()
    index = FaissIndex(items)
    build_s = time.perf_counter() - start
    start = time.perf_counter()
    exact = torch.cat([(q @ items[1:].T).topk(k, dim=1).indices + 1 for q in queries.split(256)])
    exact_s = time.perf_counter() - start
    start = time.perf_counter()
    _, approx = index.search(queries, k)
    ann_s = time.perf_counter() - start
    return {"items": num_items, "dim": dim, "users": users, "k": k, f"recall@{k}": recall_at_k(approx, exact),
            "build_s": build_s, "exact_ms_per_user": 1000 * exact_s / users, "faiss_ms_per_user": 1000 * ann_s / users}


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4, 16], help="millions of interactions")
    parser.add_argument("--paths", nargs="+", default=["default"], choices=list(PATHS))
    parser.add_argument("--dense", action="store_true", help="also run the dense-Adam path at each size")
    parser.add_argument("--recbole-max", type=float, default=4.0)
    parser.add_argument("--eval-users", type=int, default=20_000)
    parser.add_argument("--out", default=None, help="append each result as a JSON line here")
    parser.add_argument("--ann", type=int, nargs="*", default=None, metavar="ITEMS",
                        help="only measure FAISS top-10 recall vs exact on catalogues of these sizes")
    parser.add_argument("--one", nargs=3, metavar=("SIZE", "PATH", "WORKDIR"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.ann:
        found = [ann_recall(n) for n in args.ann]
        for r in found:
            print(json.dumps(r), flush=True)
        return found
    if args.one:
        import torch

        # the same number of torch threads for RecBole as for zoo (torch's default is one per core)
        torch.set_num_threads(int(os.environ.get("BENCH_THREADS", "2")))
        size, kind, workdir = float(args.one[0]), args.one[1], Path(args.one[2])
        result = run_recbole(size, workdir) if kind == "recbole" else run_size(size, kind, args.eval_users, workdir)
        print("RESULT " + json.dumps(result), flush=True)
        return [result]
    results = []
    with tempfile.TemporaryDirectory() as tmp:
        for size in args.sizes:
            kinds = ([*args.paths] + (["dense"] if args.dense and "dense" not in args.paths else [])
                     + (["recbole"] if size <= args.recbole_max else []))
            for kind in kinds:
                load_before = os.getloadavg()[0]
                cmd = [sys.executable, "-m", "benchmarks.bench_recsys_scale", "--eval-users", str(args.eval_users),
                       "--one", str(size), kind, tmp]
                proc = subprocess.run(cmd, capture_output=True, text=True)
                line = next((x for x in proc.stdout.splitlines() if x.startswith("RESULT ")), None)
                result = json.loads(line[7:]) if line else {"size_m": size, "path": kind,
                                                             "error": proc.stderr.strip().splitlines()[-1:]}
                result["load_before"], result["load_after"] = load_before, os.getloadavg()[0]
                results.append(result)
                print(json.dumps(result), flush=True)
                if args.out:
                    with open(args.out, "a") as fh:
                        fh.write(json.dumps(result) + "\n")
    print(summary_table(results))
    return results


def summary_table(results: list[dict[str, Any]]) -> str:
    """Markdown rows: each zoo path's seconds per epoch / evaluation and RecBole's over zoo's at the same size."""
    rows = ["| interactions | path | s / epoch | RecBole / zoo epoch | s / eval (users) | RecBole / zoo, epoch + eval "
            "| peak RSS GB (per M) | val NDCG@10 | load before / after |", "|" + " --- |" * 9]
    for r in results:
        if "error" in r:
            rows.append(f"| {r['size_m']} M | {r['path']} | failed: {r['error']} |")
            continue
        rec = next((x for x in results if x["size_m"] == r["size_m"] and x["path"] == "recbole" and "error" not in x),
                   None)
        ratio = f"{rec['epoch_s'] / r['epoch_s']:.2f}x" if rec and r["path"] != "recbole" else ""
        both = (f"{(rec['epoch_s'] + rec['eval_s']) / (r['epoch_s'] + r['eval_s']):.2f}x"
                if rec and r["path"] != "recbole" else "")
        inter = f"{r['interactions'] / 1e6:.3f} M" if "interactions" in r else f"{r['size_m']} M (drawn)"
        per_m = f" ({r['peak_rss_gb_per_m']:.2f})" if "peak_rss_gb_per_m" in r else ""
        ndcg = f"{r['val_ndcg@10']:.4f}" if "val_ndcg@10" in r else ""  # RecBole's: its own split and users
        rows.append(f"| {inter} | {r['path']} | {r['epoch_s']:.2f} | {ratio} | {r['eval_s']:.2f} ({r['eval_users']:,}) "
                    f"| {both} | {r['peak_rss_gb']:.2f}{per_m} | {ndcg} "
                    f"| {r['load_before']:.1f} / {r['load_after']:.1f} |")
    return "\n".join(rows)


if __name__ == "__main__":
    main()
