"""End-to-end build benchmark: a generated 10-task card of N rows (default 1M), built twice in separate processes.

Reports rows/s and peak RSS for the build without near-dedup and with every filter on, plus per-step timings
from the manifest. Targets on a 2-core machine (issue 4): >= 50k rows/s without near-dedup, >= 10k rows/s
with all filters, peak RSS <= 4 GB.

    python benchmarks/bench_build.py [--rows 1000000] [--keep DIR]
"""

from __future__ import annotations

import argparse
import json
import random
import resource
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

import polars as pl

FAMILIES = [
    "sentiment", "topic", "nli", "paraphrase", "closed_book_qa",
    "math", "summarization", "translation", "grammar", "extractive_qa",
]  # fmt: skip

WORDS = (  # noqa: SIM905 (a word list is easier to read as one string)
    "the a of to and in is was for on that with as by at from it an be this are or his her they which one "
    "river market signal paper model data city winter music garden engine story light number table street "
    "doctor animal ocean forest window letter teacher language planet machine kitchen mountain history"
).split()


def _inputs_of(family: str) -> dict[str, object]:
    """The input names a family's templates declare (read from the shipped library)."""
    from cardtune.curate.templating.library import TemplateLibrary

    lib = TemplateLibrary.load()
    names: dict[str, object] = {}
    for t in lib.match(f"{family}/*"):
        for name in t.inputs:
            names.setdefault(name, "str")
    for t in lib.match(f"{family}/*"):
        choices = t.static_choices()
        if choices and "label" in names:
            names["label"] = len(choices)
    return names


def _sentence(rng: random.Random, lo: int, hi: int) -> str:
    return " ".join(rng.choice(WORDS) for _ in range(rng.randint(lo, hi))).capitalize() + "."


def generate(root: Path, rows: int, seed: int = 0) -> Path:
    """Write 10 parquet sources and a card that uses every filter except near dedup (added by a flag)."""
    rng = random.Random(seed)
    per_task = rows // len(FAMILIES)
    tasks = []
    for name in FAMILIES:
        spec = _inputs_of(name)
        data: dict[str, list[object]] = {}
        for col, kind in spec.items():
            if isinstance(kind, int) and col == "label":
                data[col] = [rng.randrange(kind) for _ in range(per_task)]
            else:
                data[col] = [_sentence(rng, 6, 30) for _ in range(per_task)]
        path = root / f"{name}.parquet"
        pl.DataFrame(data).write_parquet(path)
        tasks.append(f"  - name: {name}\n    source: {{path: {path.name}}}\n    templates: ['{name}/*']\n")
    (root / "bench.jsonl").write_text(
        json.dumps({"q": " ".join(rng.choice(WORDS) for _ in range(40))}) + "\n", encoding="utf-8"
    )
    card = root / "card.yaml"
    card.write_text(
        "name: bench\nmode: instruction\ntasks:\n"
        + "".join(tasks)
        + "mixture: {strategy: examples_proportional, seed: 1}\n"
        + "filters:\n  quality: {min_chars: 5, max_repetition: 0.9}\n  dedup: {exact: {scope: both}}\n"
        + "  decontaminate: {benchmarks: [{name: b, path: bench.jsonl, fields: [q]}]}\n"
        + f"output: {{dir: {root / 'out'}}}\n",
        encoding="utf-8",
    )
    return card


def run_build(card: Path) -> dict[str, object]:
    """Build in a fresh process; return rows/s, wall time, peak RSS and step timings."""
    code = (
        "import json, resource, sys, time\n"
        "from cardtune.curate.pipeline import build\n"
        "t = time.perf_counter()\n"
        f"r = build({str(card)!r}, force=True)\n"
        "wall = time.perf_counter() - t\n"
        "rss = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024\n"
        "print(json.dumps({'wall': wall, 'rss_mb': rss, 'source_rows': sum(r.manifest.counts.source.values()),"
        " 'timings': {t.step: t.seconds for t in r.manifest.timings}}))\n"
    )
    out = subprocess.run([sys.executable, "-c", code], check=True, capture_output=True, text=True)
    return json.loads(out.stdout.strip().splitlines()[-1])


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    parser.add_argument("--rows", type=int, default=1_000_000)
    parser.add_argument("--keep", type=Path, default=None, help="Keep the generated data in this folder.")
    args = parser.parse_args()
    root = args.keep or Path(tempfile.mkdtemp(prefix="cardtune-bench-"))
    root.mkdir(parents=True, exist_ok=True)
    t0 = time.perf_counter()
    card = generate(root, args.rows)
    print(f"generated {args.rows:,} rows in 10 tasks in {time.perf_counter() - t0:.1f} s ({root})")
    results = {}
    results["without near-dedup"] = run_build(card)
    text = card.read_text(encoding="utf-8").replace(
        "dedup: {exact: {scope: both}}", "dedup: {exact: {scope: both}, near: {threshold: 0.8, scope: both}}"
    )
    card.write_text(text, encoding="utf-8")
    results["all filters"] = run_build(card)
    targets = {"without near-dedup": 50_000, "all filters": 10_000}
    for name, r in results.items():
        rps = float(r["source_rows"]) / float(r["wall"])  # type: ignore[arg-type]
        steps = ", ".join(f"{k} {v:.1f}s" for k, v in r["timings"].items())  # type: ignore[union-attr]
        print(f"{name:>20}: {rps:>9,.0f} rows/s  wall {r['wall']:.1f} s  peak RSS {r['rss_mb']:,.0f} MiB  [{steps}]")
        print(
            f"RATIO {name}: {rps / targets[name]:.2f}x of the {targets[name]:,} rows/s target; "
            f"peak RSS {float(r['rss_mb']) / 4096:.2f}x of the 4 GiB bound"  # type: ignore[arg-type]
        )
    print(f"(this process: {resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024:,.0f} MiB)")
    if args.keep is None:
        shutil.rmtree(root, ignore_errors=True)


if __name__ == "__main__":
    main()
