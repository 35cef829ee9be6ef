"""RecBole 1.2.1 BPR vs zoo BPR on ml-100k, same split, same metrics, one process.

    python -m benchmarks.bench_recsys [--epochs 300] [--repeats 20] [--skip-extras]

1. RecBole builds its default split of ml-100k (random 8:1:1 per user, seed 2020) and trains BPR with its
   defaults (64-d, Adam lr 1e-3, batch 2048, one uniform negative, early stopping on valid MRR@10 after 10
   evaluations without improvement).
2. The very same train / valid / test interactions (RecBole's, mapped back to raw ids) are given to zoo's
   ``InteractionDataModule`` (``split: column``); zoo BPR trains with the same hyper-parameters and stopping rule.
3. Reported side by side: seconds per training epoch (median), seconds per full-ranking evaluation of the test
   set (median over ``--repeats``), test NDCG@10 / Recall@10 / Hit@10 / MRR@10, and zoo/RecBole ratios.

Extras on the same split (skip with ``--skip-extras``): zoo LightGCN vs zoo BPR on NDCG@10, and the text-aware
model (MiniLM on titles + genres) vs ID-only BPR on test items with <= 5 training interactions.

RecBole is patched here, never in site-packages: NumPy 2 dropped aliases it uses, torch >= 2.6 defaults
``torch.load`` to ``weights_only=True`` (RecBole reloads its own pickled checkpoints), its Config parses
``sys.argv``, it writes log/ and saved/ into the working directory, and ``recbole.quick_start`` imports ray.
"""

from __future__ import annotations

import argparse
import contextlib
import os
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

METRICS = ("ndcg@10", "recall@10", "hit@10", "mrr@10")


@contextlib.contextmanager
def recbole_environment(workdir: Path):
    """Everything RecBole 1.2.1 needs today, undone afterwards."""
    import numpy as np
    import torch

    for alias, target in (("float_", np.float64), ("complex_", np.complex128), ("unicode_", np.str_)):
        if not hasattr(np, alias):
            setattr(np, alias, target)
    original_load, original_argv, original_cwd = torch.load, sys.argv, os.getcwd()

    def load(*args: Any, **kwargs: Any) -> Any:  # RecBole's own checkpoints are pickles it wrote itself
        kwargs["weights_only"] = False
        return original_load(*args, **kwargs)

    torch.load = load
    sys.argv = [original_argv[0] if original_argv else "bench"]
    os.chdir(workdir)
    # importing Lightning (done by zoo) sets this, which makes every torch optimizer step probe NVML; RecBole run
    # on its own never has it, so run it as it would run alone
    nvml_probe = os.environ.pop("PYTORCH_NVML_BASED_CUDA_CHECK", None)
    try:
        yield
    finally:
        torch.load, sys.argv = original_load, original_argv
        os.chdir(original_cwd)
        if nvml_probe is not None:
            os.environ["PYTORCH_NVML_BASED_CUDA_CHECK"] = nvml_probe


def run_recbole(workdir: Path, epochs: int, repeats: int, seed: int) -> dict[str, Any]:
    import logging

    from recbole.config import Config
    from recbole.data import create_dataset, data_preparation
    from recbole.model.general_recommender import BPR
    from recbole.trainer import Trainer
    from recbole.utils import init_seed

    from zoo.data.recsys import recbole_dataset_dir

    data_path = str(recbole_dataset_dir("ml-100k").parent)
    config = Config(model="BPR", dataset="ml-100k", config_dict={
        "data_path": data_path, "epochs": epochs, "seed": seed, "show_progress": False, "state": "ERROR",
        "metrics": ["Recall", "MRR", "NDCG", "Hit"], "topk": [10], "valid_metric": "MRR@10",
        "checkpoint_dir": str(workdir / "saved"), "log_wandb": False, "stopping_step": 10,
        "device": "cpu", "use_gpu": False, "gpu_id": "", "worker": 0})
    init_seed(config["seed"], config["reproducibility"])
    logging.getLogger().setLevel(logging.ERROR)
    dataset = create_dataset(config)
    train_data, valid_data, test_data = data_preparation(config, dataset)
    init_seed(config["seed"], config["reproducibility"])
    model = BPR(config, train_data.dataset).to(config["device"])
    trainer = Trainer(config, model)
    epoch_times: list[float] = []
    epoch_cpu: list[float] = []
    inner = trainer._train_epoch

    def timed(*args: Any, **kwargs: Any) -> Any:
        start, cpu = time.perf_counter(), time.process_time()
        out = inner(*args, **kwargs)
        epoch_times.append(time.perf_counter() - start)
        epoch_cpu.append(time.process_time() - cpu)
        return out

    trainer._train_epoch = timed
    trainer.fit(train_data, valid_data, saved=True, show_progress=False)
    result = trainer.evaluate(test_data, load_best_model=True, show_progress=False)
    eval_times, eval_cpu = [], []
    for _ in range(repeats):
        start, cpu = time.perf_counter(), time.process_time()
        trainer.evaluate(test_data, load_best_model=False, show_progress=False)
        eval_times.append(time.perf_counter() - start)
        eval_cpu.append(time.process_time() - cpu)
    split = {}
    uid, iid = dataset.uid_field, dataset.iid_field
    for name, loader in (("train", train_data), ("val", valid_data), ("test", test_data)):
        inter = loader.dataset.inter_feat
        split[name] = (dataset.id2token(uid, inter[uid].numpy()), dataset.id2token(iid, inter[iid].numpy()))
    return {"metrics": {k: float(result[k]) for k in METRICS}, "epochs": len(epoch_times),
            "epoch_s": statistics.median(epoch_times), "eval_s": statistics.median(eval_times),
            "epoch_cpu_s": statistics.median(epoch_cpu), "eval_cpu_s": statistics.median(eval_cpu), "split": split}


