"""Benchmark: ``render_task`` through shipped library templates vs a plain Jinja2 loop, same rows, same run.

The baseline is the obvious loop a user would write: a plain ``jinja2.Environment``, the same prompt and
completion sources, ``template.render(**row)`` for every row of ``df.iter_rows(named=True)``, results
collected in lists. cardtune additionally sandboxes, picks the template per row by a stable hash, checks
inputs, and builds the row-contract frame (conversational prompt/completion columns). Target: ratio >= 0.95
(baseline time / cardtune time; higher is better for cardtune).

Two templates are measured on the same rows: a simple one, which takes the vectorized fast path
(``fastrender.py``), and one that needs the per-row Jinja fallback (its ``options`` filter reads the row hash).
Each is also timed with the fast path forced off (``render_task(..., fast=False)``).

    .venv/bin/python benchmarks/bench_render.py [--rows 100000] [--template nli/premise-hypothesis-labels]
        [--fallback-template nli/does-it-follow]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import jinja2
import polars as pl

from cardtune.curate.card.schema import Source, Task
from cardtune.curate.templating import fastrender
from cardtune.curate.templating.jinja_env import ENV
from cardtune.curate.templating.library import Template, TemplateLibrary
from cardtune.curate.templating.render import render_task

WORDS = [
    *("the", "a", "model", "river", "city", "quickly", "green", "reads", "data", "small", "bright", "under"),
    *("over", "paper", "coffee", "window", "student", "engine", "quiet", "forest", "market", "music"),
    *("winter", "travels", "builds", "paints", "story", "letter", "garden"),
]


def make_rows(n: int, seed: int = 0) -> pl.DataFrame:
    """``n`` rows with NLI-shaped fields (premise, hypothesis, label) and a ``source_ref``."""
    rng = random.Random(seed)
    premise = [" ".join(rng.choices(WORDS, k=rng.randint(12, 40))) + "." for _ in range(n)]
    hypothesis = [" ".join(rng.choices(WORDS, k=rng.randint(4, 12))) + "." for _ in range(n)]
    label = [rng.randint(0, 2) for _ in range(n)]
    refs = [f"bench:{i}" for i in range(n)]
    return pl.DataFrame({"premise": premise, "hypothesis": hypothesis, "label": label, "source_ref": refs})


def plain_loop(template: Template, rows: pl.DataFrame) -> Callable[[], int]:
    """The baseline: plain Environment, render(**row) per row for prompt and completion."""
    env = jinja2.Environment()
    env.filters.update(ENV.filters)  # cardtune's filters (``options``, ``letter``), so library templates compile
    prompt = env.from_string(template.turns[-1][1].source)
    completion = env.from_string(template.completion.source)
    system = env.from_string(template.spec.system) if template.spec.system else None
    choices = template.static_choices()

    def run() -> int:
        prompts, completions = [], []
        for row in rows.iter_rows(named=True):
            row["answer_choices"] = choices
            p = prompt.render(**row)
            if system is not None:
                p = system.render(**row) + "\n\n" + p
            prompts.append(p)
            completions.append(completion.render(**row))
        return len(prompts) + len(completions)

    return run


def best_of(fn: Callable[[], object], repeat: int) -> float:
    times = []
    for _ in range(repeat):
        gc.collect()
        start = time.perf_counter()
        fn()
        times.append(time.perf_counter() - start)
    return min(times)


def bench_template(template: Template, rows: pl.DataFrame, repeat: int) -> None:
    """Print plain loop vs cardtune (fast path on, and forced off) for one template."""
    task = Task(name="bench", source=Source(path="unused.jsonl"), templates=[template.id])
    nulls = {n: False for n in template.inputs}
    path = "fast path" if fastrender.plan(template, rows.schema, nulls, False) is not None else "Jinja fallback"

    def ours(fast: bool) -> Callable[[], int]:
        return lambda: render_task(rows, task, [template], "instruction", seed=1234, fast=fast).height

    baseline = plain_loop(template, rows)
    ours(True)()  # warm up (first-call compile caches, polars thread pool)
    baseline()
    t_plain = best_of(baseline, repeat)
    t_ours = best_of(ours(True), repeat)
    t_slow = best_of(ours(False), repeat)
    n = rows.height
    print(f"rows={n} template={template.id} ({path})")
    print(f"  plain jinja2 loop       : {t_plain:7.3f} s  ({n / t_plain:,.0f} rows/s)")
    print(f"  cardtune render         : {t_ours:7.3f} s  ({n / t_ours:,.0f} rows/s)")
    print(f"  cardtune render, fast=0 : {t_slow:7.3f} s  ({n / t_slow:,.0f} rows/s)")
    print(f"  ratio (plain/cardtune, target >= 0.95): {t_plain / t_ours:.2f}x")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--template", default="nli/premise-hypothesis-labels", help="a simple (fast-path) template")
    parser.add_argument("--fallback-template", default="nli/does-it-follow", help="a template that needs Jinja")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    library = TemplateLibrary.load()
    rows = make_rows(args.rows)
    for tid in (args.template, args.fallback_template):
        bench_template(library.get(tid), rows, args.repeat)


if __name__ == "__main__":
    main()
