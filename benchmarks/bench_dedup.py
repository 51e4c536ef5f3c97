"""Near-dedup and exact-dedup throughput and accuracy per true-Jaccard bucket, against datasketch and rensa
measured in the same run.

A seeded corpus of ``--n`` documents (Zipf words from a synthetic vocabulary, 20-120 words each — the length
of instruction prompts), 15% of them planted copies, each of a different original: exact duplicates
(case/whitespace changed; 5%) and near copies (10%; words replaced, inserted or deleted at a rate drawn so that
the true Jaccard spreads over 0.5-1.0). The true 5-gram-shingle Jaccard of every planted pair is computed
exactly (Python sets); the other 70% of the documents are clean: nothing resembles them (the same duplicate
share as this benchmark had before the buckets; ``--dup-share`` raises it). Every method gets the same
texts and the same normalization (NFKC, lowercase, ``\\w+`` words, 5-word shingles) and 128 permutations, and
must return which documents it drops:

* cardtune — ``near_dedup`` on a frame (the whole filter: tokenizing, MinHash, LSH, verification, components),
  once per ``verify`` mode: ``estimate`` with the banding derived for it (16 × 8 — today's algorithm, measured
  first), ``exact`` with its derived banding (32 × 4) and with 16 × 8, ``none`` with 16 × 8;
* datasketch — ``MinHash.update_batch`` once, then per banding (16 × 8, 32 × 4 and the one
  ``MinHashLSH(threshold=0.8)`` derives, 9 × 13): insert, query, verify the estimate ``jaccard >= t``,
  union-find, keep first (the time of each includes the MinHash step);
* rensa (if installed) — ``RMinHashDeduplicator(threshold, 128, use_lsh=True, num_bands=16 | 32).add_pairs``
  (its bulk streaming API: candidate retrieval and verification in Rust);
* datatrove (``--datatrove``; benchmark-only: ``.venv/bin/pip install 'datatrove[processing]' spacy``) — its four
  MinHash stages, 16 × 8, on 2 tasks (see ``datatrove_dedup.py``; no verification: a shared band is a merge).

Each planted pair counts as merged when at least one side was dropped (every original has at most one copy, so
nothing else can explain a drop). Per bucket of true J the table shows the share merged: recall at J ≥ the
threshold, false merges below it. Strict precision = share of dropped documents whose planted partner has
J ≥ threshold; "clean" = clean documents dropped (must be 0).

    python benchmarks/bench_dedup.py                # 100k documents (a few minutes on 2 cores: datasketch)
    python benchmarks/bench_dedup.py --quick        # 5k documents, smoke run
    python benchmarks/bench_dedup.py --n 1000000 --ours-only   # scale/memory check: cardtune only
    python benchmarks/bench_dedup.py --n 20000 --datatrove     # with datatrove (about 100 docs/s on 2 cores)
"""

from __future__ import annotations

import argparse
import re
import resource
import threading
import time
import unicodedata
from collections.abc import Callable
from dataclasses import dataclass

import datatrove_dedup
import numpy as np
import numpy.typing as npt
import polars as pl
import psutil

from cardtune.curate.filters.exact_dedup import ExactDedup, exact_dedup
from cardtune.curate.filters.near_dedup import NearDedup, banding, near_dedup

THRESHOLD = 0.8
NUM_PERM = 128
NGRAM = 5
EDGES = (0.5, 0.6, 0.7, 0.75, 0.8, 0.81, 0.85, 0.9, 1.0)  # buckets [e_i, e_i+1), then J == 1.0
_WORD = re.compile(r"\w+")
Mask = npt.NDArray[np.bool_]


def shingles(text: str) -> list[str]:
    words = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    if len(words) < NGRAM:
        return [" ".join(words)] if words else []
    return [" ".join(words[i : i + NGRAM]) for i in range(len(words) - NGRAM + 1)]


def true_jaccard(x: str, y: str) -> float:
    a, b = set(shingles(x)), set(shingles(y))
    return len(a & b) / max(1, len(a | b))


