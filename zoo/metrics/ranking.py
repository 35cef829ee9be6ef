"""Top-K ranking metrics for recommendation, computed batched on tensors.

Full ranking (the default protocol): every item is scored for every evaluated user, the user's already-seen
items are excluded, and one ``topk`` per batch (no per-user sort) gives HR, Recall, Precision, NDCG and MRR at
several K in one pass. Definitions follow RecBole's, so figures are comparable:

* ``hit@k``       1 if any relevant item is in the top k
* ``recall@k``    relevant items in the top k / relevant items
* ``precision@k`` relevant items in the top k / k
* ``ndcg@k``      DCG of the top k (binary gains, 1/log2(rank+1)) / ideal DCG with min(#relevant, k) hits
* ``mrr@k``       1 / rank of the first relevant item in the top k (0 when none)

torchmetrics' retrieval metrics take (query, document) pairs and sort per query, which is what we avoid here.

The sampled-negatives protocol (each relevant item ranked against ``n`` random unseen items, as in the NCF
paper) is available through :func:`sampled_ranking_metrics`; its names carry a ``sampled<n>_`` prefix so a
sampled figure can never be mistaken for a full-ranking one.
"""

from __future__ import annotations

from collections.abc import Sequence

import torch
from torch import Tensor

from zoo.distributed import is_distributed

METRICS = ("hit", "recall", "precision", "ndcg", "mrr")


def top_k(scores: Tensor, k: int, exclude: Tensor | None = None) -> tuple[Tensor, Tensor]:
    """``(items [B, k], valid [B, k])``: the k best items per row after masking ``exclude``; ``valid`` is false
    where an excluded item had to fill the list (fewer than k items left)."""
    scores = scores.float()
    if exclude is not None:
        scores = scores.masked_fill(exclude, float("-inf"))
    values, items = scores.topk(min(k, scores.shape[1]), dim=1)
    return items, torch.isfinite(values)


def metrics_from_top(top: Tensor, valid: Tensor, targets: Tensor, ks: Sequence[int] = (10,)) -> dict[str, Tensor]:
    """Per-user metrics from a precomputed top list (so several target sets share one ``topk``)."""
    targets = targets.bool()
    kmax = top.shape[1]
    hits = (targets.gather(1, top) & valid).float()
    n_rel = targets.sum(1).float()
    ranks = torch.arange(1, kmax + 1, device=top.device, dtype=torch.float32)
    discounts = 1.0 / torch.log2(ranks + 1.0)
    cum_hits = hits.cumsum(1)
    dcg = (hits * discounts).cumsum(1)
    idcg = discounts.cumsum(0)
    first_rr = (hits / ranks).cummax(1).values  # reciprocal rank of the first hit within each prefix
    nan = torch.full_like(n_rel, float("nan"))
    has_rel = n_rel > 0
    out: dict[str, Tensor] = {}
    for k in ks:
        c = min(k, kmax) - 1
        n_hit = cum_hits[:, c]
        ideal = idcg[(n_rel.clamp(min=1, max=c + 1) - 1).long()]
        values = {
            "hit": (n_hit > 0).float(),
            "recall": n_hit / n_rel.clamp(min=1),
            "precision": n_hit / k,
            "ndcg": dcg[:, c] / ideal,
            "mrr": first_rr[:, c],
        }
        for name, v in values.items():
            out[f"{name}@{k}"] = torch.where(has_rel, v, nan)
    return out


def full_ranking_metrics(scores: Tensor, targets: Tensor, ks: Sequence[int] = (10,),
                         exclude: Tensor | None = None) -> dict[str, Tensor]:
    """Per-user metrics ``{"ndcg@10": [B], ...}`` for a batch of users.

    Args:
        scores: ``[B, N]`` scores of every item.
        targets: ``[B, N]`` bool, the relevant (held-out) items of each user.
        ks: cut-offs, all computed from one ``topk(max(ks))``.
        exclude: ``[B, N]`` bool, items that may not be recommended (seen in training, padding).

    Users without any relevant item get NaN; the caller drops them (see :class:`RankingAccumulator`).
    """
    if scores.shape != targets.shape:
        raise ValueError(f"scores {tuple(scores.shape)} and targets {tuple(targets.shape)} must have the same shape")
    if not ks or min(ks) < 1:
        raise ValueError(f"ks must be positive cut-offs, got {list(ks)}")
    top, valid = top_k(scores, max(ks), exclude)
    return metrics_from_top(top, valid, targets, ks)