def split_csv(split: dict[str, Any], path: Path) -> Path:
    import pandas as pd

    frames = [pd.DataFrame({"user_id": u, "item_id": i, "split": name}) for name, (u, i) in split.items()]
    pd.concat(frames).to_csv(path, index=False)
    return path


class EpochTimer:
    """Training-epoch and test-loop wall times (a Lightning callback, built lazily to keep imports local)."""

    def __new__(cls) -> Any:
        import lightning.pytorch as pl

        class _Timer(pl.Callback):
            def __init__(self) -> None:
                self.epochs: list[float] = []
                self.epochs_cpu: list[float] = []
                self.tests: list[float] = []
                self.tests_cpu: list[float] = []
                self._t: float | None = None

            def on_train_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self._t, self._c = time.perf_counter(), time.process_time()

            def on_train_batch_end(self, *args: Any) -> None:
                self._end, self._end_cpu = time.perf_counter(), time.process_time()

            def _close(self) -> None:
                # the epoch ends with its last optimizer step, as RecBole's _train_epoch does: Lightning runs
                # validation (and its set-up) before on_train_epoch_end, and that is evaluation, not training
                if self._t is not None:
                    self.epochs.append(self._end - self._t)
                    self.epochs_cpu.append(self._end_cpu - self._c)
                    self._t = None

            def on_validation_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self._close()

            def on_train_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                self._close()

            def on_test_epoch_start(self, trainer: Any, pl_module: Any) -> None:
                self._e, self._ec = time.perf_counter(), time.process_time()

            def on_test_epoch_end(self, trainer: Any, pl_module: Any) -> None:
                self.tests.append(time.perf_counter() - self._e)
                self.tests_cpu.append(time.process_time() - self._ec)

        return _Timer()


def run_zoo(model: Any, data: Any, workdir: Path, epochs: int, repeats: int, patience: int = 10,
            monitor: str = "val/mrr@10") -> dict[str, Any]:
    import lightning.pytorch as pl
    from lightning.pytorch.callbacks import EarlyStopping, ModelCheckpoint

    timer = EpochTimer()
    ckpt = ModelCheckpoint(dirpath=str(workdir), monitor=monitor, mode="max", save_top_k=1,
                           filename=type(model).__name__.lower())
    common = dict(accelerator="cpu", logger=False, enable_progress_bar=False, enable_model_summary=False)
    trainer = pl.Trainer(max_epochs=epochs,
                         callbacks=[timer, ckpt, EarlyStopping(monitor, mode="max", patience=patience)],
                         num_sanity_val_steps=0, log_every_n_steps=50, **common)
    trainer.fit(model, data)
    best = type(model).load_from_checkpoint(ckpt.best_model_path)
    tester = pl.Trainer(callbacks=[timer], **common)
    result = tester.test(best, data, verbose=False)[0]
    calls = []
    for _ in range(repeats):
        start = time.perf_counter()
        tester.test(best, data, verbose=False)
        calls.append(time.perf_counter() - start)
    report = best._last_test
    return {"metrics": {k: float(result[f"test/{k}"]) for k in METRICS}, "epochs": len(timer.epochs),
            "epoch_s": statistics.median(timer.epochs), "eval_s": statistics.median(timer.tests[1:] or timer.tests),
            "epoch_cpu_s": statistics.median(timer.epochs_cpu),
            "eval_cpu_s": statistics.median(timer.tests_cpu[1:] or timer.tests_cpu),
            "eval_call_s": statistics.median(calls),
            "cold": {k: report.get(f"cold_{k}") for k in METRICS},
            "cold_among_cold": {k: report.get(f"coldonly_{k}") for k in METRICS},
            "cold_users": report.get("cold_users")}


