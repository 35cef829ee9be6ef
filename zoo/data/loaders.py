"""The loaders every datamodule builds the same way: the train / val / test trio (:class:`SplitLoaders`) and a
training loader that resumes where a checkpoint left it (:func:`train_loader`).

A resumed run must see the same batches in the same order as the run it continues, from the middle of an epoch.
Lightning saves and restores a training loader that has ``state_dict`` / ``load_state_dict`` (its ``_Stateful``
protocol, see ``lightning.pytorch.loops.fit_loop``); :class:`ResumableLoader` is such a loader. Its shuffle comes
from a generator of its own (seeded from ``torch.initial_seed()``, so ``seed_everything`` fixes it), never from the
global RNG, and its state is the generator's and the dataset's / batch sampler's state at the start of the pass plus
the number of batches already served: a resumed pass replays the same order and skips the served batches at the
index level, without loading them (an iterable dataset's batches are drawn and dropped).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import Any

import torch
from torch.utils.data import (
    BatchSampler,
    DataLoader,
    IterableDataset,
    RandomSampler,
    Sampler,
    SequentialSampler,
)

from zoo.distributed import will_be_distributed


class SplitLoaders:
    """Lightning's ``train_dataloader`` / ``val_dataloader`` / ``test_dataloader`` from one method,
    ``split_loader(split, train)``: training shuffles, evaluation keeps order (an unpadded shard under DDP)."""

    def split_loader(self, split: str, train: bool) -> DataLoader:
        raise NotImplementedError

    def train_dataloader(self) -> DataLoader:
        return self.split_loader("train", train=True)

    def val_dataloader(self) -> DataLoader:
        return self.split_loader("val", train=False)

    def test_dataloader(self) -> DataLoader:
        return self.split_loader("test", train=False)


def _state_of(obj: Any) -> Any:
    return obj.state_dict() if callable(getattr(obj, "state_dict", None)) else None


def _load_state(obj: Any, state: Any) -> None:
    if state is not None and callable(getattr(obj, "load_state_dict", None)):
        obj.load_state_dict(state)


class _SkippingBatches(Sampler[list[int]]):
    """The batches of ``inner``, less the first ``skip`` of the next pass (index lists only: nothing is loaded)."""

    def __init__(self, inner: Any) -> None:
        self.inner = inner
        self.skip = 0

    def __len__(self) -> int:
        return len(self.inner)

    def set_epoch(self, epoch: int) -> None:
        if callable(getattr(self.inner, "set_epoch", None)):
            self.inner.set_epoch(epoch)

    def __iter__(self) -> Iterator[list[int]]:
        skip, self.skip = self.skip, 0
        it = iter(self.inner)
        for _ in range(skip):
            next(it, None)
        yield from it


class ResumableLoader(DataLoader):
    """A training ``DataLoader`` whose position Lightning saves in each checkpoint and restores on resume.

    Build it with :func:`train_loader`. ``batch_limit`` is the number of batches a pass really serves (Lightning's
    ``limit_train_batches``; :class:`zoo.callbacks.checkpointing.RunState` sets it): a state saved after that many
    batches resumes at the next pass."""

    def __init__(self, dataset: Any, generator: torch.Generator, **kwargs: Any) -> None:
        super().__init__(dataset, generator=generator, **kwargs)
        self.batch_limit: int | None = None
        self._served = 0
        self._start: dict[str, Any] = self._snapshot()
        self._pending: dict[str, Any] | None = None

    def _parts(self) -> dict[str, Any]:
        inner = self.batch_sampler.inner if isinstance(self.batch_sampler, _SkippingBatches) else None
        return {"dataset": self.dataset, "batch_sampler": inner}

    def _snapshot(self) -> dict[str, Any]:
        state = {name: _state_of(part) for name, part in self._parts().items()}
        state["generator"] = self.generator.get_state()
        return state

    def _restore(self, state: dict[str, Any]) -> None:
        self.generator.set_state(state["generator"])
        for name, part in self._parts().items():
            _load_state(part, state.get(name))

    def __iter__(self) -> Iterator[Any]:
        # a generator: the state is read at the first batch, so a state loaded after iter() (Lightning creates the
        # iterator while estimating the schedule's length, before it restores a checkpoint) still applies
        pending, self._pending = self._pending, None
        skip = 0
        if pending is not None:
            limit = min(len(self), pending["limit"] or len(self))
            if pending["served"] < limit:  # saved mid-pass: replay that pass from its start, skip what was served
                self._restore(pending["start"])
                skip = pending["served"]
            else:  # saved after its last batch: the next pass starts from the state at saving time
                self._restore(pending["now"])
        self._start = self._snapshot()
        self._served = skip
        drop = skip
        if isinstance(self.batch_sampler, _SkippingBatches):
            self.batch_sampler.skip, drop = skip, 0
        it = super().__iter__()
        for _ in range(drop):  # an iterable dataset cannot skip by index: draw its batches and drop them
            next(it, None)
        for batch in it:
            self._served += 1
            yield batch

    def state_dict(self) -> dict[str, Any]:
        return {"served": self._served, "limit": self.batch_limit, "start": self._start, "now": self._snapshot()}

    def load_state_dict(self, state_dict: dict[str, Any]) -> None:
        self._pending = dict(state_dict)


def train_loader(dataset: Any, *, batch_size: int | None = 1, shuffle: bool = False, drop_last: bool = False,
                 batch_sampler: Any = None, seed: int | None = None, **kwargs: Any) -> DataLoader:
    """The training loader of a datamodule: a :class:`ResumableLoader` in one process; under DDP a plain
    ``DataLoader`` (Lightning swaps in its ``DistributedSampler``, so exact mid-epoch continuation is not kept
    there, see docs/reliability.md), except for an iterable dataset: Lightning gives it no sampler (it shards
    itself, as the recommenders' batches do), so it stays resumable. ``batch_size=None`` with an iterable dataset
    that yields whole batches."""
    if will_be_distributed() and not isinstance(dataset, IterableDataset):
        if batch_sampler is not None:
            return DataLoader(dataset, batch_sampler=batch_sampler, **kwargs)
        return DataLoader(dataset, batch_size=batch_size, shuffle=shuffle, drop_last=drop_last, **kwargs)
    generator = torch.Generator().manual_seed(torch.initial_seed() if seed is None else seed)
    if isinstance(dataset, IterableDataset):
        return ResumableLoader(dataset, generator, batch_size=batch_size, drop_last=drop_last, **kwargs)
    if batch_sampler is None:
        sampler = RandomSampler(dataset, generator=generator) if shuffle else SequentialSampler(dataset)
        batch_sampler = BatchSampler(sampler, batch_size or 1, drop_last)
    return ResumableLoader(dataset, generator, batch_sampler=_SkippingBatches(batch_sampler), **kwargs)


__all__ = ["ResumableLoader", "SplitLoaders", "train_loader"]
