"""Near-dedup and exact-dedup throughput and accuracy, against datasketch and rensa measured in the same run.

A seeded corpus of ``--n`` documents (Zipf words from a synthetic vocabulary, 20-120 words each — the length
of instruction prompts) gets planted exact duplicates (case/whitespace changed) and near duplicates (a share
of words substituted), whose true 5-gram-shingle Jaccard against their original is computed exactly. Every
method gets the same texts and the same normalization (NFKC, lowercase, ``\\w+`` words, 5-word shingles),
128 permutations and 16 × 8 banding, and must return which documents it drops:

* cardtune — ``near_dedup`` on a frame (the whole filter: tokenizing, MinHash, LSH, verification, components);
* datasketch — ``MinHash.update_batch`` + ``MinHashLSH(params=(16, 8))``, query, verify ``jaccard >= t``,
  union-find, keep first;
* rensa — ``RMinHashDeduplicator(threshold, 128, use_lsh=True, num_bands=16).add_pairs`` (its bulk streaming
  API: candidate retrieval and verification in Rust).

Recall = share of planted pairs with true J ≥ threshold where at least one side was dropped. Strict precision =
share of dropped documents that have a planted partner with true J ≥ threshold (no slack below it).

    python benchmarks/bench_dedup.py            # 100k documents (datasketch takes a minute or more)
    python benchmarks/bench_dedup.py --quick    # 5k documents, smoke run
    python benchmarks/bench_dedup.py --n 1000000 --ours-only   # scale/memory check: cardtune only
"""

from __future__ import annotations

import argparse
import re
import resource
import threading
import time
import unicodedata
from collections.abc import Callable
from typing import Any

import numpy as np
import polars as pl
import psutil

from cardtune.curate.filters.exact_dedup import ExactDedup, exact_dedup
from cardtune.curate.filters.near_dedup import NearDedup, near_dedup

THRESHOLD = 0.8
NUM_PERM = 128
BANDS, ROWS = 16, 8
NGRAM = 5
_WORD = re.compile(r"\w+")


def shingles(text: str) -> list[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def make_corpus(n: int, seed: int) -> tuple[list[str], list[tuple[int, int, float]]]:
    """Texts and planted pairs (original, copy, true Jaccard)."""
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, size=k)) for k in rng.integers(2, 11, size=30_000)])
    n_exact, n_near = n // 20, n // 10
    n_orig = n - n_exact - n_near
    lengths = rng.integers(20, 121, size=n_orig)
    ids = (rng.zipf(1.3, size=int(lengths.sum())) - 1) % len(vocab)
    bounds = np.r_[0, np.cumsum(lengths)]

    def doc(i: int) -> list[str]:  # words of original i, made on demand (a list per document would take GBs at 1M)
        return [str(w) for w in vocab[ids[bounds[i] : bounds[i + 1]]]]

    texts = [" ".join(doc(i)) for i in range(n_orig)]
    pairs: list[tuple[int, int, float]] = []
    for _ in range(n_exact):
        src = int(rng.integers(n_orig))
        texts.append("  " + texts[src].upper().replace(" ", " \n ", 3))
        pairs.append((src, len(texts) - 1, 1.0))
    for _ in range(n_near):
        src = int(rng.integers(n_orig))
        words = doc(src)
        rate = float(rng.uniform(0.0, 0.12))
        for pos in np.flatnonzero(rng.random(len(words)) < rate).tolist():
            words[pos] = str(vocab[rng.integers(len(vocab))])
        texts.append(" ".join(words))
        a, b = set(shingles(texts[src])), set(shingles(texts[-1]))
        pairs.append((src, len(texts) - 1, len(a & b) / max(1, len(a | b))))
    order = rng.permutation(len(texts))
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    return [texts[i] for i in order], [(int(where[a]), int(where[b]), j) for a, b, j in pairs]


class PeakRSS:
    """Peak resident memory above the starting point while the block runs (sampled every 5 ms)."""

    def __enter__(self) -> PeakRSS:
        self.proc = psutil.Process()
        self.base = self.peak = self.proc.memory_info().rss
        self.stop = False
        self.thread = threading.Thread(target=self._poll, daemon=True)
        self.thread.start()
        return self

    def _poll(self) -> None:
        while not self.stop:
            self.peak = max(self.peak, self.proc.memory_info().rss)
            time.sleep(0.005)

    def __exit__(self, *exc: object) -> None:
        self.stop = True
        self.thread.join()

    @property
    def mib(self) -> float:
        return float(self.peak - self.base) / 2**20


def _components(n: int, edges: list[tuple[int, int]]) -> set[int]:
    parent = list(range(n))

    def find(x: int) -> int:
        while parent[x] != x:
            parent[x] = parent[parent[x]]
            x = parent[x]
        return x

    for a, b in edges:
        ra, rb = find(a), find(b)
        if ra != rb:
            parent[max(ra, rb)] = min(ra, rb)
    return {i for i in range(n) if find(i) != i}


