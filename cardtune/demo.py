"""``make demo``: build ``data_cards/demo.yaml`` and tune the embedded tiny model on it, on CPU, in minutes.

Prints plainly what it did and where the dataset version and the run went. The evaluation shows the untrained model
(the same seeded initialization) beside the tuned one, so what the few minutes of training bought is visible.
"""

from __future__ import annotations

import sys
import time
from pathlib import Path

from cardtune._console import console, esc, print_issues
from cardtune.curate.errors import UserInputError

CARD = Path("data_cards/demo.yaml")
LIMIT = 24  # eval rows per task


def _say_gain(report: dict[str, object], before: dict[str, object]) -> None:
    """One line per metric: the untrained model's seen-task macro → the tuned model's."""
    after_seen = report["aggregate"]["seen"]  # type: ignore[index]
    before_seen = before["aggregate"]["seen"]  # type: ignore[index]
    for key, label in (("exact_match", "exact match"), ("rougeL", "ROUGE-L"), ("accuracy", "accuracy")):
        if key in after_seen and key in before_seen:
            a, b = float(after_seen[key]), float(before_seen[key])
            console.print(f"seen tasks, {label} (macro): untrained {b:.3f} → tuned {a:.3f} ({a - b:+.3f})")


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
        from cardtune.train.run import tune

        run = tune(card, version_dir=result.version_dir)
        console.rule("[bold]4. evaluate: the tuned model beside the untrained one (seen vs held-out tasks)")
        from cardtune.train.evaluate import eval_table, evaluate

        report = evaluate(run.run_dir, split="all", limit=LIMIT)
        before = evaluate(run.run_dir, split="all", limit=LIMIT, untrained=True)
        console.print(eval_table(report, untrained=before))
        _say_gain(report, before)
    except UserInputError as exc:
        print_issues(exc)
        return 1
    console.rule("[bold]done")
    console.print(f"dataset version: {esc(result.version_dir)}")
    console.print(f"run:             {esc(run.run_dir)}")
    console.print(
        f"took {time.perf_counter() - start:.0f} s. Next: `cardtune inspect {esc(result.version_dir)}`, "
        f"`cardtune report {esc(result.version_dir)}`, `cardtune eval {esc(run.run_dir)}`"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
