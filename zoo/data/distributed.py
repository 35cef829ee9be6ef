"""Samplers that keep evaluation exact under DDP.

Lightning gives validation / test dataloaders a ``DistributedSampler``, which pads the last shard with repeated
samples so every rank gets the same count: synced metrics then count those samples twice. A DataModule that
passes :func:`eval_sampler` to its evaluation ``DataLoader`` gets an unpadded shard per rank instead (Lightning
keeps a sampler that already is a ``DistributedSampler``), so torchmetrics' cross-rank sync sees every sample
exactly once and DDP test metrics equal single-process ones.
"""

from __future__ import annotations

from typing import Any

from torch.utils.data import Dataset, Sampler

from zoo.distributed import distributed_world


def eval_sampler(dataset: Dataset) -> Sampler[Any] | None:
    """An unpadded, unshuffled shard of ``dataset`` for this rank under DDP; ``None`` (the default sequential
    sampler) in a single process."""
    world, rank = distributed_world()
    if world == 1:
        return None
    from lightning.pytorch.overrides.distributed import UnrepeatedDistributedSampler

    return UnrepeatedDistributedSampler(dataset, num_replicas=world, rank=rank, shuffle=False)
