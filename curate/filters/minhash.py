"""MinHash signatures, LSH banding and connected components in numpy — shared by near dedup and its benchmark.

Layout and hashing follow DESIGN §12: for each batch of shingles the signature is computed in a
``(num_perm × shingles)`` layout with multiply-shift hashing, ``h_a(x) = (a·x mod 2**64) >> 32`` for random odd
64-bit ``a`` (a 2-universal family; the high 32 bits are read straight from the product), reduced per
document with ``np.minimum.reduceat``. Batches are bounded by a shingle budget and hashed into one reused,
cache-sized scratch matrix, so memory stays flat and no fresh pages are faulted in per batch.
Everything is seeded with SplitMix64 constants: signatures are identical on every machine and numpy version.
"""

from __future__ import annotations

from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.filters import textnorm

U32 = npt.NDArray[np.uint32]
I64 = npt.NDArray[np.int64]
EMPTY = np.iinfo(np.uint32).max  # signature value of a document without shingles

SHINGLE_BUDGET = 1 << 13  # shingles hashed at once: num_perm × budget × 8 bytes of scratch (8 MiB at 128, cache-sized)
ROW_BATCH = 8_192  # documents tokenized at once (small batches: temporaries reuse freed heap, no page faults)
FP_WEIGHT = 0.3  # weight of false positives when deriving the banding


