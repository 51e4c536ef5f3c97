"""Benchmark: ``render_task`` through a shipped library template vs a plain Jinja2 loop, same rows, same run.

The baseline is the obvious loop a user would write: a plain ``jinja2.Environment``, the same prompt and
completion sources, ``template.render(**row)`` for every row of ``df.iter_rows(named=True)``, results
collected in lists. cardtune additionally sandboxes, picks the template per row by a stable hash, checks
inputs, and builds the row-contract frame (conversational prompt/completion columns). Target: ratio >= 0.95
(baseline time / cardtune time; higher is better for cardtune).

    .venv/bin/python benchmarks/bench_render.py [--rows 100000] [--template nli/premise-hypothesis-labels]
"""

from __future__ import annotations

import argparse
import gc
import random
import time
from collections.abc import Callable

import jinja2
import polars as pl

from cardtune.curate.card import Source, Task
from cardtune.curate.render import render_task
from cardtune.curate.templating import Template, TemplateLibrary

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


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0] if __doc__ else None)
    parser.add_argument("--rows", type=int, default=100_000)
    parser.add_argument("--template", default="nli/premise-hypothesis-labels")
    parser.add_argument("--repeat", type=int, default=3)
    args = parser.parse_args()
    template = TemplateLibrary.load().get(args.template)
    rows = make_rows(args.rows)
    task = Task(name="bench", source=Source(path="unused.jsonl"), templates=[template.id])

    def ours() -> int:
        return render_task(rows, task, [template], "instruction", seed=1234).height

    baseline = plain_loop(template, rows)
    ours()  # warm up both (first-call compile caches, polars thread pool)
    baseline()
    t_plain = best_of(baseline, args.repeat)
    t_ours = best_of(ours, args.repeat)
    print(f"rows={args.rows} template={args.template}")
    print(f"plain jinja2 loop : {t_plain:7.3f} s  ({args.rows / t_plain:,.0f} rows/s)")
    print(f"cardtune render   : {t_ours:7.3f} s  ({args.rows / t_ours:,.0f} rows/s)")
    print(f"ratio (plain/cardtune, target >= 0.95): {t_plain / t_ours:.2f}x")


if __name__ == "__main__":
    main()
