"""One text normalization and one word tokenizer, shared by exact dedup, near dedup, decontamination and quality.

* :func:`normalize` — Unicode NFKC, lowercase, whitespace runs folded to one space, stripped. NFKC is the
  identity on ASCII, so it only runs on the rows that hold non-ASCII characters (it is the slow step).
* :func:`words` — the normalized text split into ``\\w+`` words (Unicode word characters, like Python's
  ``re.findall(r"\\w+", ...)``), each hashed to a **stable** uint64 (8-byte little-endian chunks folded by multiply-add, then a
  64-bit finalizer, computed in numpy per word (no Python loop per word, no ``pl.Expr.hash``; the values are the same on every
  platform and polars version).
* :func:`ngrams` — word n-gram hashes (order-sensitive, stable), optionally with one shorter shingle for
  documents with fewer than ``n`` words.

All functions take a polars ``Series`` of strings (nulls count as empty) and work on the whole batch at once;
callers bound memory by passing batches.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import numpy.typing as npt
import polars as pl

U64 = npt.NDArray[np.uint64]
I64 = npt.NDArray[np.int64]

_MASK64 = (1 << 64) - 1


def splitmix64(seed: int, count: int) -> U64:
    """``count`` deterministic 64-bit values from the SplitMix64 generator (stable across numpy versions)."""
    out = np.empty(count, dtype=np.uint64)
    state = seed & _MASK64
    for i in range(count):
        state = (state + 0x9E3779B97F4A7C15) & _MASK64
        z = state
        z = ((z ^ (z >> 30)) * 0xBF58476D1CE4E5B9) & _MASK64
        z = ((z ^ (z >> 27)) * 0x94D049BB133111EB) & _MASK64
        out[i] = z ^ (z >> 31)
    return out


def mix64(x: U64) -> U64:
    """A bijective 64-bit finalizer (murmur3 fmix64), vectorized; wraps modulo 2**64."""
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xFF51AFD7ED558CCD)
    x = x ^ (x >> np.uint64(33))
    x = x * np.uint64(0xC4CEB9FE1A85EC53)
    return x ^ (x >> np.uint64(33))


_CHUNK_KEYS = splitmix64(0x5EED_CA4D_7A0E, 64)  # one key per 8-byte chunk position of a word
_NGRAM_KEYS = splitmix64(0x96A3_5EED, 64) | np.uint64(1)  # odd multipliers, one per word position
_WORD_BYTE = np.zeros(256, dtype=bool)
for _c in b"0123456789abcdefghijklmnopqrstuvwxyzABCDEFGHIJKLMNOPQRSTUVWXYZ_":
    _WORD_BYTE[_c] = True
_WORD_BYTE[0x80:] = True  # non-ASCII bytes: punctuation/space among them is replaced before the byte scan


def _non_ascii(s: pl.Series) -> pl.Series:
    return s.str.len_bytes() != s.str.len_chars()


def normalize(texts: pl.Series) -> pl.Series:
    """NFKC (non-ASCII rows only), lowercase, whitespace runs folded to one space, stripped; nulls → ``""``."""
    s = texts.cast(pl.String).fill_null("")
    mask = _non_ascii(s)
    if mask.any():
        idx = mask.arg_true()
        s = s.scatter(idx, s.gather(idx).str.normalize("NFKC"))
    s = s.str.to_lowercase()
    # Most rows hold only single spaces: replace just runs and non-space whitespace (cheaper than \s+).
    return s.str.replace_all(r"\s{2,}|[^\S ]", " ").str.strip_chars()


@dataclass(frozen=True)
class Words:
    """Words of a batch of documents: byte spans into ``data`` and stable hashes, grouped by document."""

    data: npt.NDArray[np.uint8]  # the normalized UTF-8 bytes of all documents, concatenated
    starts: I64  # byte offset where each word starts
    ends: I64  # byte offset just past each word
    hashes: U64  # stable 64-bit hash of each word
    doc_offsets: I64  # words of document d are [doc_offsets[d], doc_offsets[d + 1])

    @property
    def counts(self) -> I64:
        """Number of words per document."""
        return np.diff(self.doc_offsets)

    def text(self, first_word: int, n: int) -> str:
        """The text of ``n`` words starting at word index ``first_word`` (single spaces between)."""
        return " ".join(
            bytes(self.data[self.starts[i] : self.ends[i]]).decode("utf-8", "replace")
            for i in range(first_word, first_word + n)
        )


def _arrow_buffers(s: pl.Series) -> tuple[npt.NDArray[np.uint8], I64]:
    import pyarrow as pa

    arr = s.rechunk().to_arrow()
    if not pa.types.is_large_string(arr.type):
        arr = arr.cast(pa.large_string())
    bufs = arr.buffers()
    offsets = np.frombuffer(bufs[1], dtype=np.int64)[arr.offset : arr.offset + len(arr) + 1]
    data = np.frombuffer(bufs[2], dtype=np.uint8) if bufs[2] is not None else np.zeros(0, dtype=np.uint8)
    return data, offsets


def words(texts: pl.Series, *, normalized: bool = False) -> Words:
    """Split each text into normalized ``\\w+`` words and hash every word (stable uint64)."""
    s = texts.cast(pl.String).fill_null("") if normalized else normalize(texts)
    mask = _non_ascii(s)
    if mask.any():  # non-ASCII rows: turn every non-word character into a space, so bytes >= 0x80 are word bytes
        idx = mask.arg_true()
        s = s.scatter(idx, s.gather(idx).str.replace_all(r"\W+", " "))
    # A space around each document: no word runs across two documents, and words alternate start/end.
    data, offsets = _arrow_buffers(" " + s + " ")
    base = int(offsets[0])
    offsets = offsets - base
    data = data[base : base + int(offsets[-1])]
    is_word = np.take(_WORD_BYTE, data)
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]).astype(np.int64) + 1
    starts = edges[0::2]
    ends = edges[1::2]
    doc_offsets = np.searchsorted(starts, offsets).astype(np.int64)
    return Words(data=data, starts=starts, ends=ends, hashes=_hash_spans(data, starts, ends), doc_offsets=doc_offsets)


_LOW_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _hash_spans(data: npt.NDArray[np.uint8], starts: I64, ends: I64) -> U64:
    """Stable hash of each byte span: 8-byte little-endian chunks folded by multiply-add, then ``mix64``."""
    lengths = ends - starts
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    pad = (-len(data)) % 8 + 16
    words64 = np.concatenate([data, np.zeros(pad, dtype=np.uint8)]).view("<u8").astype(np.uint64, copy=False)

    def load(offset: I64) -> U64:  # unaligned little-endian 8-byte loads from two aligned ones
        q = offset >> 3
        shift = ((offset & 7) * 8).astype(np.uint64)
        lo = words64[q] >> shift
        hi = (words64[q + 1] << (np.uint64(63) - shift)) << np.uint64(1)  # shift by 64 - s without overflow
        out: U64 = lo | hi
        return out

    out = load(starts) & _LOW_MASKS[np.minimum(lengths, 8)]
    active = np.flatnonzero(lengths > 8)
    k = 1
    while active.size:
        remaining = lengths[active] - 8 * k
        chunk = load(starts[active] + 8 * k) & _LOW_MASKS[np.minimum(remaining, 8)]
        out[active] = out[active] * _CHUNK_KEYS[k % len(_CHUNK_KEYS)] + chunk
        active = active[remaining > 8]
        k += 1
    return mix64(out ^ (lengths.astype(np.uint64) * _CHUNK_KEYS[0]))


@dataclass(frozen=True)
class NGrams:
    """Word n-gram hashes of a batch, grouped by document."""

    hashes: U64
    first_word: I64  # index (into ``Words``) of each n-gram's first word
    doc_offsets: I64  # n-grams of document d are [doc_offsets[d], doc_offsets[d + 1])


def ngrams(w: Words, n: int, *, short_docs: bool = False) -> NGrams:
    """Order-sensitive hashes of every ``n`` consecutive words inside one document.

    With ``short_docs=True`` a document with ``0 < words < n`` yields one shingle of all its words (the
    MinHash convention); otherwise it yields none (the decontamination convention: no full n-gram, no match).
    """
    if n > len(_NGRAM_KEYS):
        raise ValueError(f"n-grams longer than {len(_NGRAM_KEYS)} words are not supported (got {n})")
    m = len(w.hashes)
    counts = w.counts
    doc_of_word = np.repeat(np.arange(len(counts), dtype=np.int64), counts)
    doc_end = w.doc_offsets[1:][doc_of_word]
    positions = np.arange(m, dtype=np.int64)
    padded = np.concatenate([w.hashes, np.zeros(n, dtype=np.uint64)])
    acc = np.zeros(m, dtype=np.uint64)
    for j in range(n):
        term = padded[j : j + m] * _NGRAM_KEYS[j]
        if short_docs:
            term[positions + j >= doc_end] = 0
        acc += term
    valid = positions + n <= doc_end
    if short_docs:
        is_first = np.zeros(m, dtype=bool)
        is_first[w.doc_offsets[:-1][counts > 0]] = True
        valid |= is_first & (counts[doc_of_word] < n)
    keep = np.flatnonzero(valid)
    hashes = mix64(acc[keep] ^ np.uint64(n))
    doc_offsets = np.searchsorted(keep, w.doc_offsets).astype(np.int64)
    return NGrams(hashes=hashes, first_word=keep.astype(np.int64), doc_offsets=doc_offsets)
