"""Training runs in the studio: the list, loss curves, evaluation and comparison tables.

Reads what ``cardtune tune`` / ``eval`` write: ``run.json`` through ``cardtune.train.record.parse_run`` (torch-free),
``log_history.jsonl`` (the trainer's log: ``loss`` / ``eval_loss`` per ``step``) and ``eval.json``; the compare
table is ``cardtune.train.compare.rows`` (what ``cardtune compare`` prints). Nothing here imports torch.
"""

from __future__ import annotations

import json
import re
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.curate.reporting.svg import esc, nice_ticks, num
from cardtune.train.record import RunRecord

_COMPONENT = re.compile(r"^[A-Za-z0-9_.\-]+$")


@dataclass(frozen=True)
class Run:
    """A finished run: its directory and record, or why its record cannot be read."""

    dir: Path
    record: RunRecord | None
    problem: str = ""

    @property
    def name(self) -> str:
        return self.dir.name

    @property
    def evaluated(self) -> bool:
        return (self.dir / "eval.json").is_file()


def list_runs(root: Path) -> list[Run]:
    """Every run directory under ``root`` (newest first); unfinished (dot-prefixed) ones are left out."""
    from cardtune.train.record import parse_run

    out = []
    for d in sorted(root.iterdir(), reverse=True) if root.is_dir() else []:
        if not d.is_dir() or d.name.startswith(".") or not (d / "run.json").is_file():
            continue
        try:
            out.append(Run(d, parse_run(d / "run.json")))
        except (UserInputError, OSError) as exc:
            out.append(Run(d, None, str(exc).splitlines()[0]))
    return out


def run_dir(root: Path, name: str) -> Path:
    """``<root>/<name>`` for a run name (a bare folder name; paths are refused)."""
    if not _COMPONENT.match(name) or name.startswith("."):
        raise UserInputError(f"{name!r}: not a run name")
    d = root / name
    if not (d / "run.json").is_file():
        raise UserInputError(f"{name}: no such run under {root}")
    return d


def log_history(d: Path) -> list[dict[str, Any]]:
    """The trainer's log entries (``log_history.jsonl``; unreadable lines are skipped)."""
    path = d / "log_history.jsonl"
    if not path.is_file():
        return []
    out = []
    for line in path.read_text(encoding="utf-8").splitlines():
        try:
            entry = json.loads(line)
        except ValueError:
            continue
        if isinstance(entry, dict):
            out.append(entry)
    return out


def evaluation(d: Path) -> dict[str, Any] | None:
    """``eval.json`` of a run, or ``None`` when it was not evaluated (or cannot be read)."""
    path = d / "eval.json"
    try:
        data = json.loads(path.read_text(encoding="utf-8")) if path.is_file() else None
    except (ValueError, OSError):
        return None
    return data if isinstance(data, dict) else None


def compare_rows(dirs: list[Path]) -> list[tuple[str, list[str]]]:
    """``cardtune compare``'s rows for these runs (each must be evaluated)."""
    from cardtune.train.compare import collect, rows

    return rows(collect([str(d) for d in dirs]))


SERIES = (("loss", "#4e79a7", "train loss"), ("eval_loss", "#e15759", "eval loss"))


def loss_chart(history: list[dict[str, Any]], width: int = 640, height: int = 260) -> str:
    """An inline-SVG line chart of train (and eval) loss per step; empty string without logged losses."""
    series = []
    for key, fill, label in SERIES:
        pts = [
            (float(e["step"]), float(e[key])) for e in history if isinstance(e.get(key), (int, float)) and "step" in e
        ]
        if pts:
            series.append((label, fill, pts))
    if not series:
        return ""
    left, right, top, bottom = 48, 16, 14, 34
    xs = [x for _, _, pts in series for x, _ in pts]
    ys = [y for _, _, pts in series for _, y in pts]
    x_ticks = nice_ticks(max(xs), 6, integer=True)
    y_ticks = nice_ticks(max(ys), 5)
    x_hi, y_hi = x_ticks[-1] or 1.0, y_ticks[-1] or 1.0
    pw, ph = width - left - right, height - top - bottom

    def sx(x: float) -> float:
        return left + pw * x / x_hi

    def sy(y: float) -> float:
        return top + ph * (1 - y / y_hi)

    parts = [
        f'<svg class="chart" viewBox="0 0 {width} {height}" role="img" aria-label="loss per step">'
        "<title>loss per step</title>"
    ]
    for t in y_ticks:
        parts.append(f'<line class="grid" x1="{left}" x2="{width - right}" y1="{num(sy(t))}" y2="{num(sy(t))}"/>')
        parts.append(f'<text class="tick" x="{left - 6}" y="{num(sy(t) + 4)}" text-anchor="end">{t:.3g}</text>')
    for t in x_ticks:
        parts.append(
            f'<text class="tick" x="{num(sx(t))}" y="{height - bottom + 16}" text-anchor="middle">{t:.0f}</text>'
        )
    parts.append(f'<text class="sub" x="{left + pw / 2}" y="{height - 4}" text-anchor="middle">step</text>')
    for label, fill, pts in series:
        path = " ".join(f"{num(sx(x))},{num(sy(y))}" for x, y in pts)
        parts.append(f'<polyline fill="none" stroke="{fill}" stroke-width="2" points="{path}"/>')
        for x, y in pts:
            tip = esc(f"{label} at step {x:.0f}: {y:.4f}")
            parts.append(
                f'<circle cx="{num(sx(x))}" cy="{num(sy(y))}" r="3" fill="{fill}"><title>{tip}</title></circle>'
            )
    parts.append("</svg>")
    return "".join(parts)