def sample_negatives(exclude: Tensor, num: int, generator: torch.Generator | None = None,
                     max_rounds: int = 50) -> Tensor:
    """``[B, num]`` item indices drawn uniformly among the items that ``exclude`` ([B, N] bool) allows,
    with replacement. Vectorised rejection sampling: each round redraws only the rejected cells."""
    b, n = exclude.shape
    if bool((exclude.sum(1) >= n).any()):
        raise ValueError("a user has no item left to sample as a negative")
    device = exclude.device
    out = torch.randint(0, n, (b, num), generator=generator, device=device)
    for _ in range(max_rounds):
        bad = exclude.gather(1, out)
        if not bool(bad.any()):
            return out
        out[bad] = torch.randint(0, n, (int(bad.sum()),), generator=generator, device=device)
    # leftovers (users who have seen nearly everything): take their first allowed item
    bad = exclude.gather(1, out)
    first_allowed = (~exclude).float().argmax(1, keepdim=True).expand_as(out)
    return torch.where(bad, first_allowed, out)


def sampled_ranking_metrics(scores: Tensor, targets: Tensor, num_negatives: int = 100,
                            ks: Sequence[int] = (10,), exclude: Tensor | None = None,
                            generator: torch.Generator | None = None) -> dict[str, Tensor]:
    """The sampled-negatives protocol: every relevant item is ranked against ``num_negatives`` items drawn
    among those that are neither relevant nor excluded. Returns per-(user, relevant item) values, named
    ``sampled<n>_hit@k``, ``sampled<n>_ndcg@k``, ``sampled<n>_mrr@k``. Optimistic compared with full ranking."""
    targets = targets.bool()
    forbidden = targets if exclude is None else (targets | exclude)
    negs = sample_negatives(forbidden, num_negatives, generator)
    neg_scores = scores.float().gather(1, negs)
    b_idx, i_idx = targets.nonzero(as_tuple=True)
    pos = scores.float()[b_idx, i_idx]
    rank = 1.0 + (neg_scores[b_idx] > pos[:, None]).sum(1).float()
    prefix = f"sampled{num_negatives}_"
    out: dict[str, Tensor] = {}
    for k in ks:
        inside = rank <= k
        out[f"{prefix}hit@{k}"] = inside.float()
        out[f"{prefix}ndcg@{k}"] = torch.where(inside, 1.0 / torch.log2(rank + 1.0), torch.zeros_like(rank))
        out[f"{prefix}mrr@{k}"] = torch.where(inside, 1.0 / rank, torch.zeros_like(rank))
    return out


class RankingAccumulator:
    """Sums per-user metric values over batches, ignoring NaN (users with nothing relevant)."""

    def __init__(self) -> None:
        self.sums: dict[str, Tensor] = {}
        self.counts: dict[str, Tensor] = {}

    def update(self, values: dict[str, Tensor], prefix: str = "") -> None:
        if not values:
            return
        stacked = torch.stack([v.double() for v in values.values()])  # one reduction for all metrics
        ok = ~torch.isnan(stacked)
        sums, counts = torch.where(ok, stacked, 0.0).sum(1), ok.sum(1).double()
        for j, name in enumerate(values):
            key = prefix + name
            if key in self.sums:
                self.sums[key] = self.sums[key] + sums[j]
                self.counts[key] = self.counts[key] + counts[j]
            else:
                self.sums[key], self.counts[key] = sums[j], counts[j]

    def sync(self) -> None:
        """Sum the per-rank sums and counts over the DDP process group (every rank must call it, having seen
        the same metric names); a no-op in a single process."""
        if not self.sums or not is_distributed():
            return
        dist = torch.distributed
        keys = sorted(self.sums)
        both = torch.stack([torch.stack([self.sums[k] for k in keys]), torch.stack([self.counts[k] for k in keys])])
        dist.all_reduce(both)
        for j, k in enumerate(keys):
            self.sums[k], self.counts[k] = both[0, j], both[1, j]

    def compute(self) -> dict[str, float]:
        return {k: float(self.sums[k] / self.counts[k]) if float(self.counts[k]) > 0 else float("nan")
                for k in self.sums}

    def count(self, key: str) -> int:
        return int(self.counts[key]) if key in self.counts else 0

    def reset(self) -> None:
        self.sums.clear()
        self.counts.clear()