def table(rows: list[tuple[str, str, str, str]]) -> str:
    widths = [max(len(r[c]) for r in rows) for c in range(4)]
    return "\n".join("  ".join(cell.ljust(w) for cell, w in zip(r, widths)) for r in rows)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--epochs", type=int, default=300)
    parser.add_argument("--repeats", type=int, default=20)
    parser.add_argument("--seed", type=int, default=2020)
    parser.add_argument("--threads", type=int, default=1,
                        help="torch threads; 1 avoids oversubscription on a shared machine (tiny ops)")
    parser.add_argument("--skip-extras", action="store_true")
    args = parser.parse_args(argv)
    import torch

    torch.set_num_threads(args.threads)
    from zoo.data.recsys import InteractionDataModule
    from zoo.tasks.recsys import BPR, LightGCN, TextAwareRecommender

    out: dict[str, Any] = {"dataset": "ml-100k", "split": "RecBole default: random 8:1:1 per user",
                           "protocol": "full ranking, train (and valid at test) items masked"}
    with tempfile.TemporaryDirectory() as tmp:
        work = Path(tmp)
        with recbole_environment(work):
            rb = run_recbole(work, args.epochs, args.repeats, args.seed)
        csv = split_csv(rb.pop("split"), work / "split.csv")
        items = str(Path(__import__("zoo.data.recsys", fromlist=["x"]).recbole_dataset_dir("ml-100k")) / "ml-100k.item")

        def data() -> Any:
            return InteractionDataModule(path=str(csv), items_path=items, split="column", batch_size=2048,
                                         eval_batch_size=4096, seed=args.seed)

        torch.manual_seed(args.seed)
        zb = run_zoo(BPR(embedding_dim=64, lr=1e-3, ks=(10,)), data(), work, args.epochs, args.repeats)
        out["recbole_bpr"], out["zoo_bpr"] = rb, zb
        rows = [("", "RecBole BPR", "zoo BPR", "zoo / RecBole")]
        rows.append(("s / train epoch", f"{rb['epoch_s']:.4f}", f"{zb['epoch_s']:.4f}",
                     f"{zb['epoch_s'] / rb['epoch_s']:.2f}x"))
        rows.append(("s / test eval", f"{rb['eval_s']:.4f}", f"{zb['eval_s']:.4f}",
                     f"{zb['eval_s'] / rb['eval_s']:.2f}x"))
        rows.append(("CPU s / train epoch", f"{rb['epoch_cpu_s']:.4f}", f"{zb['epoch_cpu_s']:.4f}",
                     f"{zb['epoch_cpu_s'] / rb['epoch_cpu_s']:.2f}x"))
        rows.append(("CPU s / test eval", f"{rb['eval_cpu_s']:.4f}", f"{zb['eval_cpu_s']:.4f}",
                     f"{zb['eval_cpu_s'] / rb['eval_cpu_s']:.2f}x"))
        rows.append(("  (whole trainer.test call)", "", f"{zb['eval_call_s']:.4f}", ""))
        rows.append(("epochs run", str(rb["epochs"]), str(zb["epochs"]), ""))
        for k in METRICS:
            rows.append((k, f"{rb['metrics'][k]:.4f}", f"{zb['metrics'][k]:.4f}",
                         f"{zb['metrics'][k] / rb['metrics'][k]:.3f}"))
        print(table(rows), flush=True)
        out["ratios"] = {"epoch_speedup": rb["epoch_s"] / zb["epoch_s"], "eval_speedup": rb["eval_s"] / zb["eval_s"],
                         "epoch_cpu_speedup": rb["epoch_cpu_s"] / zb["epoch_cpu_s"],
                         "eval_cpu_speedup": rb["eval_cpu_s"] / zb["eval_cpu_s"],
                         **{f"{k}_ratio": zb["metrics"][k] / rb["metrics"][k] for k in METRICS}}
        if not args.skip_extras:
            torch.manual_seed(args.seed)
            lg = run_zoo(LightGCN(embedding_dim=64, num_layers=2, lr=1e-3, ks=(10,)), data(), work, args.epochs, 2)
            torch.manual_seed(args.seed)
            ta = run_zoo(TextAwareRecommender(embedding_dim=64, text_encoder="minilm", lr=1e-3, ks=(10,)), data(), work,
                         args.epochs, 2)
            out["zoo_lightgcn"], out["zoo_text_aware"] = lg, ta
            rows = [("", "zoo BPR", "zoo LightGCN", "zoo text-aware")]
            for k in METRICS:
                rows.append((k, f"{zb['metrics'][k]:.4f}", f"{lg['metrics'][k]:.4f}", f"{ta['metrics'][k]:.4f}"))
            for k in METRICS:
                f = lambda v: "n/a" if v is None else f"{v:.4f}"  # noqa: E731
                rows.append((f"cold<=5 {k}", f(zb["cold"][k]), f(lg["cold"][k]), f(ta["cold"][k])))
            for k in METRICS:
                rows.append((f"cold<=5 among cold {k}", f(zb["cold_among_cold"][k]), f(lg["cold_among_cold"][k]),
                             f(ta["cold_among_cold"][k])))
            rows.append(("cold<=5 users", str(zb["cold_users"]), str(lg["cold_users"]), str(ta["cold_users"])))
            rows.append(("s / train epoch", f"{zb['epoch_s']:.4f}", f"{lg['epoch_s']:.4f}", f"{ta['epoch_s']:.4f}"))
            print(table(rows), flush=True)
    return out


if __name__ == "__main__":
    import json

    print(json.dumps(main(), indent=2, default=str))
