"""Scores per row → the numbers ``eval.json`` holds: per task, per template, the spread across templates, macros.

Torch-free and pure Python, so ``compare`` and the experiment driver read the same definitions ``eval`` writes.
Every scored row has a *kind*, from the split it came from:

* ``seen`` — a trained task with a template it trained on (the ``eval`` split);
* ``unseen_template`` — a trained task with a template it never trained on (``eval_unseen_templates``);
* ``unseen_task`` — a held-out task (``heldout``; every one of its templates is unseen too).

A template's (or task's) *main* metric is multiple-choice ``accuracy`` where its rows have answer choices, else
``exact_match``. Robustness to phrasing is the spread of a task's per-template main metric over all the templates
it was scored with (seen and unseen): min, median, max and the population standard deviation.
"""

from __future__ import annotations

import statistics
from collections import defaultdict
from typing import Any

METRICS = ("exact_match", "rougeL", "accuracy", "accuracy_norm")
KINDS = ("seen", "unseen_template", "unseen_task")
KIND_OF_SPLIT = {"eval": "seen", "eval_unseen_templates": "unseen_template", "heldout": "unseen_task"}
AGGREGATES = {"seen": "seen", "unseen_template": "unseen_templates", "unseen_task": "held_out"}


def main_metric(m: dict[str, Any]) -> str | None:
    """The metric that stands for a group of rows: accuracy when it was measured, else exact match."""
    return "accuracy" if "accuracy" in m else "exact_match" if "exact_match" in m else None


def _means(scores: dict[str, list[float]]) -> dict[str, float]:
    return {k: sum(v) / len(v) for k, v in scores.items() if v}


def spread(values: list[float]) -> dict[str, float]:
    """min / median / max / std (population) of per-template scores."""
    return {
        "min": min(values),
        "median": statistics.median(values),
        "max": max(values),
        "std": statistics.pstdev(values) if len(values) > 1 else 0.0,
    }


def macro(groups: list[dict[str, Any]]) -> dict[str, Any]:
    """Unweighted mean of each metric over groups (tasks), with how many groups there were."""
    out: dict[str, Any] = {"tasks": len(groups)}
    for k in METRICS:
        vals = [g[k] for g in groups if k in g]
        if vals:
            out[k] = sum(vals) / len(vals)
    return out


class Tally:
    """Row scores collected per (kind, task, template); :meth:`summary` turns them into ``eval.json``'s sections."""

    def __init__(self) -> None:
        self._rows: dict[tuple[str, str, str], dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))

    def add(self, kind: str, task: str, template: str, scores: dict[str, float]) -> None:
        group = self._rows[(kind, task, template)]
        for k, v in scores.items():
            group[k].append(v)

    def _merged(self, keep: Any) -> dict[str, dict[str, list[float]]]:
        """Scores per task over the groups ``keep(kind, template)`` selects."""
        out: dict[str, dict[str, list[float]]] = defaultdict(lambda: defaultdict(list))
        for (kind, task, template), scores in self._rows.items():
            if keep(kind, template):
                for k, v in scores.items():
                    out[task][k].extend(v)
        return out

    def summary(self) -> dict[str, Any]:
        """``tasks`` (seen rows of trained tasks; all rows of held-out ones), ``unseen_templates`` (per trained
        task), ``templates`` (every (task, template) group), ``robustness`` (per task) and ``aggregate``."""
        held = {task for kind, task, _ in self._rows if kind == "unseen_task"}
        tasks = {
            task: {"held_out": task in held, "n": len(s["exact_match"]), **_means(s)}
            for task, s in sorted(self._merged(lambda kind, _: kind in ("seen", "unseen_task")).items())
        }
        unseen = {
            task: {"n": len(s["exact_match"]), **_means(s)}
            for task, s in sorted(self._merged(lambda kind, _: kind == "unseen_template").items())
        }
        templates: list[dict[str, Any]] = [
            {"task": task, "template": template, "kind": kind, "n": len(s["exact_match"]), **_means(s)}
            for (kind, task, template), s in sorted(self._rows.items(), key=lambda kv: (kv[0][1], kv[0][2], kv[0][0]))
        ]
        robustness: dict[str, dict[str, Any]] = {}
        for task in sorted({t["task"] for t in templates}):
            mine = [t for t in templates if t["task"] == task]
            metric = "accuracy" if all("accuracy" in t for t in mine) else "exact_match"
            values = [float(t[metric]) for t in mine if metric in t]
            if values:
                robustness[task] = {"metric": metric, "templates": len(values), **spread(values)}
        aggregate = {
            "seen": macro([m for t, m in tasks.items() if not m["held_out"]]),
            "unseen_templates": macro(list(unseen.values())),
            "held_out": macro([m for m in tasks.values() if m["held_out"]]),
        }
        return {
            "tasks": tasks,
            "unseen_templates": unseen,
            "templates": templates,
            "robustness": robustness,
            "aggregate": aggregate,
        }


def template_score(result: dict[str, Any], task: str, templates: list[str] | None = None) -> float | None:
    """Mean main metric of ``task`` over the named templates (all of the task's templates when None)."""
    rows = [
        t
        for t in result.get("templates", [])
        if t["task"] == task and (templates is None or t["template"] in templates)
    ]
    values = [float(t[k]) for t in rows if (k := main_metric(t)) is not None]
    return sum(values) / len(values) if values else None