@dataclass(frozen=True)
class Corpus:
    texts: list[str]
    a: npt.NDArray[np.int64]  # planted pairs: original ...
    b: npt.NDArray[np.int64]  # ... and its copy
    jaccard: npt.NDArray[np.float64]  # true shingle Jaccard of each pair
    partner_j: npt.NDArray[np.float64]  # per document: J with its planted partner, -1 for clean documents


def make_corpus(n: int, seed: int, dup_share: float = 0.15) -> Corpus:
    """Originals and ``dup_share·n`` planted copies, each of a different original (a third exact, two thirds
    near with true J spread over 0.5-1.0), shuffled."""
    if not 0 <= dup_share <= 0.5:
        raise ValueError("dup_share must be in [0, 0.5]: every copy needs its own original")
    rng = np.random.default_rng(seed)
    letters = np.array(list("abcdefghijklmnopqrstuvwxyz"))
    vocab = np.array(["".join(rng.choice(letters, size=k)) for k in rng.integers(2, 11, size=30_000)])
    n_exact = round(n * dup_share / 3)
    n_near = round(n * dup_share) - n_exact
    n_orig = n - n_exact - n_near
    lengths = rng.integers(20, 121, size=n_orig)
    ids = (rng.zipf(1.3, size=int(lengths.sum())) - 1) % len(vocab)
    bounds = np.r_[0, np.cumsum(lengths)]

    def doc(i: int) -> list[str]:  # words of original i, made on demand (a list per document would take GBs at 1M)
        return [str(w) for w in vocab[ids[bounds[i] : bounds[i + 1]]]]

    texts = [" ".join(doc(i)) for i in range(n_orig)]
    sources = rng.permutation(n_orig)[: n_exact + n_near].tolist()  # each original is copied at most once
    pairs: list[tuple[int, int, float]] = []
    for src in sources[:n_exact]:
        texts.append("  " + texts[src].upper().replace(" ", " \n ", 3))
        pairs.append((src, len(texts) - 1, 1.0))
    for src in sources[n_exact:]:
        target = float(rng.uniform(0.5, 1.0))
        shared = 2 * target / (1 + target)  # share of a document's shingles that survive for Jaccard = target
        rate = 1 - shared ** (1 / NGRAM)  # each edited word breaks the NGRAM shingles covering it
        words: list[str] = []
        for word in doc(src):
            if rng.random() >= rate:
                words.append(word)
                continue
            kind = rng.random()
            if kind < 0.7:  # replace
                words.append(str(vocab[rng.integers(len(vocab))]))
            elif kind < 0.85:  # insert a word after it
                words += [word, str(vocab[rng.integers(len(vocab))])]
            # else: delete it
        texts.append(" ".join(words))
        pairs.append((src, len(texts) - 1, true_jaccard(texts[src], texts[-1])))
    order = rng.permutation(len(texts))
    where = np.empty_like(order)
    where[order] = np.arange(len(order))
    a = where[np.array([p[0] for p in pairs], dtype=np.int64)]
    b = where[np.array([p[1] for p in pairs], dtype=np.int64)]
    jac = np.array([p[2] for p in pairs], dtype=np.float64)
    partner = np.full(len(texts), -1.0)
    partner[a] = jac
    partner[b] = jac
    return Corpus([texts[i] for i in order], a.astype(np.int64), b.astype(np.int64), jac, partner)


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


def _components(n: int, edges: list[tuple[int, int]]) -> Mask:
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
    return np.array([find(i) != i for i in range(n)], dtype=np.bool_)


def _frame(texts: list[str], completion: list[str] | str = "") -> pl.DataFrame:
    return pl.DataFrame(
        {
            "task": "bench",
            "template_id": "",
            "source_ref": [str(i) for i in range(len(texts))],
            "_prompt_text": texts,
            "_completion_text": completion,
            "_fields_text": "",
        }
    )


def cardtune_method(spec: NearDedup) -> Callable[[list[str]], Mask]:
    def run(texts: list[str]) -> Mask:
        res = near_dedup(_frame(texts), spec)
        dropped = np.zeros(len(texts), dtype=np.bool_)
        dropped[res.rejects.get_column("source_ref").cast(pl.Int64).to_numpy()] = True
        return dropped

    return run


