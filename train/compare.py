"""``cardtune compare RUN...``: runs side by side, per task and aggregated, with what each run cost.

One column per run; a row per task (its main metric: multiple-choice accuracy where the task has answer choices,
else exact match and ROUGE-L), the same task on templates it never trained on, the spread of its per-template
score (min–max and standard deviation: robustness to phrasing), the seen / unseen-template / held-out macro
averages, then method, trainable parameters, tokens trained and wall time, so a user sees on their own data what
instruction tuning and fine-tuning each buy. Reads ``run.json`` and ``eval.json``; a run without ``eval.json`` is
an error that says to run ``cardtune eval``.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.train import adapters
from cardtune.train.record import RunRecord


@dataclass(frozen=True)
class Compared:
    """One run to compare: its directory, its ``run.json`` and its ``eval.json``."""

    dir: Path
    info: RunRecord
    eval: dict[str, Any]


def collect(run_dirs: list[str | Path]) -> list[Compared]:
    """Each run with its record and evaluation; errors name the run that is missing or not evaluated."""
    out = []
    for given in run_dirs:
        run = Path(given)
        info = adapters.read_run(run)
        path = run / "eval.json"
        if not path.is_file():
            raise UserInputError(f"{run}: not evaluated yet; run `cardtune eval {run}` first")
        try:
            evaluated = json.loads(path.read_text(encoding="utf-8"))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{exc.lineno}: corrupt eval.json: {exc.msg}") from None
        out.append(Compared(run, info, evaluated))
    return out


def _main_metric(m: dict[str, Any]) -> str:
    if "accuracy" in m:
        return f"acc {m['accuracy']:.3f}"
    if "exact_match" in m:
        return f"EM {m['exact_match']:.3f} · RL {m.get('rougeL', 0.0):.3f}"
    return "-"


def _count(n: Any) -> str:
    if not isinstance(n, (int, float)):
        return "-"
    for unit, size in (("B", 1e9), ("M", 1e6), ("k", 1e3)):
        if n >= size:
            return f"{n / size:.1f}{unit}"
    return str(int(n))


def _spread(r: dict[str, Any] | None) -> str:
    if not r:
        return "-"
    return f"{r['min']:.2f}–{r['max']:.2f} sd {r['std']:.2f}"


AGGREGATES = (("seen", "seen"), ("unseen_templates", "unseen templates"), ("held_out", "held-out"))


def rows(runs: list[Compared]) -> list[tuple[str, list[str]]]:
    """The table body as (label, cells per run)."""
    tasks: dict[str, bool] = {}
    for r in runs:
        for name, m in r.eval["tasks"].items():
            tasks.setdefault(name, bool(m["held_out"]))
    body: list[tuple[str, list[str]]] = []
    for name, held in sorted(tasks.items(), key=lambda kv: (kv[1], kv[0])):
        label = f"{name} ({'held-out' if held else 'seen'})"
        body.append((label, [_main_metric(r.eval["tasks"].get(name, {})) for r in runs]))
        if any(name in r.eval.get("unseen_templates", {}) for r in runs):
            cells = [_main_metric(r.eval.get("unseen_templates", {}).get(name, {})) for r in runs]
            body.append((f"{name} (unseen templates)", cells))
        if any(name in r.eval.get("robustness", {}) for r in runs):
            body.append((f"{name} (template spread)", [_spread(r.eval.get("robustness", {}).get(name)) for r in runs]))
    for kind, text in AGGREGATES:
        if any(r.eval["aggregate"].get(kind, {}).get("tasks") for r in runs):
            body.append((f"{text} (macro)", [_main_metric(r.eval["aggregate"].get(kind, {})) for r in runs]))
    body.append(("method", [f"{r.info.mode} · {r.info.method}" for r in runs]))
    body.append(("model", [r.info.base_run or r.info.model for r in runs]))
    body.append(("trainable params", [_count(r.info.params.trainable) for r in runs]))
    body.append(("tokens trained", [_count(r.info.tokens_trained) for r in runs]))
    body.append(("train wall time", [f"{r.info.timings.train_s:.1f}s" for r in runs]))
    body.append(("dataset version", [r.info.dataset.version_id[:8] for r in runs]))
    return body


def table(runs: list[Compared]) -> Any:
    """A rich table comparing the runs."""
    from rich.table import Table

    legend = "  ".join(f"[{i}] {r.dir}" for i, r in enumerate(runs, 1))
    t = Table(title="compare", caption=legend)
    t.add_column("")
    for i, _ in enumerate(runs, 1):
        t.add_column(f"[{i}]", justify="right")
    body = rows(runs)
    n_tasks = sum(1 for label, _ in body if label.endswith(("(seen)", "(held-out)", "templates)", "spread)")))
    n_macro = sum(1 for label, _ in body if label.endswith("(macro)"))
    for i, (label, cells) in enumerate(body):
        t.add_row(label, *cells, end_section=i in (n_tasks - 1, n_tasks + n_macro - 1))
    return t
