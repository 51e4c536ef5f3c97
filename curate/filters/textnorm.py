"""One text normalization and one word tokenizer, shared by exact dedup, near dedup, decontamination and quality.

* :func:`normalize` — Unicode NFKC, lowercase, whitespace runs folded to one space, stripped. NFKC is the
  identity on ASCII, so it only runs on the rows that hold non-ASCII characters (it is the slow step).
* :func:`words` — the normalized text split into ``\\w+`` words (Unicode word characters, like Python's
  ``re.findall(r"\\w+", ...)``). Rows holding non-ASCII characters get NFKC, lowercase and non-word characters
  turned into spaces in polars; then the whole batch is joined into one byte string, ASCII-lowercased and
  classified with ``bytes.translate``, and word boundaries are where the class changes. Each word is hashed to a
  **stable** uint64 (8-byte little-endian chunks folded by multiply-add, then a 64-bit finalizer) in numpy
  (no Python loop per word, no ``pl.Expr.hash``; the values are the same on every platform and polars version).
* :func:`ngrams` — word n-gram hashes (order-sensitive), computed from one prefix sum for any ``n``,
  optionally with one shorter shingle for documents with fewer than ``n`` words.

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
_NGRAM_BASE = int(splitmix64(0x96A3_5EED, 1)[0]) | 1  # odd: invertible modulo 2**64
_NGRAM_BASE_INV = pow(_NGRAM_BASE, -1, 1 << 64)
_ASCII_UPPER = bytes(range(ord("A"), ord("Z") + 1))
_LOWER_BYTES = bytes.maketrans(_ASCII_UPPER, _ASCII_UPPER.lower())
# byte -> 1 for word bytes (ASCII letters, digits, underscore; every byte >= 0x80, because the rows holding
# non-ASCII characters get each non-word character replaced by a space before the byte scan), else 0
_WORD_CLASS = bytes(
    1 if (chr(b).isascii() and (chr(b).isalnum() or b == ord("_"))) or b >= 0x80 else 0 for b in range(256)
)


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


def _scan_bytes(s: pl.Series) -> tuple[bytes, I64]:
    """All texts joined by single spaces, framed by spaces (8 after the last), ASCII-lowercased;
    and the byte offset of the separator before each text (plus one after the last)."""
    lengths = s.str.len_bytes().to_numpy().astype(np.int64)
    seps = np.zeros(len(lengths) + 1, dtype=np.int64)
    np.cumsum(lengths + 1, out=seps[1:])
    raw = (" " + str(s.str.join(" ").item()) + " ").encode()
    raw += b" " * 8  # room for the 8-byte loads at the last word
    return raw.translate(_LOWER_BYTES), seps


def words(texts: pl.Series, *, normalized: bool = False) -> Words:
    """Split each text into normalized ``\\w+`` words and hash every word (stable uint64).

    Only the rows holding non-ASCII characters go through Unicode normalization (NFKC, lowercase, non-word
    characters to spaces); ASCII rows are lowercased and split in one byte scan (``bytes.translate``), so the
    cost is a few passes over the bytes plus one hash per word. ``normalized`` is accepted for compatibility:
    the word split never depends on whitespace folding.
    """
    s = texts.cast(pl.String).fill_null("")
    if not len(s):
        empty = np.zeros(0, dtype=np.int64)
        return Words(np.zeros(8, dtype=np.uint8), empty, empty, np.zeros(0, np.uint64), np.zeros(1, np.int64))
    mask = _non_ascii(s)
    if mask.any():  # non-ASCII rows: NFKC, lowercase, every non-word character to a space
        idx = mask.arg_true()
        s = s.scatter(idx, s.gather(idx).str.normalize("NFKC").str.to_lowercase().str.replace_all(r"\W+", " "))
    raw, seps = _scan_bytes(s)
    data = np.frombuffer(raw, dtype=np.uint8)
    is_word = np.frombuffer(raw.translate(_WORD_CLASS), dtype=np.int8)
    edges = np.flatnonzero(is_word[1:] != is_word[:-1]) + 1  # the frame spaces make words alternate start/end
    starts = edges[0::2]
    ends = edges[1::2]
    doc_offsets = np.searchsorted(starts, seps).astype(np.int64)
    return Words(data=data, starts=starts, ends=ends, hashes=_hash_spans(data, starts, ends), doc_offsets=doc_offsets)


_LOW_MASKS = np.array([(1 << (8 * k)) - 1 for k in range(8)] + [(1 << 64) - 1], dtype=np.uint64)


def _hash_spans(data: npt.NDArray[np.uint8], starts: I64, ends: I64) -> U64:
    """Stable hash of each byte span: 8-byte little-endian chunks folded by multiply-add, then ``mix64``.

    Bytes past a span are masked off, so ``data`` may hold anything there (it is padded when too short).
    """
    lengths = ends - starts
    if not len(starts):
        return np.zeros(0, dtype=np.uint64)
    if len(data) < int(ends[-1]) + 8:
        data = np.concatenate([data, np.zeros(8, dtype=np.uint8)])
    # every byte offset viewed as the start of a little-endian uint64 (overlapping, unaligned): one gather per load
    at = np.ndarray(shape=(len(data) - 7,), dtype="<u8", buffer=data, strides=(1,))

    def load(offset: I64) -> U64:
        out: U64 = at[offset].astype(np.uint64, copy=False)
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


_POWER_CACHE: dict[int, U64] = {}


def _powers(base: int, count: int) -> U64:
    """``base**0 .. base**(count-1)`` modulo 2**64 (cached; grown by doubling)."""
    have = _POWER_CACHE.get(base)
    if have is None or len(have) < count:
        size = max(count, 2 * len(have) if have is not None else 1 << 16)
        ones = np.full(size, base, dtype=np.uint64)
        ones[0] = 1
        have = _POWER_CACHE[base] = np.cumprod(ones, dtype=np.uint64)
    return have[:count]


def ngrams(w: Words, n: int, *, short_docs: bool = False) -> NGrams:
    """Order-sensitive hashes of every ``n`` consecutive words inside one document.

    The n-gram starting at word ``i`` hashes ``sum_j h[i+j] * B**j`` (mod 2**64, ``B`` odd), computed for all
    n-grams at once from one prefix sum of ``h[t] * B**t`` times ``B**-i``: the cost does not grow with ``n``.
    With ``short_docs=True`` a document with ``0 < words < n`` yields one shingle of all its words (the
    MinHash convention); otherwise it yields none (the decontamination convention: no full n-gram, no match).
    """
    if n < 1:
        raise ValueError(f"n-grams need n >= 1 (got {n})")
    m = len(w.hashes)
    counts = w.counts
    doc_end = np.repeat(w.doc_offsets[1:], counts)
    positions = np.arange(m, dtype=np.int64)
    end = positions + n
    valid = end <= doc_end
    if short_docs:
        short = (counts > 0) & (counts < n)
        first_of_short = w.doc_offsets[:-1][short]
        valid[first_of_short] = True
        end[first_of_short] = w.doc_offsets[1:][short]
    keep = np.flatnonzero(valid)
    prefix = np.zeros(m + 1, dtype=np.uint64)
    np.cumsum(w.hashes * _powers(_NGRAM_BASE, m), out=prefix[1:])
    inverse = _powers(_NGRAM_BASE_INV, m)
    window = (prefix[end[keep]] - prefix[keep]) * inverse[keep]
    hashes = mix64(window ^ np.uint64(n))
    doc_offsets = np.searchsorted(keep, w.doc_offsets).astype(np.int64)
    return NGrams(hashes=hashes, first_word=keep.astype(np.int64), doc_offsets=doc_offsets)