def _false_positive(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(0.0, threshold, 201)
    return float(np.trapezoid(1 - (1 - xs ** float(r)) ** float(b), xs))


def _false_negative(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(threshold, 1.0, 201)
    return float(np.trapezoid(1 - (1 - (1 - xs ** float(r)) ** float(b)), xs))


def optimal_banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows == num_perm`` minimizing false-positive + false-negative area.

    The weighted-error criterion of datasketch's ``_optimal_param``, restricted to splits that use every
    permutation, with false negatives weighted 0.7 and false positives 0.3: every candidate pair is verified
    by its estimated Jaccard, so a false positive costs one comparison while a false negative loses a
    duplicate. 0.8 with 128 permutations gives 16 × 8 (equal weights would give 8 × 16, whose S-curve sits
    at 0.88 and misses pairs just above 0.8).
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    best: tuple[float, int, int] | None = None
    for b in range(1, num_perm + 1):
        if num_perm % b:
            continue
        r = num_perm // b
        err = FP_WEIGHT * _false_positive(threshold, b, r) + (1 - FP_WEIGHT) * _false_negative(threshold, b, r)
        if best is None or err < best[0] - 1e-12:
            best = (err, b, r)
    assert best is not None
    return best[1], best[2]


@dataclass(frozen=True)
class MinHasher:
    """MinHash over word n-gram shingles of normalized text."""

    num_perm: int = 128
    ngram: int = 5
    seed: int = 1

    @property
    def multipliers(self) -> npt.NDArray[np.uint64]:
        """One odd 64-bit multiplier per permutation."""
        return textnorm.splitmix64(0x4D1A_5EED ^ self.seed, self.num_perm) | np.uint64(1)

    def signatures(self, texts: pl.Series) -> U32:
        """An ``(len(texts), num_perm)`` uint32 matrix; rows without shingles are all ``EMPTY``."""
        out = np.full((len(texts), self.num_perm), EMPTY, dtype=np.uint32)
        mult = self.multipliers[:, None]
        scratch = np.empty((self.num_perm, SHINGLE_BUDGET), dtype=np.uint64)  # reused: no page faults per chunk
        for lo in range(0, len(texts), ROW_BATCH):
            grams = textnorm.ngrams(textnorm.words(texts.slice(lo, ROW_BATCH)), self.ngram, short_docs=True)
            for d0, d1 in _doc_chunks(grams.doc_offsets, SHINGLE_BUDGET):
                s0, s1 = int(grams.doc_offsets[d0]), int(grams.doc_offsets[d1])
                if s1 == s0:
                    continue
                counts = np.diff(grams.doc_offsets[d0 : d1 + 1])
                docs = np.flatnonzero(counts)  # reduceat needs non-empty segments
                if s1 - s0 > scratch.shape[1]:  # one document longer than the budget
                    scratch = np.empty((self.num_perm, s1 - s0), dtype=np.uint64)
                prod = np.multiply(mult, grams.hashes[None, s0:s1], out=scratch[:, : s1 - s0])
                high = prod.view(np.uint32)[:, 1::2]  # little-endian: the odd uint32 is the high half
                mins = np.minimum.reduceat(high, grams.doc_offsets[d0:d1][docs] - s0, axis=1)
                out[lo + d0 + docs] = mins.T
        return out


def _doc_chunks(doc_offsets: I64, budget: int) -> Iterator[tuple[int, int]]:
    """Consecutive document ranges holding about ``budget`` shingles each (one long document may exceed it)."""
    n = len(doc_offsets) - 1
    d0 = 0
    while d0 < n:
        d1 = int(np.searchsorted(doc_offsets, doc_offsets[d0] + budget, side="right")) - 1
        d1 = min(max(d1, d0 + 1), n)
        yield d0, d1
        d0 = d1


def has_shingles(sig: U32) -> npt.NDArray[np.bool_]:
    """Rows that had at least one shingle."""
    out: npt.NDArray[np.bool_] = (sig != EMPTY).any(axis=1)
    return out


def candidate_pairs(sig: U32, bands: int, rows: int, valid: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    """Pairs (i < j) sharing a band bucket: each bucket member is linked to the bucket's first member and to its
    predecessor (enough to connect every bucket; all pairs would be quadratic in exact-duplicate buckets)."""
    if bands * rows != sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} but the signatures have {sig.shape[1]} permutations")
    idx = np.flatnonzero(valid).astype(np.int64)
    keys_per_row = textnorm.splitmix64(0xBA4D, rows) | np.uint64(1)
    left: list[I64] = []
    right: list[I64] = []
    for band in range(bands):
        block = sig[idx, band * rows : (band + 1) * rows].astype(np.uint64)
        key = textnorm.mix64((block * keys_per_row[None, :]).sum(axis=1, dtype=np.uint64) ^ np.uint64(band))
        order = np.argsort(key, kind="stable")
        sk = key[order]
        same = np.flatnonzero(sk[1:] == sk[:-1]) + 1  # positions continuing a bucket
        if not same.size:
            continue
        head_pos = np.maximum.accumulate(np.where(np.r_[True, sk[1:] != sk[:-1]], np.arange(len(sk)), 0))
        members = idx[order[same]]
        left += [idx[order[same - 1]], idx[order[head_pos[same]]]]
        right += [members, members]
    if not left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(left), np.concatenate(right)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    n = np.int64(len(sig))
    code = np.unique(a[keep] * n + b[keep])
    return code // n, code % n


def estimated_jaccard(sig: U32, a: I64, b: I64) -> npt.NDArray[np.float64]:
    """Share of equal signature slots for each pair (batched to bound memory)."""
    out = np.empty(len(a), dtype=np.float64)
    step = max(1, (1 << 22) // sig.shape[1])
    for lo in range(0, len(a), step):
        out[lo : lo + step] = (sig[a[lo : lo + step]] == sig[b[lo : lo + step]]).mean(axis=1)
    return out


def connected_components(n: int, a: I64, b: I64) -> I64:
    """Label of each node = smallest node index in its component (min-label propagation + pointer jumping)."""
    label = np.arange(n, dtype=np.int64)
    if not len(a):
        return label
    while True:
        low = np.minimum(label[a], label[b])
        before = label.copy()
        np.minimum.at(label, a, low)
        np.minimum.at(label, b, low)
        np.minimum.at(label, before[a], low)
        np.minimum.at(label, before[b], low)
        while True:  # pointer jumping: label[i] <- label[label[i]]
            jumped = label[label]
            if np.array_equal(jumped, label):
                break
            label = jumped
        if np.array_equal(label, before):
            return label
