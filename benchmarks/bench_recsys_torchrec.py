"""TorchRec sharding check (not a benchmark of zoo's models): BPR's user and item tables in a TorchRec
EmbeddingCollection, sharded by TorchRec's planner under ``DistributedModelParallel`` on 2 gloo CPU processes,
trained for 200 BPR steps with a fused SGD applied in backward. ``make venv`` installs torchrec 1.9.2 and the CPU
build of fbgemm (``fbgemm-gpu-cpu`` 1.9.0) with ``--no-deps`` (the Makefile says why), so it runs in the project's
environment. zoo's own models train this way under ``recipes/overlays/strategy/torchrec.yaml``
(``zoo.tasks.recsys.sharded``, tested by ``tests/scale/test_torchrec_sharding.py``); this script is the raw TorchRec
loop without zoo or Lightning, to tell an environment problem from a zoo one:

    python -m benchmarks.bench_recsys_torchrec [--port 29611]

Each rank prints ``RANK <r> LOSS <first> <last>``: its mean loss over the first and the last 20 steps.
"""
import argparse
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world, port):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT=str(port))
    dist.init_process_group("gloo", rank=rank, world_size=world)
    import torchrec
    from torchrec.distributed.embedding import EmbeddingCollectionSharder
    from torchrec.distributed.model_parallel import DistributedModelParallel
    from torchrec.distributed.planner import EmbeddingShardingPlanner, Topology
    from torchrec.optim.apply_optimizer_in_backward import apply_optimizer_in_backward
    from torchrec.sparse.jagged_tensor import KeyedJaggedTensor

    users, items, dim = 1000, 500, 16
    ec = torchrec.EmbeddingCollection(device=torch.device("meta"), tables=[
        torchrec.EmbeddingConfig(name="user", embedding_dim=dim, num_embeddings=users, feature_names=["user"],
                                 init_fn=lambda w: torch.nn.init.normal_(w, std=0.1)),
        torchrec.EmbeddingConfig(name="item", embedding_dim=dim, num_embeddings=items, feature_names=["pos", "neg"],
                                 init_fn=lambda w: torch.nn.init.normal_(w, std=0.1)),
    ])
    apply_optimizer_in_backward(torch.optim.SGD, ec.parameters(), {"lr": 1.0})
    topo = Topology(world_size=world, compute_device="cpu")
    sharders = [EmbeddingCollectionSharder()]
    plan = EmbeddingShardingPlanner(topology=topo).collective_plan(ec, sharders, dist.GroupMember.WORLD)
    if rank == 0:
        print(plan, flush=True)
    model = DistributedModelParallel(ec, device=torch.device("cpu"), plan=plan, sharders=sharders)
    g = torch.Generator().manual_seed(rank)
    losses = []
    for _step in range(200):
        b = 256
        u = torch.randint(0, users, (b,), generator=g)
        pos = (u % items)  # a learnable rule: user u likes item u % items
        neg = torch.randint(0, items, (b,), generator=g)
        kjt = KeyedJaggedTensor.from_lengths_sync(keys=["user", "pos", "neg"], values=torch.cat([u, pos, neg]),
                                                  lengths=torch.ones(3 * b, dtype=torch.int64))
        out = model(kjt)
        eu, ep, en = (out[k].values() for k in ("user", "pos", "neg"))
        loss = -torch.nn.functional.logsigmoid((eu * (ep - en)).sum(-1)).mean()
        loss.backward()
        losses.append(float(loss.detach()))
    first, last = sum(losses[:20]) / 20, sum(losses[-20:]) / 20  # one batch's loss is too noisy to compare
    # rank 0 prints for both: two processes writing one pipe can interleave their lines
    gathered = [None] * world
    dist.all_gather_object(gathered, (rank, first, last))
    if rank == 0:
        for r, a, b in gathered:
            print(f"RANK {r} LOSS {a:.4f} {b:.4f}", flush=True)
    dist.barrier()  # neither rank tears gloo down while the other still talks to it (SIGABRT otherwise)
    dist.destroy_process_group()


if __name__ == "__main__":
    parser = argparse.ArgumentParser()
    parser.add_argument("--port", type=int, default=29611)
    mp.spawn(worker, args=(2, parser.parse_args().port), nprocs=2)
