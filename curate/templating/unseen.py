"""Unseen templates: per task, the templates that render eval rows but never a training row.

Two card fields name them, and both end up in one list per trained task:

* ``tasks[].held_out_templates`` — ids or globs matched against the task's own resolved ``templates`` (a subset:
  a pattern that matches none of them is an error at its line). The task's train and eval rows are rendered with
  the remaining templates only (the stable per-row choice of ``plan.py`` over that list).
* ``eval.templates`` — task name → ids or globs from the library or ``templates_dir``: phrasings a card does not
  train on at all (a fine-tuning card with one template). Templates the task already trains on are skipped.

After the split, the pipeline renders every eval row of such a task once with each unseen template into the
``eval_unseen_templates`` split (seen task, unseen phrasing), next to ``eval`` (seen phrasing) and ``heldout``
(unseen task). A card that uses neither field gets exactly the templates it had, so its version is unchanged.
"""

from __future__ import annotations

import fnmatch
from typing import TYPE_CHECKING

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue
from cardtune.curate.templating.library import Template

if TYPE_CHECKING:
    from cardtune.curate.inputs import ResolvedInputs


def _match(pattern: str, ids: list[str]) -> list[str]:
    if pattern in ids:
        return [pattern]
    return fnmatch.filter(ids, pattern)


def split_templates(
    card: Card, inputs: ResolvedInputs, by_task: dict[str, list[Template]]
) -> tuple[dict[str, list[Template]], dict[str, list[Template]], list[Issue]]:
    """(training templates per task, unseen templates per task, issues) from every task's resolved templates.

    Tasks without unseen templates are absent from the second mapping; every issue names the card's line.
    """
    training = dict(by_task)
    unseen: dict[str, list[Template]] = {}
    issues: list[Issue] = []
    for i, task in enumerate(card.tasks):
        if not task.held_out_templates or task.name not in by_task:
            continue
        templates = by_task[task.name]
        ids = [t.id for t in templates]
        held: set[str] = set()
        for j, pattern in enumerate(task.held_out_templates):
            found = _match(pattern, ids)
            if not found:
                issues.append(
                    card.issue(
                        ("tasks", i, "held_out_templates", j),
                        f"{pattern!r} matches none of task {task.name!r}'s templates ({', '.join(ids) or 'none'})",
                    )
                )
            held.update(found)
        if held and held == set(ids):
            issues.append(
                card.issue(
                    ("tasks", i, "held_out_templates"),
                    f"holds out every template of task {task.name!r}; keep at least one to train on",
                )
            )
            continue
        if held:
            training[task.name] = [t for t in templates if t.id not in held]
            unseen[task.name] = [t for t in templates if t.id in held]
    if card.eval.templates:
        issues.extend(_eval_templates(card, inputs, training, unseen))
    return training, unseen, issues


def card_templates(card: Card, inputs: ResolvedInputs) -> tuple[dict[str, list[Template]], dict[str, list[Template]]]:
    """(training templates per task, unseen templates per task) of a card; ``UserInputError`` with every issue.

    What renders rows is the first mapping: every caller that renders a task's train/eval rows must use it.
    """
    from cardtune.curate.errors import UserInputError
    from cardtune.curate.templating.library import resolve_card_templates

    training, unseen, issues = split_templates(card, inputs, resolve_card_templates(card, inputs))
    if issues:
        raise UserInputError(issues)
    return training, unseen


def _eval_templates(
    card: Card, inputs: ResolvedInputs, training: dict[str, list[Template]], unseen: dict[str, list[Template]]
) -> list[Issue]:
    """Add ``eval.templates`` to ``unseen`` (in place); issues for references that resolve to nothing usable."""
    from cardtune.curate.errors import UserInputError
    from cardtune.curate.templating.card_templates import card_library, is_file_ref

    try:
        library = card_library(card, inputs)
    except UserInputError as exc:
        return list(exc.issues)
    issues: list[Issue] = []
    for task_name, refs in card.eval.templates.items():
        trained = {t.id for t in training.get(task_name, [])}
        extra = {t.id: t for t in unseen.get(task_name, [])}
        for j, ref in enumerate(refs):
            loc: tuple[str | int, ...] = ("eval", "templates", task_name, j)
            if is_file_ref(ref):
                issues.append(card.issue(loc, f"{ref!r}: eval.templates takes template ids or globs, not files"))
                continue
            found = library.match(ref)
            if not found:
                issues.append(card.issue(loc, library.unmatched_message(ref)))
                continue
            new = [t for t in found if t.id not in trained]
            if not new:
                issues.append(
                    card.issue(loc, f"{ref!r} matches only templates task {task_name!r} trains on; nothing is unseen")
                )
            extra.update((t.id, t) for t in new)
        if extra:
            unseen[task_name] = list(extra.values())
    return issues
