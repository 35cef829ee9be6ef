"""Linear-chain CRF decoding with IOB2 constraints: the transition rules of a tag set and Viterbi, in plain torch.

Here, below the tasks, because an exported tagger decodes in its family (:mod:`zoo.inference.families.token`)
with the transition scores recorded in ``zoo_export.json``, exactly as the eager model decodes at test and predict
(:class:`zoo.tasks.text.crf.LinearChainCRF` adds the training loss on top). Hand-written rather than taken from
PyPI ``pytorch-crf``: that package has been unmaintained since 2019 and has no constrained transitions.
"""

from __future__ import annotations

import torch
from torch import Tensor

#: the score of a forbidden transition: finite, so it survives JSON, and far below any path a model scores
FORBIDDEN = -10000.0


def bio_constraints(tags: list[str]) -> tuple[Tensor, Tensor]:
    """``(allowed, start)``: ``allowed[i, j]`` says tag ``j`` may follow tag ``i`` in IOB2 (``I-X`` only after
    ``B-X`` or ``I-X``), ``start[j]`` that a sentence may open with tag ``j`` (never on ``I-X``)."""
    n = len(tags)
    allowed = torch.ones(n, n, dtype=torch.bool)
    start = torch.ones(n, dtype=torch.bool)
    for j, tag in enumerate(tags):
        if tag.startswith("I-"):
            kind = tag[2:]
            start[j] = False
            for i, prev in enumerate(tags):
                allowed[i, j] = prev in (f"B-{kind}", f"I-{kind}")
    return allowed, start


def is_valid_bio(tags: list[str]) -> bool:
    """Whether an IOB2 tag sequence obeys :func:`bio_constraints` (what the constrained decoder guarantees)."""
    prev = "O"
    for tag in tags:
        if tag.startswith("I-") and prev not in (f"B-{tag[2:]}", tag):
            return False
        prev = tag
    return True


def join_windows(paths: list[list[int]], names: list[str]) -> list[int]:
    """The tag ids of a text read from several windows (each decoded alone, each word from one of them), joined in
    order: where a window's first word continues an entity the previous window ended differently (``I-X`` after
    anything but ``B-X`` / ``I-X``), it opens the entity instead (``B-X``), so the text stays valid IOB2."""
    lookup = {t: k for k, t in enumerate(names)}
    out: list[int] = []
    for path in paths:
        for k in path:
            tag = names[k]
            prev = names[out[-1]] if out else "O"
            if tag.startswith("I-") and prev not in (f"B-{tag[2:]}", tag) and f"B-{tag[2:]}" in lookup:
                k = lookup[f"B-{tag[2:]}"]
            out.append(k)
    return out


def viterbi(emissions: Tensor, mask: Tensor, transitions: Tensor, start: Tensor, end: Tensor) -> list[list[int]]:
    """The best tag path of each sequence: ``emissions`` ``(batch, length, tags)``, ``mask`` ``(batch, length)``
    true on the positions of each sequence (a prefix), ``transitions[i, j]`` the score of tag ``j`` after tag
    ``i``, ``start`` / ``end`` the scores of the first / last tag. Forbidden moves carry :data:`FORBIDDEN`."""
    emissions = emissions.float()
    transitions, start, end = transitions.float(), start.float(), end.float()
    mask = mask.bool()
    batch, length, _ = emissions.shape
    if length == 0:
        return [[] for _ in range(batch)]
    score = start[None] + emissions[:, 0]
    back = []
    for t in range(1, length):
        cand = score[:, :, None] + transitions[None]
        best, arg = cand.max(1)
        nxt = best + emissions[:, t]
        keep = mask[:, t, None]
        score = torch.where(keep, nxt, score)
        back.append(arg)
    score = score + end[None]
    lengths = mask.sum(1).tolist()
    last = score.argmax(-1).tolist()
    paths = []
    for b in range(batch):
        n = int(lengths[b])
        if n == 0:
            paths.append([])
            continue
        tag = last[b]
        path = [tag]
        for t in range(n - 1, 0, -1):
            tag = int(back[t - 1][b, tag])
            path.append(tag)
        paths.append(path[::-1])
    return paths


__all__ = ["FORBIDDEN", "bio_constraints", "is_valid_bio", "join_windows", "viterbi"]
