"""Near-duplicates across splits without comparing every pair.

Texts: MinHash signatures of the normalised text's shingles in datasketch's LSH index of the earlier split; each
candidate it returns is confirmed with the exact Jaccard similarity of the two shingle sets. Images: 64-bit
perceptual hashes cut into bands; two hashes within Hamming distance d share at least one of d + 1 bands exactly
(pigeonhole), so the band buckets give every candidate pair.
"""

from __future__ import annotations

import re
import unicodedata
import zlib
from collections.abc import Sequence

import numpy as np

#: Jaccard similarity of shingle sets at or above which two texts count as near-duplicates
TEXT_THRESHOLD = 0.8
#: the LSH index is built for TEXT_THRESHOLD times this, for recall at the threshold itself
LSH_SLACK = 0.7
#: MinHash permutations (LSH recall at the threshold is about 0.99 with datasketch's band choice)
NUM_PERM = 64
#: characters of a text that are shingled: a near-copy shows in its first few thousand characters already
SHINGLE_CHARS = 3000
#: perceptual hashes within this Hamming distance (of 64 bits) count as near-duplicate images
IMAGE_DISTANCE = 4
#: a band bucket holding more earlier-split images than this is an uninformative hash (blank images); skipped
MAX_BUCKET = 2000

_PUNCT = re.compile(r"[^\w\s]+")
_SPACE = re.compile(r"\s+")


def normalise(text: str) -> str:
    """NFKC, case-folded, punctuation dropped, white space collapsed: what two copies of a text still share after
    re-encoding, re-casing or re-punctuation."""
    text = unicodedata.normalize("NFKC", text).casefold()
    return _SPACE.sub(" ", _PUNCT.sub(" ", text)).strip()


def shingles(text: str) -> set[bytes]:
    """Word 3-grams of the normalised text; character 4-grams when it has under 6 words (short texts, scripts
    written without spaces)."""
    norm = normalise(text)[:SHINGLE_CHARS]
    words = norm.split()
    if len(words) >= 6:
        return {" ".join(words[i:i + 3]).encode() for i in range(len(words) - 2)}
    compact = norm.replace(" ", "")
    if len(compact) <= 4:
        return {compact.encode()} if compact else set()
    return {compact[i:i + 4].encode() for i in range(len(compact) - 3)}


def _crc(b: bytes) -> int:
    # zlib's CRC-32 instead of datasketch's default SHA-1: the same 32-bit spread for this use, several times faster
    return zlib.crc32(b)


class TextIndex:
    """The shingle sets and MinHash signatures of one split's texts, computed once and compared with others."""

    def __init__(self, texts: Sequence[str]) -> None:
        from datasketch import MinHash

        self.sets = [shingles(t) for t in texts]
        self.signatures = MinHash.bulk([list(s) for s in self.sets], num_perm=NUM_PERM, hashfunc=_crc)
        self._lsh: dict[float, object] = {}

    def lsh(self, threshold: float) -> object:
        from datasketch import MinHashLSH

        if threshold not in self._lsh:
            lsh = MinHashLSH(threshold=threshold, num_perm=NUM_PERM)
            with lsh.insertion_session() as session:
                for i, (s, sig) in enumerate(zip(self.sets, self.signatures)):
                    if s:
                        session.insert(i, sig, check_duplication=False)
            self._lsh[threshold] = lsh
        return self._lsh[threshold]


def text_near_pairs(earlier: TextIndex | Sequence[str], later: TextIndex | Sequence[str],
                    threshold: float = TEXT_THRESHOLD) -> list[tuple[int, int, float]]:
    """(index in later, index in earlier, Jaccard) of each later text's most similar earlier text at or above
    ``threshold``."""
    a = earlier if isinstance(earlier, TextIndex) else TextIndex(earlier)
    b = later if isinstance(later, TextIndex) else TextIndex(later)
    # the index's own threshold is an S-curve: a pair just above 0.8 is found about half the time, so candidates
    # come from a lower one and the exact Jaccard decides
    lsh = a.lsh(round(threshold * LSH_SLACK, 3))
    pairs = []
    for j, (s, sig) in enumerate(zip(b.sets, b.signatures)):
        if not s:
            continue
        best, where = 0.0, -1
        for i in lsh.query(sig):  # type: ignore[attr-defined]
            other = a.sets[i]
            sim = len(s & other) / len(s | other)
            if sim > best:
                best, where = sim, i
        if best >= threshold:
            pairs.append((j, where, round(best, 3)))
    return pairs


def hash_near_pairs(earlier: np.ndarray, later: np.ndarray, distance: int = IMAGE_DISTANCE
                    ) -> list[tuple[int, int, int]]:
    """(index in later, index in earlier, Hamming distance) of each later 64-bit hash's nearest earlier hash
    within ``distance``: per band, the earlier hashes sorted by the band's bits give each later hash its bucket
    (``searchsorted``), and the candidates of all buckets are compared in one vectorised step."""
    bands = distance + 1
    width = 64 // bands
    mask = np.uint64((1 << width) - 1)
    earlier = np.asarray(earlier, dtype=np.uint64)
    later = np.asarray(later, dtype=np.uint64)
    best_i = np.full(len(later), -1, dtype=np.int64)
    best_d = np.full(len(later), 65, dtype=np.int64)
    for b in range(bands):
        shift = np.uint64(b * width)
        key_a = (earlier >> shift) & mask
        order = np.argsort(key_a, kind="stable")
        sorted_a = key_a[order]
        key_b = (later >> shift) & mask
        lo = np.searchsorted(sorted_a, key_b, side="left")
        hi = np.searchsorted(sorted_a, key_b, side="right")
        sizes = np.where(hi - lo > MAX_BUCKET, 0, hi - lo)
        if not sizes.any():
            continue
        j = np.repeat(np.arange(len(later)), sizes)
        starts = np.repeat(lo - np.cumsum(sizes) + sizes, sizes)
        i = order[starts + np.arange(len(j))]
        d = np.bitwise_count(earlier[i] ^ later[j]).astype(np.int64)
        keep = d <= distance
        j, i, d = j[keep], i[keep], d[keep]
        if not len(j):
            continue
        first = np.lexsort((i, d, j))  # per later hash: smallest distance, then lowest earlier index
        j, i, d = j[first], i[first], d[first]
        head = np.r_[True, j[1:] != j[:-1]]
        j, i, d = j[head], i[head], d[head]
        better = d < best_d[j]
        best_i[j[better]], best_d[j[better]] = i[better], d[better]
    hit = np.flatnonzero(best_i >= 0)
    return [(int(k), int(best_i[k]), int(best_d[k])) for k in hit]


__all__ = ["IMAGE_DISTANCE", "TEXT_THRESHOLD", "TextIndex", "hash_near_pairs", "normalise", "shingles",
           "text_near_pairs"]
