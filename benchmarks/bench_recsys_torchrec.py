"""TorchRec sharding check (not shipped, not a test): BPR's user and item tables in a TorchRec EmbeddingCollection,
sharded by TorchRec's planner under ``DistributedModelParallel`` on 2 gloo CPU processes, trained for 60 BPR steps
with a fused SGD applied in backward. Run it in a scratch environment, never the project's (docs/recsys.md says why):

    python3 -m uv venv /tmp/trvenv --python 3.11
    python3 -m uv pip install --python /tmp/trvenv/bin/python torch==2.14.1 torchrec==1.9.2
    # torchrec requires fbgemm-gpu, the CUDA build: it needs libnvidia-ml.so.1 and fails to load without a GPU
    # driver; the CPU build is another distribution with the same module, swapped in by hand:
    python3 -m uv pip uninstall --python /tmp/trvenv/bin/python fbgemm-gpu
    python3 -m uv pip install --python /tmp/trvenv/bin/python --no-deps fbgemm-gpu-cpu==1.9.0
    /tmp/trvenv/bin/python benchmarks/bench_recsys_torchrec.py
"""
import os

import torch
import torch.distributed as dist
import torch.multiprocessing as mp


def worker(rank, world):
    os.environ.update(MASTER_ADDR="127.0.0.1", MASTER_PORT="29611")
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
    for _step in range(60):
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
    print(rank, "loss first/last", round(losses[0], 4), round(losses[-1], 4), flush=True)
    dist.destroy_process_group()


if __name__ == "__main__":
    mp.spawn(worker, args=(2,), nprocs=2)
