"""Decontamination throughput against a plain Python-set 13-gram check, with identical flags asserted.

A seeded set of training rows (rendered prompt + completion, and raw fields) and a benchmark JSONL file; 2% of
rows get a 13-word window of a benchmark item planted in the prompt, the completion or the raw fields. Both
methods read the same file, use the same normalization (NFKC, lowercase, ``\\w+`` words) and flag a row when
any 13-gram of its rendered text or raw fields is a benchmark 13-gram.

    python benchmarks/bench_decontam.py            # 100k rows, 5k benchmark items
    python benchmarks/bench_decontam.py --quick    # 5k rows
"""

from __future__ import annotations

import argparse
import json
import re
import tempfile
import time
import unicodedata
from pathlib import Path

import numpy as np
import polars as pl
from bench_dedup import PeakRSS

from cardtune.curate.filters.decontaminate import Benchmark, Decontaminate, decontaminate

N = 13
_WORD = re.compile(r"\w+")


def grams(text: str) -> set[tuple[str, ...]]:
    w = _WORD.findall(unicodedata.normalize("NFKC", text).lower())
    return {tuple(w[i : i + N]) for i in range(len(w) - N + 1)}


def python_set(df: pl.DataFrame, bench: Path) -> set[str]:
    known: set[tuple[str, ...]] = set()
    with bench.open() as fh:
        for line in fh:
            known |= grams(json.loads(line)["question"])
    flagged = set()
    for ref, p, c, f in df.select("source_ref", "_prompt_text", "_completion_text", "_fields_text").iter_rows():
        if not known.isdisjoint(grams(p + "\n" + c)) or not known.isdisjoint(grams(f)):
            flagged.add(ref)
    return flagged


def main(argv: list[str] | None = None) -> None:
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    ap.add_argument("--n", type=int, default=100_000)
    ap.add_argument("--quick", action="store_true")
    args = ap.parse_args(argv)
    n = 5_000 if args.quick else args.n
    rng = np.random.default_rng(0)
    vocab = np.array([f"w{i}" for i in range(20_000)] + ["Café", "naïve", "ＡＢＣ"])

    def doc(k: int) -> list[str]:
        return [str(w) for w in vocab[(rng.zipf(1.3, size=k) - 1) % len(vocab)]]

    items = [" ".join(doc(int(rng.integers(20, 80)))) for _ in range(max(50, n // 20))]
    prompts = [" ".join(doc(int(rng.integers(30, 120)))) for _ in range(n)]
    completions = [" ".join(doc(int(rng.integers(5, 40)))) for _ in range(n)]
    fields = [" ".join(doc(int(rng.integers(10, 60)))) for _ in range(n)]
    for r in rng.choice(n, size=n // 50, replace=False).tolist():
        words = items[int(rng.integers(len(items)))].split()
        s = int(rng.integers(0, len(words) - N + 1))
        target = [prompts, completions, fields][r % 3]
        target[r] = target[r] + " " + " ".join(words[s : s + N]).upper() + ". " + "tail"
    df = pl.DataFrame(
        {
            "task": "t",
            "template_id": "tpl",
            "source_ref": [f"t:{i}" for i in range(n)],
            "_prompt_text": prompts,
            "_completion_text": completions,
            "_fields_text": fields,
        }
    )
    with tempfile.TemporaryDirectory() as tmp:
        bench = Path(tmp) / "bench.jsonl"
        bench.write_text("".join(json.dumps({"question": q}) + "\n" for q in items))
        spec = Decontaminate(ngram=N, benchmarks=[Benchmark(name="b", path=str(bench), fields=["question"])])
        with PeakRSS() as mem:
            t0 = time.perf_counter()
            res = decontaminate(df, spec, Path(tmp), {})
            ours = time.perf_counter() - t0
        t0 = time.perf_counter()
        expected = python_set(df, bench)
        base = time.perf_counter() - t0
    flagged = set(res.rejects.get_column("source_ref").to_list())
    print(f"rows: {n:,}, benchmark items: {len(items):,}, planted: {n // 50:,}")
    print(
        f"  cardtune: {n / ours:>10,.0f} rows/s  {ours:6.2f} s  flagged {len(flagged):,}  peak RSS +{mem.mib:,.0f} MiB"
    )
    print(f"python set: {n / base:>10,.0f} rows/s  {base:6.2f} s  flagged {len(expected):,}")
    assert flagged == expected, f"flags differ: {len(flagged ^ expected)} rows"
    print(f"RATIO decontamination vs python set: {base / ours:.1f}x (target >= 3x); identical flags: True")


if __name__ == "__main__":
    main()
