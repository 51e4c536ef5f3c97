"""``make demo``: build ``data_cards/demo.yaml`` and tune the embedded tiny model on it, on CPU, in about a minute.

Prints plainly what it did and where the dataset version and the run went. The evaluation scores the untrained
model (the same seeded initialization) on the same rows as the tuned one and ends with a table of what the
minute of training bought: per measure the untrained score, the tuned score and the gain — on the seen tasks,
on phrasings of seen tasks that training never used, and on the held-out task.
"""

from __future__ import annotations

import contextlib
import sys
import time
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from cardtune._console import console, esc, print_issues
from cardtune.curate.errors import UserInputError

CARD = Path("data_cards/demo.yaml")
LIMIT = 60  # eval rows per task (and per unseen template): the demo card's eval split holds about that many
THREADS = 1  # the 64-wide model's ops are too small to share: one thread trains 2-8x faster on a busy CPU
SECTIONS = (  # (section of eval.json, the aggregate's key, label)
    ("tasks", "seen", "seen tasks"),
    ("unseen_templates", "unseen_templates", "unseen phrasings of seen tasks"),
    ("tasks", "held_out", "held-out task"),
)


@contextlib.contextmanager
def cpu_threads(n: int = THREADS) -> Iterator[None]:
    """Run the block with at most ``n`` torch threads when no GPU is visible (the embedded model's setting)."""
    import torch

    before = torch.get_num_threads()
    if not torch.cuda.is_available():
        torch.set_num_threads(min(before, n))
    try:
        yield
    finally:
        torch.set_num_threads(before)


def gains(report: dict[str, Any], before: dict[str, Any]) -> list[tuple[str, float, float]]:
    """(measure, untrained, tuned) per row of the demo's summary: per section its macro accuracy (multiple
    choice, the measure chance is plain in), each task's accuracy under it, and the macro exact match."""
    out: list[tuple[str, float, float]] = []
    for section, key, what in SECTIONS:
        after_agg, before_agg = report["aggregate"].get(key, {}), before["aggregate"].get(key, {})
        if not after_agg.get("tasks") or "accuracy" not in after_agg or "accuracy" not in before_agg:
            continue
        names = [
            task
            for task, m in report.get(section, {}).items()
            if section != "tasks" or bool(m["held_out"]) == (key == "held_out")
        ]
        label = f"{what} ({names[0]})" if len(names) == 1 else what
        macro = "" if len(names) == 1 else " (macro)"
        out.append((f"{label}: accuracy{macro}", float(before_agg["accuracy"]), float(after_agg["accuracy"])))
        for task in names if len(names) > 1 else []:
            m, b = report[section][task], before.get(section, {}).get(task, {})
            if "accuracy" in m and "accuracy" in b:
                out.append((f"  {task}", float(b["accuracy"]), float(m["accuracy"])))
        if "exact_match" in after_agg and "exact_match" in before_agg:
            em_b, em_a = float(before_agg["exact_match"]), float(after_agg["exact_match"])
            out.append((f"{label}: exact match{macro}", em_b, em_a))
    return out


def gain_table(report: dict[str, Any], before: dict[str, Any]) -> Any:
    """A rich table: measure, untrained, tuned, gain."""
    from rich.table import Table

    t = Table(title="what the training bought: the untrained model beside the tuned one, on the same rows")
    t.add_column("measure")
    for col in ("untrained", "tuned", "gain"):
        t.add_column(col, justify="right")
    for measure, b, a in gains(report, before):
        style = "bold" if not measure.startswith(" ") else ""
        colour = "green" if a - b > 0.05 else "red" if a - b < -0.05 else "yellow"
        t.add_row(measure, f"{b:.3f}", f"{a:.3f}", f"[{colour}]{a - b:+.3f}[/]", style=style)
    return t


def main(card_path: Path = CARD) -> int:
    """Run the demo; returns the process exit code."""
    from cardtune.curate.card.validate import validate_card
    from cardtune.curate.pipeline import build
    from cardtune.curate.reporting.tables import counts_table, mixture_table

    start = time.perf_counter()
    try:
        console.rule("[bold]1. validate the card")
        card = validate_card(card_path)
        console.print(f"{esc(card_path)}: {esc(card.name)}, {card.mode} mode, {len(card.tasks)} tasks")
        console.rule("[bold]2. build the dataset version")
        result = build(card, progress=True)
        console.print(mixture_table(result.manifest))
        console.print(counts_table(result.manifest))
        state = "reused (cache hit)" if result.cached else "built"
        console.print(f"dataset version {state}: [bold cyan]{esc(result.version_dir)}[/]")
        console.rule("[bold]3. tune the embedded default model (CPU)")
        from cardtune.train.evaluate import eval_table, evaluate
        from cardtune.train.run import tune
        from cardtune.train.schema import DEFAULT_MODEL

        with cpu_threads() if card.train.model == DEFAULT_MODEL else contextlib.nullcontext():
            run = tune(card, version_dir=result.version_dir)
            console.rule("[bold]4. evaluate: the tuned model beside the untrained one")
            report = evaluate(run.run_dir, split="all", limit=LIMIT)
            before = evaluate(run.run_dir, split="all", limit=LIMIT, untrained=True)
        console.print(eval_table(report, untrained=before))
        console.print(gain_table(report, before))
    except UserInputError as exc:
        print_issues(exc)
        return 1
    console.rule("[bold]done")
    console.print(f"dataset version: {esc(result.version_dir)}")
    console.print(f"run:             {esc(run.run_dir)}")
    console.print(
        f"took {time.perf_counter() - start:.0f} s. Next: `cardtune inspect {esc(result.version_dir)}`, "
        f"`cardtune report {esc(result.version_dir)}`, `cardtune eval {esc(run.run_dir)} --untrained`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
