"""MinHash signatures, LSH banding and connected components in numpy — shared by near dedup and its benchmark.

Layout and hashing follow DESIGN §12: for each batch of shingles the signature is computed in a
``(num_perm × shingles)`` layout with multiply-shift hashing, ``h_a(x) = (a·x mod 2**64) >> 32`` for random odd
64-bit ``a`` (a 2-universal family; the high 32 bits are read straight from the product), reduced per
document with ``np.minimum.reduceat``. Batches are bounded by a shingle budget and hashed into one reused,
cache-sized scratch matrix, so memory stays flat and no fresh pages are faulted in per batch.
Everything is seeded with SplitMix64 constants: signatures are identical on every machine and numpy version.
"""

from __future__ import annotations

from collections.abc import Iterator, Sequence
from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.cores import thread_map
from cardtune.curate.filters import textnorm

U32 = npt.NDArray[np.uint32]
U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]
EMPTY = np.iinfo(np.uint32).max  # signature value of a document without shingles

SHINGLE_BUDGET = 1 << 13  # shingles hashed at once: num_perm × budget × 8 bytes of scratch (8 MiB at 128, cache-sized)
ROW_BATCH = 8_192  # documents tokenized at once (small batches: temporaries reuse freed heap, no page faults)
FP_WEIGHT = 0.3  # weight of false positives when deriving the banding
MIN_CANDIDATE_RATE = 0.99  # `recall_banding`: share of pairs at exactly the threshold that LSH must propose
QUERY_BUDGET = 1 << 22  # shingles looked up at once when verifying candidate pairs exactly


