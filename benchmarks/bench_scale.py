"""Scale benchmark: peak memory and throughput of a build as the data grows, and with more local workers.

Generates instruction rows (~150 words each; 1 in 10 an exact copy, 1 in 10 a near copy) as Parquet shards,
then builds a card with every filter on (quality, exact + near dedup, decontamination) in a separate process,
sampling the summed RSS of the build's process tree (driver + workers). Prints rows/s and peak RSS per size,
the throughput ratio of the largest to the smallest size, and local 2 workers vs 1 worker on the smallest.
Targets (issue 12): peak RSS <= 4 GiB and flat across sizes; throughput at the largest size >= 0.8x the
smallest; 2 workers >= 1.6x 1 worker (needs 2 free cores).

    python benchmarks/bench_scale.py [--rows 1M,3M,10M] [--workers 2] [--ray] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import numpy as np
import polars as pl
import psutil

VOCAB = np.array(
    [
        "the",
        "a",
        "of",
        "to",
        "and",
        "in",
        "is",
        "was",
        "for",
        "on",
        "that",
        "with",
        "as",
        "by",
        "at",
        "from",
        "it",
        "an",
        "be",
        "this",
        "are",
        "or",
        "his",
        "her",
        "they",
        "which",
        "one",
        "river",
        "market",
        "signal",
        "paper",
        "model",
        "data",
        "city",
        "winter",
        "music",
        "garden",
        "engine",
        "story",
        "light",
        "number",
        "table",
        "street",
        "doctor",
        "animal",
        "ocean",
        "forest",
        "window",
        "letter",
        "teacher",
        "language",
        "planet",
        "machine",
        "kitchen",
        "mountain",
        "history",
    ]
)
SHARD_ROWS = 250_000
CARD = """\
name: scale
mode: instruction
templates_dir: tpl
tasks:
  - {{name: qa, source: {{path: shards/*.parquet}}, templates: [qa/ask]}}
mixture: {{strategy: examples_proportional, seed: 1}}
filters:
  quality: {{min_chars: 20}}
  dedup: {{exact: {{scope: both}}, near: {{threshold: 0.8}}}}
  decontaminate: {{ngram: 13, benchmarks: [{{name: bench, path: bench.jsonl, fields: [q]}}]}}
split: {{eval_fraction: 0.01, seed: 1}}
output: {{dir: {out}}}
"""
TEMPLATE = """\
family: qa
templates:
  - id: qa/ask
    inputs: [question, answer]
    prompt: "Answer the question.\\n\\n{{ question }}"
    completion: "{{ answer }}"
"""


def parse_rows(text: str) -> int:
    text = text.strip().upper()
    scale = {"K": 1_000, "M": 1_000_000}.get(text[-1:], 1)
    return int(float(text.rstrip("KM")) * scale)


def generate(root: Path, rows: int, seed: int = 0) -> None:
    """Parquet shards of ``rows`` rows: question ~140 words, answer ~10 words; exact and near copies planted."""
    rng = np.random.default_rng(seed)
    (root / "shards").mkdir(parents=True)
    (root / "tpl" / "qa").mkdir(parents=True)
    (root / "tpl" / "qa" / "ask.yaml").write_text(TEMPLATE, encoding="utf-8")
    first: list[str] = []
    for shard, lo in enumerate(range(0, rows, SHARD_ROWS)):
        n = min(SHARD_ROWS, rows - lo)
        words = VOCAB[rng.integers(0, len(VOCAB), (n, 150))]
        questions = [" ".join(w[:140]) for w in words]
        answers = [" ".join(w[140:]) for w in words]
        for i in range(0, n, 10):  # an exact copy of the previous row
            if i + 1 < n:
                questions[i + 1], answers[i + 1] = questions[i], answers[i]
        for i in range(5, n, 10):  # a near copy: 3 words changed
            if i + 1 < n:
                q = questions[i].split()
                for j in rng.integers(0, len(q), 3):
                    q[j] = "changed"
                questions[i + 1] = " ".join(q)
        first = first or questions[:5]
        pl.DataFrame({"question": questions, "answer": answers}).write_parquet(
            root / "shards" / f"part-{shard:04d}.parquet", row_group_size=50_000
        )
    bench = [{"q": " ".join(q.split()[:20])} for q in first]
    (root / "bench.jsonl").write_text("".join(json.dumps(b) + "\n" for b in bench), encoding="utf-8")


def build(root: Path, workers: int, executor: str = "local") -> tuple[float, float]:
    """(seconds, peak RSS GiB of the build's process tree) of one build in a fresh process."""
    out = root / f"out-{executor}-{workers}"
    (root / "card.yaml").write_text(CARD.format(out=out), encoding="utf-8")
    cmd = [sys.executable, "-m", "cardtune", "build", str(root / "card.yaml"), "--quiet", "--force"]
    cmd += ["--executor", "ray"] if executor == "ray" else ["--workers", str(workers)]
    start = time.perf_counter()
    proc = subprocess.Popen(cmd, cwd=root, stdout=subprocess.DEVNULL)
    peak = 0
    tree = psutil.Process(proc.pid)
    while proc.poll() is None:
        try:
            rss = tree.memory_info().rss + sum(c.memory_info().rss for c in tree.children(recursive=True))
        except psutil.Error:
            rss = 0
        peak = max(peak, rss)
        time.sleep(0.1)
    seconds = time.perf_counter() - start
    if proc.returncode:
        raise SystemExit(f"build failed ({proc.returncode})")
    shutil.rmtree(out, ignore_errors=True)
    return seconds, peak / 2**30


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", default="1M,3M,10M", help="comma-separated sizes, e.g. 200k,1M")
    parser.add_argument("--workers", type=int, default=2, help="workers for the scaling runs (and the 2-vs-1 ratio)")
    parser.add_argument("--keep", type=Path, help="generate under this folder and keep it")
    parser.add_argument(
        "--ray", action="store_true", help="also build the smallest size on a local Ray (cardtune[ray])"
    )
    args = parser.parse_args()
    sizes = [parse_rows(s) for s in args.rows.split(",")]
    base = args.keep or Path(tempfile.mkdtemp(prefix="cardtune-scale-"))
    results: dict[int, tuple[float, float]] = {}
    print(f"{'rows':>12} {'workers':>7} {'seconds':>9} {'rows/s':>10} {'peak RSS GiB':>13}")
    for n in sizes:
        root = base / f"rows-{n}"
        if not (root / "shards").exists():
            generate(root, n)
        seconds, peak = build(root, args.workers)
        results[n] = (n / seconds, peak)
        print(f"{n:>12,} {args.workers:>7} {seconds:>9.1f} {n / seconds:>10,.0f} {peak:>13.2f}")
    small, large = sizes[0], sizes[-1]
    seconds_one, peak_one = build(base / f"rows-{small}", 1)
    print(f"{small:>12,} {1:>7} {seconds_one:>9.1f} {small / seconds_one:>10,.0f} {peak_one:>13.2f}")
    if args.ray:
        seconds_ray, peak_ray = build(base / f"rows-{small}", 0, "ray")
        print(f"{small:>12,} {'ray':>7} {seconds_ray:>9.1f} {small / seconds_ray:>10,.0f} {peak_ray:>13.2f}")
    print()
    print(f"throughput {large:,} / {small:,} rows: {results[large][0] / results[small][0]:.2f}x (target >= 0.8x)")
    print(f"peak RSS: max {max(p for _, p in results.values()):.2f} GiB (target <= 4 GiB, flat)")
    print(
        f"local {args.workers} workers vs 1 worker at {small:,} rows: {results[small][0] / (small / seconds_one):.2f}x"
    )
    if not args.keep:
        shutil.rmtree(base, ignore_errors=True)


if __name__ == "__main__":
    main()