def run_cardtune(texts: list[str]) -> set[int]:
    df = pl.DataFrame(
        {
            "task": "bench",
            "template_id": "",
            "source_ref": [str(i) for i in range(len(texts))],
            "_prompt_text": texts,
            "_completion_text": "",
            "_fields_text": "",
        }
    )
    spec = NearDedup(threshold=THRESHOLD, num_perm=NUM_PERM, ngram=NGRAM, bands=BANDS, rows=ROWS, scope="prompt")
    res = near_dedup(df, spec)
    return {int(r) for r in res.rejects.get_column("source_ref").to_list()}


def run_datasketch(texts: list[str]) -> set[int]:
    from datasketch import MinHash, MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=(BANDS, ROWS))
    hashes = []
    for i, text in enumerate(texts):
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode() for s in shingles(text)])
        lsh.insert(i, m)
        hashes.append(m)
    edges = []
    for i, m in enumerate(hashes):
        edges += [(i, j) for j in lsh.query(m) if j > i and m.jaccard(hashes[j]) >= THRESHOLD]
    return _components(len(texts), edges)


def run_rensa(texts: list[str]) -> set[int]:
    from rensa import RMinHashDeduplicator

    dedup = RMinHashDeduplicator(threshold=THRESHOLD, num_perm=NUM_PERM, use_lsh=True, num_bands=BANDS)
    keep = dedup.add_pairs((str(i), shingles(t)) for i, t in enumerate(texts))
    return {i for i, k in enumerate(keep) if not k}


def score(dropped: set[int], pairs: list[tuple[int, int, float]]) -> tuple[float, float]:
    true_pairs = [(a, b) for a, b, j in pairs if j >= THRESHOLD]
    recall = sum(1 for a, b in true_pairs if a in dropped or b in dropped) / max(1, len(true_pairs))
    partnered = {x for a, b in true_pairs for x in (a, b)}
    precision = sum(1 for d in dropped if d in partnered) / max(1, len(dropped))
    return recall, precision


def timed(fn: Callable[[list[str]], set[int]], texts: list[str]) -> tuple[set[int], float, float]:
    with PeakRSS() as mem:
        t0 = time.perf_counter()
        out = fn(texts)
        dt = time.perf_counter() - t0
    return out, dt, mem.mib


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="documents in the corpus")
    ap.add_argument("--quick", action="store_true", help="5k documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument(
        "--ours-only", action="store_true", help="run only cardtune (peers take too long at 1M) and report peak RSS"
    )
    args = ap.parse_args(argv)
    n = 5_000 if args.quick else args.n
    texts, pairs = make_corpus(n, args.seed)
    jac = np.array([j for _, _, j in pairs])
    print(
        f"corpus: {len(texts):,} docs, {len(pairs):,} planted pairs ({int((jac >= THRESHOLD).sum()):,} with J ≥ "
        f"{THRESHOLD}), 20-120 words/doc; threshold {THRESHOLD}, {NUM_PERM} perms, {BANDS}x{ROWS} bands"
    )
    results: dict[str, Any] = {}
    methods = (("cardtune", run_cardtune), ("rensa", run_rensa), ("datasketch", run_datasketch))
    for name, fn in methods[:1] if args.ours_only else methods:
        dropped, dt, mib = timed(fn, texts)
        recall, precision = score(dropped, pairs)
        results[name] = (dt, recall)
        print(
            f"{name:>10}: {len(texts) / dt:>10,.0f} docs/s  {dt:7.2f} s  recall {recall:.4f}  "
            f"strict precision {precision:.4f}  dropped {len(dropped):,}  peak RSS +{mib:,.0f} MiB"
        )
    if args.ours_only:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        dt = results["cardtune"][0]
        print(
            f"RATIO near-dedup scale: {len(texts):,} docs in {dt:.1f} s ({len(texts) / dt:,.0f} docs/s); "
            f"process peak RSS {peak:.2f} GiB (target <= 4 GiB, corpus in memory included)"
        )
    else:
        ours, ds, rs = results["cardtune"], results["datasketch"], results["rensa"]
        print(
            f"RATIO near-dedup vs datasketch: {ds[0] / ours[0]:.1f}x (target >= 8x); "
            f"recall diff {ours[1] - ds[1]:+.4f} (target within 0.01)"
        )
        print(f"RATIO near-dedup vs rensa: {rs[0] / ours[0]:.2f}x (target >= 1.5x); recall diff {ours[1] - rs[1]:+.4f}")

    df = pl.DataFrame(
        {
            "task": "bench",
            "template_id": "",
            "source_ref": [str(i) for i in range(len(texts))],
            "_prompt_text": texts,
            "_completion_text": [t[:40] for t in texts],
            "_fields_text": "",
        }
    )
    t0 = time.perf_counter()
    res = exact_dedup(df, ExactDedup(scope="both"))
    dt = time.perf_counter() - t0
    print(f"RATIO exact dedup: {len(texts) / dt:,.0f} rows/s (target >= 100,000); dropped {res.rejects.height:,}")


if __name__ == "__main__":
    main()
