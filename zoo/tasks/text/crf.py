"""``LinearChainCRF``: the output layer of the taggers (``crf_tagger``, ``token_classifier`` with ``crf: true``).

Learned transition, start and end scores; moves IOB2 forbids (``I-X`` not after ``B-X`` / ``I-X``, nor first) are
fixed at :data:`~zoo.inference.crf.FORBIDDEN` so neither training nor decoding ever takes them. The loss is the
negative log-likelihood of the gold path (forward algorithm, masked); decoding is the constrained Viterbi of
:mod:`zoo.inference.crf`, shared with exported models. Hand-written: PyPI ``pytorch-crf`` is unmaintained since
2019 and has no constrained transitions.
"""

from __future__ import annotations

import torch
from torch import Tensor, nn

from zoo.inference.crf import FORBIDDEN, bio_constraints, viterbi


class LinearChainCRF(nn.Module):
    """A CRF over ``len(tags)`` tags; ``constrained`` applies the IOB2 rules of those tag names."""

    def __init__(self, tags: list[str], constrained: bool = True) -> None:
        super().__init__()
        n = len(tags)
        self.transitions = nn.Parameter(torch.zeros(n, n))
        self.start = nn.Parameter(torch.zeros(n))
        self.end = nn.Parameter(torch.zeros(n))
        allowed, start_ok = bio_constraints(tags) if constrained else (torch.ones(n, n, dtype=torch.bool),
                                                                       torch.ones(n, dtype=torch.bool))
        self.register_buffer("allowed", allowed, persistent=False)
        self.register_buffer("start_allowed", start_ok, persistent=False)

    def scores(self) -> tuple[Tensor, Tensor, Tensor]:
        """``(transitions, start, end)`` with the forbidden moves fixed at :data:`FORBIDDEN`."""
        trans = self.transitions.masked_fill(~self.allowed, FORBIDDEN)
        start = self.start.masked_fill(~self.start_allowed, FORBIDDEN)
        return trans, start, self.end

    def nll(self, emissions: Tensor, tags: Tensor, mask: Tensor) -> Tensor:
        """Mean over sequences of ``-log p(tags | emissions)``; ``mask`` marks each sequence's positions (a
        prefix), ``tags`` may hold anything outside it. Sequences without positions are left out."""
        emissions = emissions.float()
        mask = mask.bool()
        has = mask[:, 0]
        if not bool(has.any()):
            return emissions.sum() * 0.0
        emissions, tags, mask = emissions[has], tags[has].clamp(min=0), mask[has]
        trans, start, end = self.scores()
        return (self._log_partition(emissions, mask, trans, start, end)
                - self._path_score(emissions, tags, mask, trans, start, end)).mean()

    @staticmethod
    def _path_score(emissions: Tensor, tags: Tensor, mask: Tensor, trans: Tensor, start: Tensor,
                    end: Tensor) -> Tensor:
        m = mask.float()
        emit = emissions.gather(-1, tags[..., None]).squeeze(-1)
        score = start[tags[:, 0]] + (emit * m).sum(1)
        score = score + (trans[tags[:, :-1], tags[:, 1:]] * m[:, 1:]).sum(1)
        last = tags.gather(1, (mask.sum(1) - 1)[:, None]).squeeze(1)
        return score + end[last]

    @staticmethod
    def _log_partition(emissions: Tensor, mask: Tensor, trans: Tensor, start: Tensor, end: Tensor) -> Tensor:
        alpha = start[None] + emissions[:, 0]
        for t in range(1, emissions.shape[1]):
            nxt = torch.logsumexp(alpha[:, :, None] + trans[None], dim=1) + emissions[:, t]
            alpha = torch.where(mask[:, t, None], nxt, alpha)
        return torch.logsumexp(alpha + end[None], dim=-1)

    @torch.no_grad()
    def decode(self, emissions: Tensor, mask: Tensor) -> list[list[int]]:
        """The best path of each sequence (its masked positions only), never a forbidden move."""
        trans, start, end = self.scores()
        return viterbi(emissions, mask, trans, start, end)

    def export_scores(self) -> dict[str, list]:
        """The decoding scores for ``zoo_export.json`` (the exported graph returns emissions; its family decodes)."""
        trans, start, end = (t.detach().float().cpu() for t in self.scores())
        return {"transitions": trans.tolist(), "start": start.tolist(), "end": end.tolist()}


def compact(values: Tensor, keep: Tensor) -> tuple[Tensor, Tensor]:
    """The positions ``keep`` marks in each row of ``values`` (``(batch, length, ...)``) moved to the front, in
    order: ``(packed, mask)`` with ``packed`` ``(batch, max kept, ...)`` and ``mask`` true on the kept ones. A
    CRF runs over a token classifier's first sub-tokens this way."""
    keep = keep.bool()
    counts = keep.sum(1)
    width = int(counts.max()) if keep.numel() else 0
    rank = keep.long().cumsum(1) - 1
    rows = torch.arange(values.shape[0], device=values.device)[:, None].expand_as(keep)
    packed = values.new_zeros((values.shape[0], max(width, 1), *values.shape[2:]))
    packed[rows[keep], rank[keep]] = values[keep]
    mask = torch.arange(max(width, 1), device=values.device)[None] < counts[:, None]
    return packed, mask


__all__ = ["LinearChainCRF", "compact"]