def _false_positive(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(0.0, threshold, 201)
    return float(np.trapezoid(1 - (1 - xs ** float(r)) ** float(b), xs))


def _false_negative(threshold: float, b: int, r: int) -> float:
    xs = np.linspace(threshold, 1.0, 201)
    return float(np.trapezoid(1 - (1 - (1 - xs ** float(r)) ** float(b)), xs))


def optimal_banding(threshold: float, num_perm: int) -> tuple[int, int]:
    """(bands, rows) with ``bands * rows == num_perm`` minimizing false-positive + false-negative area.

    The weighted-error criterion of datasketch's ``_optimal_param``, restricted to splits that use every
    permutation, with false negatives weighted 0.7 and false positives 0.3. The banding for ``verify:
    estimate`` (a false positive costs one comparison of signatures while a false negative loses a duplicate)
    and ``none`` (where a false positive is a wrong merge); ``exact`` uses :func:`recall_banding`. 0.8 with 128
    permutations gives 16 × 8 (equal weights would give 8 × 16, whose S-curve sits at 0.88 and misses pairs
    just above 0.8).
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


def candidate_rate(jaccard: float, bands: int, rows: int) -> float:
    """Probability that LSH with ``bands`` × ``rows`` proposes a pair of the given Jaccard: 1 − (1 − J^r)^b."""
    return float(1 - (1 - jaccard ** float(rows)) ** float(bands))


def recall_banding(threshold: float, num_perm: int, min_rate: float = MIN_CANDIDATE_RATE) -> tuple[int, int]:
    """The most selective (bands, rows) with ``bands * rows == num_perm`` that still proposes a pair at exactly
    ``threshold`` with probability ≥ ``min_rate`` (every pair above it more often).

    For verification on the exact Jaccard: a false candidate then costs one set intersection and never a wrong
    merge, so the banding only has to keep LSH from missing pairs near the threshold, with as few rows per
    band as that takes. 0.8 with 128 permutations gives 32 × 4 (a pair at J = 0.8 is proposed with probability
    1 − 5e-8; 16 × 8 proposes only 94.7% of them); 0.9 gives 16 × 8; 0.95 gives 8 × 16.
    """
    if not 0 < threshold <= 1:
        raise ValueError(f"threshold must be in (0, 1], got {threshold}")
    for b in range(1, num_perm + 1):  # fewest bands (most rows per band) first
        if num_perm % b == 0 and candidate_rate(threshold, b, num_perm // b) >= min_rate:
            return b, num_perm // b
    return num_perm, 1


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
        return self.sketch(texts)[0]

    def sketch(self, texts: pl.Series) -> tuple[U32, U64]:
        """The signatures and, per row, a digest of its shingles: the sum of their hashes (mod 2**64; 0 without
        shingles). Two rows with equal digests have the same shingles, so Jaccard 1 (up to a 64-bit collision,
        ~2**-64 per pair); different digests decide nothing (a repeated shingle changes the sum, not the set)."""
        out = np.full((len(texts), self.num_perm), EMPTY, dtype=np.uint32)
        digest = np.zeros(len(texts), dtype=np.uint64)
        mult = self.multipliers[:, None]
        scratch = np.empty((self.num_perm, SHINGLE_BUDGET), dtype=np.uint64)  # reused: no page faults per chunk
        for lo in range(0, len(texts), ROW_BATCH):
            grams = textnorm.ngrams(textnorm.words(texts.slice(lo, ROW_BATCH)), self.ngram, short_docs=True)
            filled = np.flatnonzero(np.diff(grams.doc_offsets))
            if len(filled):
                digest[lo + filled] = np.add.reduceat(grams.hashes, grams.doc_offsets[filled])
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
        return out, digest


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


def band_keys(sig: U32, band: int, rows: int) -> U64:
    """Each row's bucket key in one LSH band: the band's ``rows`` signature slots mixed into 64 bits."""
    keys_per_row = textnorm.splitmix64(0xBA4D, rows) | np.uint64(1)
    c0 = band * rows
    acc = sig[:, c0].astype(np.uint64) * keys_per_row[0]
    for j in range(1, rows):
        acc += sig[:, c0 + j].astype(np.uint64) * keys_per_row[j]
    return textnorm.mix64(acc ^ np.uint64(band))


def band_links(key: U64, idx: I64) -> tuple[I64, I64]:
    """Links within one band's buckets: rows ``idx`` (ascending) with bucket keys ``key``; each bucket member is
    linked to the bucket's first member and to its predecessor (enough to connect every bucket; all pairs would be
    quadratic in exact-duplicate buckets).

    Buckets are grouped by one plain sort of ``key's high bits | row position`` (a stable sort by key, several
    times faster than ``argsort(kind="stable")``); members are then split on the full key, so two keys sharing
    their high bits (~n²/2**(65 - log2 n) per band) never merge two buckets (at worst such a pair interleaves, and
    its buckets get fewer links in that band)."""
    low = np.uint64((1 << max(1, (len(idx) - 1).bit_length())) - 1)
    position = np.arange(len(idx), dtype=np.uint64)
    order = (np.sort((key & ~low) | position) & low).astype(np.int64)  # by key (high bits), then position
    sk = key[order]
    starts = np.r_[True, sk[1:] != sk[:-1]]
    same = np.flatnonzero(~starts)  # positions continuing a bucket
    if not same.size:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    head_pos = np.maximum.accumulate(np.where(starts, np.arange(len(sk)), 0))
    members = idx[order[same]]
    return np.concatenate([idx[order[same - 1]], idx[order[head_pos[same]]]]), np.concatenate([members, members])


def unique_pairs(left: Sequence[I64], right: Sequence[I64], n: int) -> tuple[I64, I64]:
    """The distinct pairs (i < j) among the links, in ascending (i, j) order (``n`` bounds the row indices)."""
    if not left:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    a, b = np.concatenate(left), np.concatenate(right)
    a, b = np.minimum(a, b), np.maximum(a, b)
    keep = a != b
    width = np.int64(n)
    code = np.sort(a[keep] * width + b[keep])
    code = code[np.r_[True, code[1:] != code[:-1]]] if len(code) else code
    return code // width, code % width


def candidate_pairs(sig: U32, bands: int, rows: int, valid: npt.NDArray[np.bool_]) -> tuple[I64, I64]:
    """Pairs (i < j), in ascending (i, j) order, sharing a bucket in some band (see :func:`band_links`)."""
    if bands * rows != sig.shape[1]:
        raise ValueError(f"bands*rows = {bands * rows} but the signatures have {sig.shape[1]} permutations")
    idx = np.flatnonzero(valid).astype(np.int64)
    if len(idx) < 2:
        return np.zeros(0, np.int64), np.zeros(0, np.int64)
    sub = sig if len(idx) == len(sig) else sig[idx]
    left: list[I64] = []
    right: list[I64] = []
    for band in range(bands):
        a, b = band_links(band_keys(sub, band, rows), idx)
        if len(a):
            left.append(a)
            right.append(b)
    return unique_pairs(left, right, len(sig))


def estimated_jaccard(sig: U32, a: I64, b: I64) -> npt.NDArray[np.float64]:
    """Share of equal signature slots for each pair (batched to bound memory)."""
    out = np.empty(len(a), dtype=np.float64)
    step = max(1, (1 << 22) // sig.shape[1])
    for lo in range(0, len(a), step):
        out[lo : lo + step] = (sig[a[lo : lo + step]] == sig[b[lo : lo + step]]).mean(axis=1)
    return out


@dataclass(frozen=True)
class ShingleSets:
    """The distinct shingles of some rows (the hashes MinHash hashes), for the exact Jaccard of pairs of them.

    A shingle is identified by the top ``64 - shift`` bits of its 64-bit hash; the low ``shift`` bits carry a row
    (here) or pair number (in :meth:`jaccard`), so deduplicating and intersecting are plain sorts of uint64 keys.
    ``shift`` is 16 up to 65,536 rows held and grows with them (20 at a million), so two different shingles of a
    pair share an id with probability about ``|A ∪ B|² / 2**(65 - shift)`` (~1e-10 for 100-word texts).
    """

    rows: I64  # sorted global row indices whose sets are held
    ids: U64  # each held row's distinct shingle ids, ascending, row after row
    offsets: I64  # row k's set is ids[offsets[k]:offsets[k + 1]]
    shift: int

    @classmethod
    def of(cls, texts: pl.Series, rows: I64, ngram: int) -> ShingleSets:
        """Shingle sets of ``texts[rows]`` (word ``ngram``-gram hashes, short documents as one shingle)."""
        held = np.flatnonzero(np.bincount(rows)).astype(np.int64) if len(rows) else np.zeros(0, np.int64)
        shift = max(16, (len(held) - 1).bit_length())
        top = np.uint64(64 - shift)

        def batch(lo: int) -> U64:
            grams = textnorm.ngrams(textnorm.words(texts.gather(held[lo : lo + ROW_BATCH])), ngram, short_docs=True)
            owner = np.repeat(
                np.arange(lo, lo + ROW_BATCH, dtype=np.uint64)[: len(grams.doc_offsets) - 1], np.diff(grams.doc_offsets)
            )
            return (owner << top) | (grams.hashes >> np.uint64(shift))

        parts = thread_map(batch, range(0, len(held), ROW_BATCH))  # batches on the driver's threads, in order
        keys = np.sort(np.concatenate(parts)) if parts else np.zeros(0, np.uint64)
        keys = keys[np.r_[True, keys[1:] != keys[:-1]]] if len(keys) else keys  # a row's repeated shingles once
        owner_of = (keys >> top).astype(np.int64)
        offsets = np.searchsorted(owner_of, np.arange(len(held) + 1, dtype=np.int64)).astype(np.int64)
        ids = keys & np.uint64((1 << (64 - shift)) - 1)
        return cls(rows=held, ids=ids, offsets=offsets, shift=shift)

    def jaccard(self, a: I64, b: I64) -> npt.NDArray[np.float64]:
        """Exact Jaccard of the shingle sets of rows ``a[i]`` and ``b[i]`` (global indices held here)."""
        out = np.zeros(len(a), dtype=np.float64)
        if not len(a):
            return out
        ka = np.minimum(np.searchsorted(self.rows, a), max(len(self.rows) - 1, 0))
        kb = np.minimum(np.searchsorted(self.rows, b), max(len(self.rows) - 1, 0))
        if not len(self.rows) or not (np.array_equal(self.rows[ka], a) and np.array_equal(self.rows[kb], b)):
            raise ValueError("a pair names a row whose shingles were not computed")
        size = np.diff(self.offsets)
        cost = np.cumsum(size[ka] + size[kb])
        most = 1 << self.shift  # pair numbers must fit in `shift` bits
        lo = 0
        while lo < len(a):  # pairs in chunks of about QUERY_BUDGET shingles
            base = int(cost[lo - 1]) if lo else 0
            hi = max(lo + 1, int(np.searchsorted(cost, base + QUERY_BUDGET, side="right")))
            hi = min(hi, lo + most)
            out[lo:hi] = self._intersections(ka[lo:hi], kb[lo:hi])
            lo = hi
        union = size[ka] + size[kb] - out
        return np.divide(out, union, out=np.zeros_like(out), where=union > 0)

    def _intersections(self, ka: I64, kb: I64) -> npt.NDArray[np.float64]:
        """|A ∩ B| per pair: both sets of every pair keyed ``pair | id`` and sorted; a shared id meets itself."""
        rows = np.concatenate([ka, kb])
        counts = np.diff(self.offsets)[rows]
        total = int(counts.sum())
        if not total:
            return np.zeros(len(ka), dtype=np.float64)
        starts = np.repeat(self.offsets[rows] - np.r_[0, np.cumsum(counts)[:-1]], counts)
        pair = np.repeat(np.tile(np.arange(len(ka), dtype=np.uint64), 2), counts)
        keys = np.sort((pair << np.uint64(64 - self.shift)) | self.ids[starts + np.arange(total, dtype=np.int64)])
        shared = keys[1:][keys[1:] == keys[:-1]] >> np.uint64(64 - self.shift)
        return np.bincount(shared.astype(np.int64), minlength=len(ka)).astype(np.float64)


def exact_jaccard(texts: pl.Series, a: I64, b: I64, digest: U64, ngram: int) -> npt.NDArray[np.float64]:
    """Jaccard of the shingle sets of ``texts[a[i]]`` and ``texts[b[i]]``: 1.0 where the rows' shingle digests
    (:meth:`MinHasher.sketch`) agree, else computed from the shingle sets of just the rows that need it."""
    out = np.ones(len(a), dtype=np.float64)
    differ = np.flatnonzero(digest[a] != digest[b])
    if len(differ):
        sets = ShingleSets.of(texts, np.concatenate([a[differ], b[differ]]), ngram)
        out[differ] = sets.jaccard(a[differ], b[differ])
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