def run_datasketch(texts: list[str], variants: list[tuple[int, int] | None]) -> list[tuple[Mask, float]]:
    """One MinHash pass, then one LSH index per banding (None: the one ``threshold`` derives); seconds include
    the MinHash pass."""
    from datasketch import MinHash, MinHashLSH

    t0 = time.perf_counter()
    hashes = []
    for text in texts:
        m = MinHash(num_perm=NUM_PERM)
        m.update_batch([s.encode() for s in shingles(text)])
        hashes.append(m)
    t_hash = time.perf_counter() - t0
    out = []
    for params in variants:
        t1 = time.perf_counter()
        lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM, params=params)
        for i, m in enumerate(hashes):
            lsh.insert(i, m)
        edges = []
        for i, m in enumerate(hashes):
            edges += [(i, j) for j in lsh.query(m) if j > i and m.jaccard(hashes[j]) >= THRESHOLD]
        dropped = _components(len(texts), edges)
        out.append((dropped, t_hash + time.perf_counter() - t1))
    return out


def datasketch_banding() -> tuple[int, int]:
    from datasketch import MinHashLSH

    lsh = MinHashLSH(threshold=THRESHOLD, num_perm=NUM_PERM)
    return int(lsh.b), int(lsh.r)


def rensa_method(bands: int) -> Callable[[list[str]], Mask]:
    def run(texts: list[str]) -> Mask:
        from rensa import RMinHashDeduplicator

        dedup = RMinHashDeduplicator(threshold=THRESHOLD, num_perm=NUM_PERM, use_lsh=True, num_bands=bands)
        keep = dedup.add_pairs((str(i), shingles(t)) for i, t in enumerate(texts))
        return ~np.array(keep, dtype=np.bool_)

    return run


@dataclass(frozen=True)
class Score:
    buckets: list[float]  # share of planted pairs merged, per bucket of true J
    recall: float  # at J >= THRESHOLD
    false_merges: float  # share merged at J < THRESHOLD - 0.05
    precision: float  # dropped documents whose partner has J >= THRESHOLD
    precision_slack: float  # ... J >= THRESHOLD - 0.05
    clean: int  # clean documents dropped
    dropped: int


def bucket_of(jac: npt.NDArray[np.float64]) -> npt.NDArray[np.int64]:
    """Bucket index per pair: [EDGES[i], EDGES[i+1]) for i < len(EDGES) - 1, the last for J == 1.0; -1 below."""
    out: npt.NDArray[np.int64] = np.searchsorted(np.array(EDGES), jac, side="right").astype(np.int64) - 1
    return out


def score(dropped: Mask, corpus: Corpus) -> Score:
    merged = dropped[corpus.a] | dropped[corpus.b]
    bucket = bucket_of(corpus.jaccard)
    per = [float(merged[bucket == i].mean()) if (bucket == i).any() else float("nan") for i in range(len(EDGES))]
    partner = corpus.partner_j[dropped]
    return Score(
        buckets=per,
        recall=float(merged[corpus.jaccard >= THRESHOLD].mean()),
        false_merges=float(merged[corpus.jaccard < THRESHOLD - 0.05].mean()),
        precision=float((partner >= THRESHOLD).mean()) if len(partner) else 1.0,
        precision_slack=float((partner >= THRESHOLD - 0.05).mean()) if len(partner) else 1.0,
        clean=int((partner < 0).sum()),
        dropped=int(dropped.sum()),
    )


def timed(fn: Callable[[list[str]], Mask], texts: list[str], repeat: int = 1) -> tuple[Mask, float, float]:
    """The result, the best of ``repeat`` wall times, and the peak RSS increase of the first run."""
    best = float("inf")
    out: Mask | None = None
    mib = 0.0
    for i in range(repeat):
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            out = fn(texts)
            best = min(best, time.perf_counter() - t0)
        if i == 0:
            mib = mem.mib
    assert out is not None
    return out, best, mib


