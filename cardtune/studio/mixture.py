"""Mixture shaping: the card's tasks with edited weights → the dry-run plan, and saving the weights into the card.

The plan is ``cardtune.curate.pipeline.build(card, dry_run=True)`` on the card with the weights replaced (the same
plan ``cardtune build --dry-run`` prints; nothing is written). Saving edits the card's text in place
(``yamledit``), so comments, key order, quoting and flow style stay as the user wrote them; only ``tasks[i].weight``
changes (added after the task's ``name`` where it was absent). The new text is validated before it is written.
"""

from __future__ import annotations

import math
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import yaml

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue, UserInputError
from cardtune.curate.store.manifest import Manifest, PlanEntry


@dataclass(frozen=True)
class Planned:
    """A dry run: the plan entries and the manifest it would write, or the issues that stopped it."""

    plan: tuple[PlanEntry, ...]
    manifest: Manifest | None
    issues: list[Issue]


def with_weights(text: str, path: Path, weights: Mapping[int, float]) -> Card:
    """The card of ``text`` with ``tasks[i].weight`` replaced (validated; raises ``UserInputError``)."""
    from cardtune.curate.card.load import card_from_located
    from cardtune.curate.card.yamlsrc import load_located

    located = load_located(text, str(path))
    tasks = located.data.get("tasks") if isinstance(located.data, dict) else None
    for i, w in weights.items():
        if isinstance(tasks, list) and 0 <= i < len(tasks) and isinstance(tasks[i], dict):
            tasks[i]["weight"] = w
    return card_from_located(located, path)


def plan(text: str, path: Path, weights: Mapping[int, float]) -> Planned:
    """The dry-run plan of the card with these weights."""
    from cardtune.curate.pipeline import build

    try:
        card = with_weights(text, path, weights)
        result = build(card, dry_run=True)
    except UserInputError as exc:
        return Planned((), None, exc.issues)
    return Planned(result.manifest.mixture.plan, result.manifest, [])


def weight_value(w: float, strategy: str) -> float | int:
    """A weight as it should read in YAML: an integer where it is whole (counts always are)."""
    return int(w) if float(w).is_integer() and (strategy == "count" or w >= 1) else float(w)


def set_weights(text: str, weights: Mapping[int, float], strategy: str) -> str:
    """The card text with the weights replaced (``yamledit``: every other byte, comments included, as it was)."""
    from cardtune.studio.yamledit import set_value

    data = yaml.safe_load(text)
    tasks = data.get("tasks") if isinstance(data, dict) else None
    if not isinstance(tasks, list):
        raise UserInputError("the card has no `tasks:` list to set weights in")
    for i, w in sorted(weights.items()):
        if not (0 <= i < len(tasks)) or not isinstance(tasks[i], dict):
            raise UserInputError(f"tasks[{i}]: no such task in the card")
        current = tasks[i].get("weight", 1.0)
        if isinstance(current, (int, float)) and float(current) == w:
            continue  # unchanged: keep the user's spelling (`2.0`, `2`)
        try:
            text = set_value(text, ("tasks", i), "weight", repr(weight_value(w, strategy)))
        except (KeyError, ValueError) as exc:
            raise UserInputError(
                f"tasks[{i}]: cannot set the weight in this card's layout ({exc}); edit it by hand"
            ) from None
    return text


def parse_weights(form: Mapping[str, str], n_tasks: int) -> tuple[dict[int, float], list[str]]:
    """``weight-<i>`` form fields → weights; bad numbers come back as one line each."""
    weights: dict[int, float] = {}
    bad: list[str] = []
    for i in range(n_tasks):
        raw = form.get(f"weight-{i}")
        if raw is None or raw == "":
            continue
        try:
            w = float(raw)
        except ValueError:
            bad.append(f"tasks[{i}].weight: {raw!r} is not a number")
            continue
        if not (w > 0 and math.isfinite(w)):
            bad.append(f"tasks[{i}].weight: must be a number > 0, got {raw!r}")
            continue
        weights[i] = w
    return weights, bad


def charts(planned: Planned | None) -> str:
    """The report's mixture section (requested vs realized, by examples and tokens) for a dry run's manifest."""
    if planned is None or planned.manifest is None:
        return ""
    from cardtune.curate.reporting.sections import mixture
    from cardtune.curate.reporting.svg import color

    m = planned.manifest
    return mixture(m, {t.name: color(i) for i, t in enumerate(m.tasks)})
