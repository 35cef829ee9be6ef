"""Where this process stands in a distributed run: the one place zoo asks ``torch.distributed``.

Imports no other zoo module, so data, tasks, callbacks and metrics all use it.
"""

from __future__ import annotations

import torch


def in_process_group() -> bool:
    """Whether a default process group is up (DDP, FSDP, DeepSpeed), of any size."""
    return torch.distributed.is_available() and torch.distributed.is_initialized()


def distributed_world() -> tuple[int, int]:
    """``(world_size, rank)``, ``(1, 0)`` outside a process group."""
    if in_process_group():
        return torch.distributed.get_world_size(), torch.distributed.get_rank()
    return 1, 0


def is_distributed() -> bool:
    """Whether more than one process shares the run."""
    return distributed_world()[0] > 1


def will_be_distributed() -> bool:
    """Whether this process runs under a distributed strategy (a process group of any size: Lightning gives DDP
    with one device a distributed sampler too), or is about to (a launcher such as torchrun sets WORLD_SIZE before
    the group exists)."""
    import os

    return in_process_group() or int(os.environ.get("WORLD_SIZE", "1") or 1) > 1


__all__ = ["distributed_world", "in_process_group", "is_distributed", "will_be_distributed"]
