"""``make compare``: what instruction tuning buys, measured — build, tune, evaluate and compare the cards of
``data_cards/experiments/`` on the embedded model, on CPU.

Setups (one card each, over one generated task suite): instruction tuning (all trained tasks, eight phrasings
each), single-task fine-tuning (the target task, one phrasing), multi-task fine-tuning (every trained task, one
phrasing each), and LoRA / prompt-tuning task modules (the target task, one phrasing) on the instruction-tuned
base. The headline setups run with several seeds (``train.seed``; the data and its split are fixed by the cards'
own seeds); cells are mean ± sample standard deviation. Every run is evaluated on the same rows: the target task
on its training phrasing(s), the target task on the two phrasings no run trains on, and the two held-out tasks.

Each run's card is written to ``OUT/cards/`` — the experiment card with ``train.seed`` (and ``train.base``) set
and its paths made absolute — so the ``card.yaml`` in each run is exactly what it trained with.

    python -m cardtune.experiment            # the full experiment (docs/evidence.md)
    python -m cardtune.experiment --quick    # a few steps per run: checks the whole path in under a minute
"""

from __future__ import annotations

import argparse
import contextlib
import json
import statistics
import sys
import time
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import yaml

from cardtune._console import console, esc, print_issues
from cardtune.curate.errors import UserInputError
from cardtune.demo import cpu_threads

CARDS = Path("data_cards/experiments")
TARGET = "size"  # the task the fine-tuning setups train on


@dataclass(frozen=True)
class Setup:
    """One row of the table: a card, how many seeds, whether it trains on the instruction-tuned base."""

    label: str
    card: str
    seeds: int
    on_base: bool = False


SETUPS = (
    Setup("instruction tuning", "instruction.yaml", 3),
    Setup("single-task fine-tuning", "finetune-single.yaml", 3),
    Setup("multi-task fine-tuning", "finetune-multi.yaml", 1),
    Setup("LoRA module on the IT base", "lora.yaml", 1, on_base=True),
    Setup("prompt tuning on the IT base", "prompt-tuning.yaml", 1, on_base=True),
)
COLUMNS = {  # cell key -> column header
    "target_train": f"{TARGET}: training phrasing(s)",
    "target_unseen": f"{TARGET}: unseen phrasings",
    "target_sd": f"{TARGET}: sd across phrasings",
    "unseen_tasks": "unseen tasks",
    "trained_tasks": "all trained tasks",
}


@dataclass(frozen=True)
class Override:
    """What the command line changes in every card: the model (a hub id or local path) and the full-weight rate."""

    model: str | None = None
    learning_rate: float | None = None


def derived_card(src: Path, out: Path, seed: int, base: Path | None, override: Override = Override()) -> Path:
    """The experiment card with ``train.seed`` (and ``train.base``) set and every path absolute, under ``out``."""
    data = yaml.safe_load(src.read_text(encoding="utf-8"))
    here = src.resolve().parent
    data["train"] = {**data.get("train", {}), "seed": seed}
    if override.model is not None:
        data["train"]["model"] = override.model
    if override.learning_rate is not None and data["train"].get("method") == "full":
        data["train"]["sft"] = {**data["train"].get("sft", {}), "learning_rate": override.learning_rate}
    if base is not None:
        data["train"]["base"] = str(base.resolve())
    if data.get("templates_dir"):
        data["templates_dir"] = str(here / data["templates_dir"])
    for task in data["tasks"]:
        if task["source"].get("path"):
            task["source"]["path"] = str(here / task["source"]["path"])
    data["output"] = {"dir": str((out / "datasets").resolve())}
    path = out / "cards" / f"{src.stem}-seed{seed}.yaml"
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(yaml.safe_dump(data, sort_keys=False), encoding="utf-8")
    return path


def cells(result: dict[str, Any]) -> dict[str, float | None]:
    """The table's metric cells of one evaluation (multiple-choice accuracy over the six words: chance 1/6)."""

    def acc(m: dict[str, Any] | None) -> float | None:
        return float(m["accuracy"]) if m and "accuracy" in m else None

    rob = result.get("robustness", {}).get(TARGET)
    return {
        "target_train": acc(result["tasks"].get(TARGET)),
        "target_unseen": acc(result.get("unseen_templates", {}).get(TARGET)),
        "target_sd": float(rob["std"]) if rob else None,
        "unseen_tasks": acc(result["aggregate"].get("held_out")),
        "trained_tasks": acc(result["aggregate"].get("seen")),
    }


def summarize(values: list[float | None]) -> dict[str, Any]:
    got = [v for v in values if v is not None]
    if not got:
        return {"mean": None, "sd": None, "values": values}
    return {"mean": statistics.fmean(got), "sd": statistics.stdev(got) if len(got) > 1 else None, "values": values}


def run(
    out: Path, cards: Path, *, quick: bool = False, seeds: int | None = None, override: Override = Override()
) -> dict[str, Any]:
    """Tune and evaluate every setup; return (and write to ``out/compare.json``) the measured table."""
    started = time.perf_counter()
    with cpu_threads() if override.model is None else contextlib.nullcontext():  # the embedded model: 1 thread
        report = _run(out, cards, quick, seeds, override)
    report["wall_s"] = round(time.perf_counter() - started, 1)
    (out / "compare.json").write_text(json.dumps(report, indent=2) + "\n", encoding="utf-8")
    (out / "compare.md").write_text(markdown(report), encoding="utf-8")
    return report


