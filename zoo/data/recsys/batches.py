"""What the loaders of :class:`~zoo.data.recsys.InteractionDataModule` yield.

Training: whole batches at a time, no per-sample Python (:class:`PairBatches`, :class:`SequenceBatches`), in the
form a :class:`BatchSpec` asks for. Evaluation and prediction (as RecBole's full-sort loader): each batch carries
everything a model needs to rank all items for its users, so a model never reads the datamodule to score:

* ``user``: [B] user indices (-1 for an unknown user in predict, with ``unknown_users: popular``);
* ``exclude``: [B, num_items + 1] bool, True for padding (column 0) and every item the user has seen before the
  stage (training items at val; training + validation at test; everything known at predict);
* ``targets``: [B, num_items + 1] bool, the user's held-out items (val / test only);
* ``history``: [B, max_len] long, the last ``max_len`` known items, left-padded with 0 (sequence models only);
* ``user_id``: the users' original ids (predict only).
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import torch
from torch.utils.data import Dataset, IterableDataset

from zoo.data.recsys.csr import CSR
from zoo.distributed import distributed_world

#: dense evaluation batches are kept while all of them together stay under this many bytes
EVAL_CACHE_BYTES = 512 * 2 ** 20
#: users x items cells of one evaluation batch: its two bool masks and float scores stay near 200 MB
EVAL_BLOCK_CELLS = 2 ** 25


@dataclass(frozen=True)
class BatchSpec:
    """What a model trains on, stated by the model when it is bound to the data
    (:meth:`InteractionDataModule.use_batch_spec`).

    ``pairs``: ``{user, pos, neg}`` with ``num_negatives`` sampled negatives per positive. ``sequence``:
    ``{user, seq, target}`` windows of the last ``max_len + 1`` training items; evaluation batches then also carry
    the ``history`` of the last ``max_len`` known items."""

    kind: Literal["pairs", "sequence"] = "pairs"
    num_negatives: int = 1
    max_len: int = 50

    def __post_init__(self) -> None:
        if self.kind not in ("pairs", "sequence"):
            raise ValueError(f"BatchSpec.kind must be 'pairs' or 'sequence', got {self.kind!r}")
        if self.num_negatives < 1 or self.max_len < 1:
            raise ValueError(f"BatchSpec.num_negatives and max_len must be >= 1, got {self}")

    @property
    def history_len(self) -> int:
        """Length of the ``history`` in evaluation batches (0: none)."""
        return self.max_len if self.kind == "sequence" else 0


def rank_shard(batch: dict[str, torch.Tensor]) -> dict[str, torch.Tensor]:
    """Under DDP every rank builds the same shuffled global batch (same seed and epoch) and keeps its own
    strided share, so the ranks together see each global batch once and DDP's gradient average is the
    full-batch gradient; a single process keeps the whole batch."""
    world, rank = distributed_world()
    if world == 1:
        return batch
    return {k: v[rank::world] for k, v in batch.items()}


class PairBatches(IterableDataset):
    """Each epoch: shuffle the training interactions, draw negatives for all of them at once (vectorised
    rejection sampling against the user's training items), and yield ``{"user", "pos", "neg"}`` batches;
    ``neg`` is [B] for one negative per positive, else [B, n]."""

    #: users x items up to which the membership test is a flat bool array (50 MB), above it sorted keys
    FLAT_MAX_CELLS = 50_000_000

    def __init__(self, users: np.ndarray, items: np.ndarray, num_items: int, batch_size: int,
                 num_negatives: int, seed: int) -> None:
        self.users, self.items = users.astype(np.int64), items.astype(np.int64)
        self.num_items, self.batch_size = num_items, batch_size
        self.num_negatives, self.seed, self.epoch = num_negatives, seed, 0
        # membership test for rejection sampling on the key user * (num_items + 1) + item: a flat bit array when
        # it is small (one gather per round), else sorted keys + searchsorted behind a hashed bitmap that rules
        # out most draws with one gather (a draw hits a training item rarely, and a binary search over millions
        # of keys missed the caches at every level: 1.3 s of a 5.8 s epoch at 3.5 M interactions)
        self.stride = num_items + 1
        keys = self.users * self.stride + self.items
        if (int(self.users.max()) + 1) * self.stride <= self.FLAT_MAX_CELLS:
            self.seen_flat: np.ndarray | None = np.zeros((int(self.users.max()) + 1) * self.stride, dtype=bool)
            self.seen_flat[keys] = True
        else:
            self.seen_flat = None
            self.seen_keys = np.sort(keys)  # a repeated pair (duplicates: keep) does not upset searchsorted
            # 16 bits per key: about 6 % of the draws that are not training items pass the filter
            self.hash_bits = max(16, int(np.ceil(np.log2(16 * len(keys)))))
            self.seen_bitmap = np.zeros(2 ** self.hash_bits // 8, dtype=np.uint8)
            h = self._hash(keys)
            np.bitwise_or.at(self.seen_bitmap, h >> 3, (1 << (h & 7)).astype(np.uint8))

    def _hash(self, keys: np.ndarray) -> np.ndarray:
        """Fibonacci hashing of the keys to ``hash_bits`` bits (the multiplication wraps modulo 2**64)."""
        return ((keys.astype(np.uint64) * np.uint64(0x9E3779B97F4A7C15)) >> np.uint64(64 - self.hash_bits)).astype(
            np.int64)

    def _seen(self, keys: np.ndarray) -> np.ndarray:
        if self.seen_flat is not None:
            return self.seen_flat[keys]
        h = self._hash(keys)
        hit = ((self.seen_bitmap[h >> 3] >> (h & 7).astype(np.uint8)) & 1).astype(bool)
        maybe = np.flatnonzero(hit)
        found = keys[maybe]
        pos = np.searchsorted(self.seen_keys, found).clip(max=len(self.seen_keys) - 1)
        hit[maybe] = self.seen_keys[pos] == found
        return hit

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def state_dict(self) -> dict[str, int]:  # the negatives of a pass are drawn from (seed, epoch)
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])

    def sample_negatives(self, users: np.ndarray, rng: np.random.Generator, num: int) -> np.ndarray:
        neg = rng.integers(1, self.num_items + 1, size=len(users) * num)
        base = np.repeat(users * self.stride, num) if num > 1 else users * self.stride
        todo = np.arange(len(neg))
        for _ in range(100):  # each round redraws only the draws that hit a training item of their user
            todo = todo[self._seen(base[todo] + neg[todo])]
            if not len(todo):
                break
            neg[todo] = rng.integers(1, self.num_items + 1, size=len(todo))
        return neg.reshape(len(users), num)

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        rng = np.random.default_rng([self.seed, self.epoch])
        self.epoch += 1
        perm = rng.permutation(len(self.users))
        users, pos = self.users[perm], self.items[perm]
        neg = self.sample_negatives(users, rng, self.num_negatives)
        if self.num_negatives == 1:
            neg = neg[:, 0]
        users_t, pos_t, neg_t = torch.from_numpy(users), torch.from_numpy(pos), torch.from_numpy(neg)
        for s in range(0, len(users), self.batch_size):
            e = s + self.batch_size
            yield rank_shard({"user": users_t[s:e], "pos": pos_t[s:e], "neg": neg_t[s:e]})


class SequenceBatches(IterableDataset):
    """Next-item training for sequential models: per user, the last ``max_len + 1`` training items give
    ``seq`` (input, left-padded with 0) and ``target`` (the next item at each position, 0 = no loss)."""

    def __init__(self, csr: CSR, batch_size: int, max_len: int, seed: int) -> None:
        users = torch.nonzero(csr.lengths() >= 2).flatten()
        window = csr.last(users, max_len + 1)
        self.users, self.seq, self.target = users, window[:, :-1], window[:, 1:]
        self.batch_size, self.seed, self.epoch = batch_size, seed, 0

    def __len__(self) -> int:
        return (len(self.users) + self.batch_size - 1) // self.batch_size

    def state_dict(self) -> dict[str, int]:  # a pass's order is drawn from (seed, epoch)
        return {"epoch": self.epoch}

    def load_state_dict(self, state: dict[str, int]) -> None:
        self.epoch = int(state["epoch"])

    def __iter__(self) -> Iterator[dict[str, torch.Tensor]]:
        g = torch.Generator().manual_seed(self.seed * 1000 + self.epoch)
        self.epoch += 1
        perm = torch.randperm(len(self.users), generator=g)
        for s in range(0, len(perm), self.batch_size):
            idx = perm[s:s + self.batch_size]
            yield rank_shard({"user": self.users[idx], "seq": self.seq[idx], "target": self.target[idx]})


class UserBatches(Dataset):
    """Evaluation / prediction users, one sample per user (the loader batches them with :class:`EvalBatches`):
    a sampler can then shard users over DDP ranks without padding (:func:`zoo.data.distributed.eval_sampler`),
    and the prediction writer can put each user's rows back in dataset order."""

    def __init__(self, users: torch.Tensor, user_ids: list[str] | None = None) -> None:
        self.users, self.user_ids = users, user_ids

    def __len__(self) -> int:
        return len(self.users)

    def __getitem__(self, i: int) -> dict[str, Any]:
        sample: dict[str, Any] = {"user": self.users[i]}
        if self.user_ids is not None:
            sample["user_id"] = self.user_ids[i]
        return sample


@dataclass
class EvalView:
    """One stage's interactions as evaluation needs them: who is evaluated, what they have seen, what is held out."""

    users: torch.Tensor          # users evaluated (at least one target)
    exclude: CSR                 # items never recommended to the user (seen before this stage)
    targets: CSR | None          # held-out items of this stage (None for predict)
    history: CSR                 # chronological items known before this stage (sequential models)


class BatchCache:
    """Built evaluation batches by key, kept while their tensors together stay within ``max_bytes``: they do not
    change between evaluations, and building dense masks is most of a small model's evaluation time."""

    def __init__(self, max_bytes: int = EVAL_CACHE_BYTES) -> None:
        self.max_bytes, self.used = max_bytes, 0
        self.batches: dict[Any, dict[str, torch.Tensor]] = {}

    def get(self, key: Any) -> dict[str, torch.Tensor] | None:
        return self.batches.get(key)

    def put(self, key: Any, batch: dict[str, torch.Tensor]) -> None:
        size = sum(t.numel() * t.element_size() for t in batch.values())
        if self.used + size <= self.max_bytes:
            self.batches[key] = batch
            self.used += size

    def clear(self) -> None:
        self.batches.clear()
        self.used = 0


class EvalBatches:
    """``collate_fn`` of the evaluation / prediction loaders: the users of a batch plus the dense ``exclude`` /
    ``targets`` masks and (``history_len > 0``) histories that score them (see the module docstring)."""

    def __init__(self, stage: str, view: EvalView, num_items: int, history_len: int, cache: BatchCache) -> None:
        self.stage, self.view, self.num_items = stage, view, num_items
        self.history_len, self.cache = history_len, cache

    def build(self, users: torch.Tensor) -> dict[str, torch.Tensor]:
        unknown = users < 0
        rows = users.clamp(min=0)  # an unknown user (predict) gets an empty row: the model falls back for it
        exclude = self.view.exclude.dense(rows, self.num_items + 1)
        exclude[unknown] = False
        exclude[:, 0] = True
        batch = {"exclude": exclude}
        if self.view.targets is not None:
            batch["targets"] = self.view.targets.dense(rows, self.num_items + 1)
        if self.history_len:
            history = self.view.history.last(rows, self.history_len)
            history[unknown] = 0
            batch["history"] = history
        return batch

    def __call__(self, samples: list[dict[str, Any]]) -> dict[str, Any]:
        users = torch.stack([torch.as_tensor(s["user"]) for s in samples])
        key = (self.stage, self.history_len, users.numpy().tobytes())
        built = self.cache.get(key)
        if built is None:
            built = self.build(users)
            self.cache.put(key, built)
        batch: dict[str, Any] = {"user": users, **built}
        if "user_id" in samples[0]:
            batch["user_id"] = [s["user_id"] for s in samples]
        return batch
