"""Where a BPR training epoch's time goes, at one size of the synthetic power-law log of ``bench_recsys_scale``
(not a pass/fail test): the same batches through

* ``lightning``: ``Trainer.fit`` for one epoch, validation off (what ``bench_recsys_scale`` times, minus evaluation);
* ``loop``: the model's step (``embed``, ``forward_embedded``, ``task_loss``) and optimizer in a plain loop over
  the datamodule's train loader;
* ``math``: the same loop over batches drawn beforehand (no loader);
* ``recbole_like``: RecBole's BPR step written out (``nn.Embedding`` lookups, two scores, dense ``torch.optim.Adam``)
  on the same batches, the reference the epoch is compared with.

    python -m benchmarks.bench_recsys_step --size 1 [--path default] [--steps 100] [--profile]

Prints wall and CPU milliseconds per step for each (medians of three passes over ``--steps`` batches, after one
warm-up pass; ``lightning`` includes the Trainer's set-up of each fit) and, with ``--profile``, torch.profiler's
table of the ``loop`` pass.
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import tempfile
import time
from pathlib import Path
from typing import Any


def build(size_m: float, path: str, workdir: Path) -> tuple[Any, Any]:
    import pyarrow as pa
    import pyarrow.parquet as pq
    import torch

    from benchmarks.bench_recsys_scale import PATHS, synthetic_power_law
    from zoo.data.recsys import InteractionDataModule
    from zoo.tasks.recsys import BPR

    n = int(size_m * 1_000_000)
    file = workdir / f"log_{n}.parquet"
    if not file.exists():
        pq.write_table(pa.Table.from_pandas(synthetic_power_law(n), preserve_index=False), file,
                       row_group_size=1_000_000)
    data = InteractionDataModule(path=str(file), split="random", seed=0, batch_size=4096, eval_batch_size=4096)
    data.prepare()
    torch.manual_seed(0)
    model = BPR(embedding_dim=64, ks=(10,), **PATHS[path])
    model.bind_data(data)
    return model, data


def timed(fn: Any, batches: list[Any], repeats: int = 3) -> tuple[float, float]:
    """(wall, CPU) milliseconds per batch, medians of ``repeats`` passes. On a shared machine the CPU time of a
    one-thread run is the steadier figure: waiting for a core does not count in it."""
    fn(batches)  # warm-up: first-touch allocation of optimizer state, allocator caches
    runs, cpu = [], []
    for _ in range(repeats):
        start, start_cpu = time.perf_counter(), time.process_time()
        fn(batches)
        runs.append(time.perf_counter() - start)
        cpu.append(time.process_time() - start_cpu)
    return 1000 * statistics.median(runs) / len(batches), 1000 * statistics.median(cpu) / len(batches)


def main(argv: list[str] | None = None) -> dict[str, Any]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--size", type=float, default=1.0, help="millions of interactions")
    parser.add_argument("--path", default="default", help="a path of bench_recsys_scale.PATHS")
    parser.add_argument("--steps", type=int, default=100)
    parser.add_argument("--threads", type=int, default=int(os.environ.get("BENCH_THREADS", "2")))
    parser.add_argument("--profile", action="store_true")
    args = parser.parse_args(argv)

    import lightning.pytorch as pl
    import torch

    torch.set_num_threads(args.threads)
    out: dict[str, Any] = {"size_m": args.size, "path": args.path, "threads": args.threads,
                           "load_before": os.getloadavg()[0]}
    with tempfile.TemporaryDirectory() as tmp:
        model, data = build(args.size, args.path, Path(tmp))
        trainer = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                             enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                             limit_val_batches=0, limit_train_batches=args.steps)
        start = time.perf_counter()
        trainer.fit(model, data)  # also sets the model up (optimizers, hooks) for the loops below
        out["lightning_first_epoch_ms_per_step"] = 1000 * (time.perf_counter() - start) / args.steps
        out["row_wise"] = any(t.sparse for t in model.sparse_tables())
        loader = data.train_dataloader()
        batches = [b for b, _ in zip(loader, range(args.steps), strict=False)]
        opt = trainer.optimizers[0]
        model.train()

        def loop(batches: list[Any] | None) -> None:
            for i, batch in enumerate(batches if batches is not None else loader):
                if i == args.steps:
                    break
                opt.zero_grad()
                # the contract step without its logging (which needs a running Trainer)
                model.task_loss(model.forward_embedded(model.embed(batch), batch), batch).backward()
                opt.step()

        def lightning(_: Any) -> None:
            t = pl.Trainer(max_epochs=1, accelerator="cpu", logger=False, enable_checkpointing=False,
                           enable_progress_bar=False, enable_model_summary=False, num_sanity_val_steps=0,
                           limit_val_batches=0, limit_train_batches=args.steps)
            t.fit(model, data)

        out["lightning_ms"], out["lightning_cpu_ms"] = timed(lightning, batches)
        out["loop_ms"], out["loop_cpu_ms"] = timed(lambda _: loop(None), batches)
        out["math_ms"], out["math_cpu_ms"] = timed(loop, batches)

        users, items = model.num_users, model.num_items + 1
        user_emb, item_emb = torch.nn.Embedding(users, 64), torch.nn.Embedding(items, 64)
        adam = torch.optim.Adam([user_emb.weight, item_emb.weight], lr=1e-3)

        def recbole_like(batches: list[Any]) -> None:
            for batch in batches:
                u = user_emb(batch["user"])
                pos = (u * item_emb(batch["pos"])).sum(-1)
                neg = (u * item_emb(batch["neg"])).sum(-1)
                loss = -torch.log(1e-10 + torch.sigmoid(pos - neg)).mean()  # RecBole's BPRLoss
                adam.zero_grad()
                loss.backward()
                adam.step()

        out["recbole_like_ms"], out["recbole_like_cpu_ms"] = timed(recbole_like, batches)
        if args.profile:
            from torch.profiler import ProfilerActivity, profile

            with profile(activities=[ProfilerActivity.CPU]) as prof:
                loop(None)
            print(prof.key_averages().table(sort_by="self_cpu_time_total", row_limit=25))
    out["load_after"] = os.getloadavg()[0]
    print(json.dumps(out), flush=True)
    return out


if __name__ == "__main__":
    main()
