"""Training commands: ``tune``, ``eval``, ``compare`` and ``adapters merge``.

torch/transformers/TRL are imported inside the commands, so ``cardtune --help`` and ``cardtune validate`` stay
fast and work on the core install. Several GPUs or nodes: ``accelerate launch -m cardtune tune CARD`` (pass FSDP
or DeepSpeed settings through ``accelerate config`` or ``train.sft: {fsdp: ..., deepspeed: ...}``); every process
trains, only the main one writes the run directory.
"""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from cardtune._console import console, esc, fail, user_errors

adapters_app = typer.Typer(help="Task adapters: merge a run's adapter into full weights.", no_args_is_help=True)


def _need_train_extra() -> None:
    import importlib.util

    missing = [m for m in ("torch", "transformers", "trl", "peft") if importlib.util.find_spec(m) is None]
    if missing:
        raise fail(f"training needs {', '.join(missing)}: pip install 'cardtune[train]'")


def tune(
    card: Annotated[Path, typer.Argument(help="The data card to build (or reuse) and train on.")],
    output: Annotated[Path, typer.Option("--output", "-o", help="Parent folder of run directories.")] = Path("runs"),
    resume: Annotated[
        bool, typer.Option("--resume", help="Continue the newest interrupted run of this card from its checkpoint.")
    ] = False,
    max_steps: Annotated[
        int | None, typer.Option("--max-steps", min=1, help="Stop after N optimizer steps (overrides the card).")
    ] = None,
    version: Annotated[
        Path | None, typer.Option("--version-dir", help="Train on this version directory instead of building.")
    ] = None,
) -> None:
    """Build or reuse the card's dataset version, train with TRL's SFTTrainer, write runs/<card>-<version>-<time>/."""
    _need_train_extra()
    with user_errors():
        from cardtune.train.run import tune as run_tune

        result = run_tune(card, output=output, resume=resume, max_steps=max_steps, version_dir=version)
    if result.info is not None:
        info = result.info
        console.print(
            f"[green]done[/] {esc(result.run_dir)}  loss {info.metrics.get('train_loss', float('nan')):.4f}  "
            f"{info.global_step} steps in {info.timings.train_s:.1f}s"
        )
        console.print(f"next: cardtune eval {esc(result.run_dir)}")


def eval_cmd(
    run: Annotated[Path, typer.Argument(help="A run directory written by `cardtune tune`.")],
    split: Annotated[
        str,
        typer.Option(
            "--split", help="eval (seen tasks, seen templates), unseen_templates, heldout (unseen tasks), or all."
        ),
    ] = "all",
    limit: Annotated[
        int | None, typer.Option("--limit", min=1, help="At most N rows per task (per task and unseen template).")
    ] = None,
    untrained: Annotated[
        bool, typer.Option("--untrained", help="Also score the model the run started from, side by side.")
    ] = False,
) -> None:
    """Generate and score per task and template: exact match, ROUGE-L, multiple-choice accuracy, the spread
    across templates; seen tasks, unseen templates and held-out tasks side by side."""
    _need_train_extra()
    with user_errors():
        from cardtune.train.evaluate import eval_table, evaluate

        result = evaluate(run, split=split, limit=limit)
        before = evaluate(run, split=split, limit=limit, untrained=True) if untrained else None
    console.print(eval_table(result, untrained=before))
    from cardtune.train.turn_loss import turn_loss_table

    per_turn = turn_loss_table(result)
    if per_turn is not None:
        console.print(per_turn)
    console.print(f"wrote {esc(run / 'eval.json')}" + (f" and {esc(run / 'eval.untrained.json')}" if untrained else ""))


def compare(
    runs: Annotated[list[Path], typer.Argument(help="Run directories (each evaluated with `cardtune eval`).")],
) -> None:
    """One table: per task and seen/held-out, with trainable params, tokens trained and wall time."""
    with user_errors():
        from cardtune.train.compare import collect, table

        console.print(table(collect(list(runs))))


@adapters_app.command("merge")
def merge(
    run: Annotated[Path, typer.Argument(help="A LoRA run directory.")],
    output: Annotated[Path | None, typer.Option("--output", "-o", help="Where to write (default RUN/merged).")] = None,
) -> None:
    """Fold a run's LoRA adapter into its base and write one self-contained model directory."""
    _need_train_extra()
    with user_errors():
        from cardtune.train.adapters import merge as do_merge

        target = do_merge(run, output)
    console.print(f"wrote {esc(target)}")


def register(app: typer.Typer) -> None:
    """Attach the training commands to the main app."""
    app.command("tune")(tune)
    app.command("eval")(eval_cmd)
    app.command("compare")(compare)
    app.add_typer(adapters_app, name="adapters")
