"""One BPR training step on ID tables alone (lookups, loss, backward, table update), per backend and table
optimizer, at the table sizes of ``bench_recsys_scale`` (users = n / 50, items = n / 100, dim 64, batch 4096, one
negative): no data loading and no Lightning, so it isolates what ``embedding_backend`` changes. CPU seconds of
this process (``time.process_time``), one torch thread, so that other jobs on the machine inflate it less than
wall time; not a pass/fail test.

    python -m benchmarks.bench_recsys_backends [--sizes 0.25 1 4 16] [--steps 40]

Paths: fbgemm's fused row-wise Adagrad and SGD (``zoo.tasks.recsys.fused``) against the torch backend's row-wise
optimizer doing the same arithmetic (``RowWiseOptimizer``), and the torch paths recipes use with Adam: row-wise
lazy Adam and dense fused Adam (``index_select`` lookups). Each size prints one JSON line of ms per step.
"""

from __future__ import annotations

import argparse
import json
import os
import time
from typing import Any


def run(millions: float, steps: int) -> dict[str, Any]:
    import torch
    from torch import nn

    from zoo.tasks.recsys.fused import FusedTables
    from zoo.tasks.recsys.optim import RowWiseOptimizer

    torch.set_num_threads(1)
    n = millions * 1e6
    users, items, dim, batch = int(n / 50), int(n / 100), 64, 4096
    g = torch.Generator().manual_seed(0)
    batches = [(torch.randint(0, users, (batch,), generator=g), torch.randint(1, items, (batch,), generator=g),
                torch.randint(1, items, (batch,), generator=g)) for _ in range(steps + 3)]

    def loss_of(u: Any, p: Any, q: Any) -> Any:
        return -torch.nn.functional.logsigmoid((u * (p - q)).sum(-1)).mean()

    def timed(step: Any) -> float:
        for b in batches[:3]:
            step(*b)
        start = time.process_time()
        for b in batches[3:]:
            step(*b)
        return round(1000 * (time.process_time() - start) / steps, 2)

    out: dict[str, Any] = {"size_m": millions, "users": users, "items": items, "load_before": os.getloadavg()[0]}
    for opt in ("rowwise_adagrad", "sgd"):
        fused = FusedTables([nn.Embedding(users, dim), nn.Embedding(items, dim)], opt, 0.05)

        def fused_step(u: Any, p: Any, q: Any, fused: Any = fused) -> None:
            loss_of(*fused.lookup([(0, u), (1, p), (1, q)])).backward()

        out[f"fbgemm_{opt}_ms"] = timed(fused_step)
        ue, ie = nn.Embedding(users, dim, sparse=True), nn.Embedding(items, dim, sparse=True)
        row = RowWiseOptimizer([ue.weight, ie.weight], lr=0.05, kind=opt, momentum=0.0)

        def torch_step(u: Any, p: Any, q: Any, ue: Any = ue, ie: Any = ie, row: Any = row) -> None:
            row.zero_grad()
            loss_of(ue(u), ie(p), ie(q)).backward()
            row.step()

        out[f"torch_{opt}_ms"] = timed(torch_step)
    ue, ie = nn.Embedding(users, dim, sparse=True), nn.Embedding(items, dim, sparse=True)
    adam = RowWiseOptimizer([ue.weight, ie.weight], lr=1e-3)

    def lazy_adam_step(u: Any, p: Any, q: Any) -> None:
        adam.zero_grad()
        loss_of(ue(u), ie(p), ie(q)).backward()
        adam.step()

    out["torch_rowwise_adam_ms"] = timed(lazy_adam_step)
    uw, iw = nn.Parameter(torch.randn(users, dim)), nn.Parameter(torch.randn(items, dim))
    dense = torch.optim.Adam([uw, iw], lr=1e-3, fused=True)

    def dense_step(u: Any, p: Any, q: Any) -> None:
        dense.zero_grad()
        loss_of(uw.index_select(0, u), iw.index_select(0, p), iw.index_select(0, q)).backward()
        dense.step()

    out["torch_dense_adam_ms"] = timed(dense_step)
    out["load_after"] = os.getloadavg()[0]
    return out


def main(argv: list[str] | None = None) -> list[dict[str, Any]]:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=float, nargs="+", default=[0.25, 1, 4, 16])
    parser.add_argument("--steps", type=int, default=40)
    args = parser.parse_args(argv)
    results = []
    for size in args.sizes:
        results.append(run(size, args.steps))
        print(json.dumps(results[-1]), flush=True)
    return results


if __name__ == "__main__":
    main()