def _run(out: Path, cards: Path, quick: bool, seeds: int | None, override: Override) -> dict[str, Any]:
    from cardtune.train.evaluate import evaluate
    from cardtune.train.run import tune

    max_steps = 6 if quick else None
    limit = 3 if quick else 60
    rows: list[dict[str, Any]] = []
    run_dirs: dict[str, list[str]] = {}
    base: Path | None = None
    for setup in SETUPS:
        n = 1 if quick else seeds if seeds is not None else setup.seeds
        measured: list[dict[str, Any]] = []
        for seed in range(n):
            console.rule(f"[bold]{esc(setup.label)}[/] · seed {seed}")
            card = derived_card(cards / setup.card, out, seed, base if setup.on_base else None, override)
            result = tune(card, output=out / "runs", max_steps=max_steps, progress=not quick)
            assert result.info is not None
            evaluated = evaluate(result.run_dir, limit=limit)
            measured.append({"run": str(result.run_dir), "info": result.info, "cells": cells(evaluated)})
            if setup.card == "instruction.yaml" and seed == 0:
                base = result.run_dir
                link = out / "instruction-base"  # what the task-module cards' `train.base` names, for runs by hand
                if link.is_symlink() or link.exists():
                    link.unlink()
                link.symlink_to(base.resolve(), target_is_directory=True)
                untrained = evaluate(result.run_dir, limit=limit, untrained=True)
                rows.append(_row("untrained model (chance 0.17)", [{"cells": cells(untrained)}], None))
        rows.append(_row(setup.label, measured, measured[0]["info"]))
        run_dirs[setup.label] = [m["run"] for m in measured]
    report = {
        "target": TARGET,
        "quick": quick,
        "limit": limit,
        "max_steps": max_steps,
        "rows": rows,
        "runs": run_dirs,
        "model": override.model or "default",
    }
    return report


def _row(label: str, measured: list[dict[str, Any]], info: Any) -> dict[str, Any]:
    row: dict[str, Any] = {"setup": label, "seeds": len(measured)}
    for key in COLUMNS:
        row[key] = summarize([m["cells"][key] for m in measured])
    if info is not None:
        infos = [m["info"] for m in measured]
        row["trainable_params"] = info.params.trainable
        row["tokens_trained"] = info.tokens_trained
        row["train_s"] = summarize([i.timings.train_s for i in infos])
        row["total_s"] = summarize([i.timings.total_s for i in infos])
    return row


def _fmt(s: dict[str, Any], digits: int = 2) -> str:
    if s["mean"] is None:
        return "-"
    return f"{s['mean']:.{digits}f}" + (f" ± {s['sd']:.{digits}f}" if s["sd"] is not None else "")


def _count(n: Any) -> str:
    if not isinstance(n, int):
        return "-"
    return f"{n / 1e6:.2f}M" if n >= 1e6 else f"{n / 1e3:.1f}k" if n >= 1e3 else str(n)


def table_cells(row: dict[str, Any]) -> list[str]:
    metrics = [_fmt(row[k]) for k in COLUMNS]
    cost = [
        _count(row.get("trainable_params")),
        _count(row.get("tokens_trained")),
        _fmt(row["train_s"], 0) + " s" if "train_s" in row else "-",
    ]
    return [row["setup"], str(row["seeds"]), *metrics, *cost]


HEADERS = ["setup", "seeds", *COLUMNS.values(), "trainable params", "tokens trained", "train time"]


def markdown(report: dict[str, Any]) -> str:
    lines = ["| " + " | ".join(HEADERS) + " |", "|" + "---|" * 2 + "---:|" * (len(HEADERS) - 2)]
    lines += ["| " + " | ".join(table_cells(row)) + " |" for row in report["rows"]]
    return "\n".join(lines) + "\n"


def print_report(report: dict[str, Any]) -> None:
    from rich.table import Table

    t = Table(title=f"what instruction tuning buys (target task: {report['target']}; accuracy, chance 1/6)")
    for h in HEADERS:
        t.add_column(h, justify="left" if h == "setup" else "right")
    for row in report["rows"]:
        t.add_row(*table_cells(row))
    console.print(t)


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m cardtune.experiment", description=__doc__.split("\n\n")[0])
    parser.add_argument("--quick", action="store_true", help="a few steps per run, one seed (the test suite's)")
    parser.add_argument("--output", type=Path, default=Path("runs/compare"), help="runs, cards and the table")
    parser.add_argument("--cards", type=Path, default=CARDS, help="the experiment cards' folder")
    parser.add_argument("--seeds", type=int, default=None, help="seeds for every setup (default: 3 headline, 1)")
    parser.add_argument("--model", default=None, help="train.model of every card (default: the embedded model)")
    parser.add_argument("--learning-rate", type=float, default=None, help="learning rate of the full-weight cards")
    args = parser.parse_args(argv)
    override = Override(args.model, args.learning_rate)
    try:
        from cardtune.train.compare import collect, table

        report = run(args.output, args.cards, quick=args.quick, seeds=args.seeds, override=override)
        console.rule("[bold]cardtune compare (seed 0 of each setup)")
        console.print(table(collect([dirs[0] for dirs in report["runs"].values()])))
        print_report(report)
    except UserInputError as exc:
        print_issues(exc)
        return 1
    console.print(f"{esc(args.output / 'compare.md')} · {esc(args.output / 'compare.json')} · {report['wall_s']:.0f} s")
    return 0


if __name__ == "__main__":
    sys.exit(main())