def _label(edge_i: int) -> str:
    if edge_i == len(EDGES) - 1:
        return "1.0"
    return f"{EDGES[edge_i]:.2f}-{EDGES[edge_i + 1]:.2f}"


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000, help="documents in the corpus")
    ap.add_argument("--quick", action="store_true", help="5k documents")
    ap.add_argument("--seed", type=int, default=0)
    ap.add_argument("--dup-share", type=float, default=0.15, help="share of documents that are planted copies")
    ap.add_argument("--repeat", type=int, default=2, help="cardtune runs per mode (best time is reported)")
    ap.add_argument(
        "--ours-only", action="store_true", help="run only cardtune (peers take too long at 1M) and report peak RSS"
    )
    ap.add_argument("--datatrove", action="store_true", help="also run datatrove's MinHash dedup (slow; see above)")
    args = ap.parse_args(argv)
    n = 5_000 if args.quick else args.n
    t0 = time.perf_counter()
    corpus = make_corpus(n, args.seed, args.dup_share)
    texts = corpus.texts
    counts = np.bincount(bucket_of(corpus.jaccard)[corpus.jaccard >= EDGES[0]], minlength=len(EDGES))
    print(
        f"corpus: {len(texts):,} docs ({int((corpus.partner_j < 0).sum()):,} clean), {len(corpus.a):,} planted "
        f"pairs ({int((corpus.jaccard >= THRESHOLD).sum()):,} with J ≥ {THRESHOLD}), 20-120 words/doc; threshold "
        f"{THRESHOLD}, {NUM_PERM} perms; built in {time.perf_counter() - t0:.1f} s"
    )
    print("pairs per bucket: " + ", ".join(f"{_label(i)}: {int(c):,}" for i, c in enumerate(counts)))

    default = {mode: banding(NearDedup(threshold=THRESHOLD, verify=mode)) for mode in ("estimate", "exact")}
    cardtune_runs: list[tuple[str, NearDedup]] = [
        ("today", NearDedup(threshold=THRESHOLD, verify="estimate")),  # today's algorithm: measured first
        ("exact", NearDedup(threshold=THRESHOLD, verify="exact")),
        ("exact", NearDedup(threshold=THRESHOLD, verify="exact", bands=16, rows=8)),
        ("none", NearDedup(threshold=THRESHOLD, verify="none", bands=16, rows=8)),
    ]
    rows: list[tuple[str, Score, float, float]] = []  # name, score, seconds, peak MiB
    for name, spec in cardtune_runs:
        b, r = banding(spec)
        label = f"cardtune {name} {b}x{r}"
        dropped, dt, mib = timed(cardtune_method(spec), texts, args.repeat)
        rows.append((label, score(dropped, corpus), dt, mib))
    if not args.ours_only:
        try:
            import rensa  # noqa: F401

            for bands in (16, 32):
                dropped, dt, mib = timed(rensa_method(bands), texts)
                rows.append((f"rensa {bands}x{NUM_PERM // bands}", score(dropped, corpus), dt, mib))
        except ImportError:
            print("rensa: not installed, skipped")
        ds_default = datasketch_banding()
        variants: list[tuple[int, int] | None] = [(16, 8), (32, 4), None]
        with PeakRSS() as mem:
            results = run_datasketch(texts, variants)
        for params, (dropped, dt) in zip(variants, results, strict=True):
            b, r = params or ds_default
            suffix = " (threshold)" if params is None else ""
            rows.append((f"datasketch {b}x{r}{suffix}", score(dropped, corpus), dt, mem.mib))
        absent = datatrove_dedup.missing() if args.datatrove else ["--datatrove not given"]
        if absent:
            print(f"datatrove: skipped ({', '.join(absent)}; install: {datatrove_dedup.INSTALL}, run with --datatrove)")
        else:
            trove = datatrove_dedup.run_datatrove(texts, tasks=2)  # peak MiB: nan (the work is in worker processes)
            rows.append(("datatrove 16x8 (2 tasks)", score(trove.dropped, corpus), trove.seconds, float("nan")))
            stages = ", ".join(f"{k} {v:.1f} s" for k, v in trove.stages.items())
            print(f"datatrove stages: {stages}; normalize + spaCy tokenize = {trove.tokenize_share:.0%} of stage 1")

    width = max(len(r[0]) for r in rows)
    print(f"\nshare of planted pairs merged per true-J bucket (recall at J ≥ {THRESHOLD}, false merges below):")
    print(f"{'method':<{width}} " + " ".join(f"{_label(i):>9}" for i in range(len(EDGES))))
    for label, sc, _, _ in rows:
        print(f"{label:<{width}} " + " ".join(f"{v:>9.4f}" for v in sc.buckets))
    print(
        f"\n{'method':<{width}} {'docs/s':>9} {'seconds':>8} {'recall':>7} {'merged<' + str(THRESHOLD - 0.05)[:4]:>10}"
        f" {'precision':>9} {'prec@-.05':>9} {'clean':>5} {'dropped':>8} {'peak MiB':>8}"
    )
    for label, sc, dt, mib in rows:
        print(
            f"{label:<{width}} {len(texts) / dt:>9,.0f} {dt:>8.2f} {sc.recall:>7.4f} {sc.false_merges:>10.4f} "
            f"{sc.precision:>9.4f} {sc.precision_slack:>9.4f} {sc.clean:>5} {sc.dropped:>8,} {mib:>8,.0f}"
        )
    by = {label: (sc, dt) for label, sc, dt, _ in rows}
    e, t = default["exact"], default["estimate"]
    exact, exact_dt = by[f"cardtune exact {e[0]}x{e[1]}"]
    today, today_dt = by[f"cardtune today {t[0]}x{t[1]}"]
    print()
    print(
        f"RATIO near-dedup exact ({e[0]}x{e[1]}) vs today (estimate, {t[0]}x{t[1]}): {today_dt / exact_dt:.2f}x "
        f"throughput (target >= 0.8x); recall {exact.recall:.4f} vs {today.recall:.4f}"
    )
    print(
        f"RATIO near-dedup exact false merges at J < {THRESHOLD - 0.05:.2f}: {exact.false_merges:.4f} (target <= 0.01);"
        f" clean documents dropped: {exact.clean} (target 0)"
    )
    if args.ours_only:
        peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20  # KiB on Linux
        print(
            f"RATIO near-dedup scale: {len(texts):,} docs in {exact_dt:.1f} s ({len(texts) / exact_dt:,.0f} docs/s); "
            f"process peak RSS {peak:.2f} GiB (target <= 4 GiB, corpus in memory included)"
        )
    else:
        peers = {label: v for label, v in by.items() if not label.startswith("cardtune")}
        best_label = max(peers, key=lambda k: peers[k][0].recall)
        best = peers[best_label][0].recall
        print(
            f"RATIO near-dedup exact recall at J ≥ {THRESHOLD}: {exact.recall:.4f} vs best reference {best:.4f} "
            f"({best_label}): {exact.recall - best:+.4f} (target >= -0.005)"
        )
        ds_dt = by["datasketch 16x8"][1]
        print(f"RATIO near-dedup exact vs datasketch 16x8: {ds_dt / exact_dt:.1f}x (target >= 8x)")
        if "rensa 16x8" in by:
            rs_dt = by["rensa 16x8"][1]
            print(f"RATIO near-dedup exact vs rensa 16x8: {rs_dt / exact_dt:.2f}x (target >= 1.5x)")
        if "datatrove 16x8 (2 tasks)" in by:
            trove, trove_dt = by["datatrove 16x8 (2 tasks)"]
            for label in (f"cardtune exact {e[0]}x{e[1]}", "cardtune exact 16x8"):
                ours, ours_dt = by[label]
                print(
                    f"RATIO near-dedup {label.removeprefix('cardtune ')} vs datatrove 16x8 (2 tasks): "
                    f"{trove_dt / ours_dt:.1f}x docs/s (target >= 10x); recall {ours.recall:.4f} vs "
                    f"{trove.recall:.4f} (target >=); merged at J < {THRESHOLD - 0.05:.2f} {ours.false_merges:.4f} "
                    f"vs {trove.false_merges:.4f} (target <)"
                )

    df = _frame(texts, [t[:40] for t in texts])
    t0 = time.perf_counter()
    res = exact_dedup(df, ExactDedup(scope="both"))
    dt = time.perf_counter() - t0
    print(f"RATIO exact dedup: {len(texts) / dt:,.0f} rows/s (target >= 100,000); dropped {res.rejects.height:,}")


if __name__ == "__main__":
    main()
