"""A card's template references: which templates each task renders with, and the checks behind ``validate``.

Owns ``card_library`` (the shipped library plus the card's ``templates_dir``), ``task_templates`` (task name
→ its templates, for the build), and ``template_issues`` (every reference resolves, with the card's own
``file:line`` and "did you mean"; every declared input is a column of the task's source after renames).
A reference is an id, a glob (``nli/*``), a bare family name, or a template file path ending in ``.yaml``
(ours or promptsource's ``templates.yaml``, relative to the card).
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cardtune.curate.card.schema import Card
from cardtune.curate.errors import Issue, UserInputError, did_you_mean
from cardtune.curate.templating.library import (
    Template,
    TemplateLibrary,
    load_template_file,
    load_templates,
    shipped_dir,
)

if TYPE_CHECKING:
    from cardtune.curate.inputs import ResolvedInputs
    from cardtune.curate.sources.read import ResolvedSource


def is_file_ref(ref: str) -> bool:
    """``True`` for a template-file reference (``*.yaml``/``*.yml``) rather than an id or glob."""
    return ref.endswith((".yaml", ".yml"))


def card_library(card: Card, inputs: ResolvedInputs) -> TemplateLibrary:
    """The shipped library plus ``templates_dir`` (ids must not collide). Raises ``UserInputError``."""
    roots = [shipped_dir()]
    if inputs.templates_dir is not None:
        local = inputs.templates_dir
        if not local.is_dir():
            raise UserInputError([card.issue(("templates_dir",), f"{local}: not a directory")])
        roots.append(local)
    return TemplateLibrary(load_templates(roots))


def _resolve_task(
    card: Card, inputs: ResolvedInputs, i: int, library: TemplateLibrary, issues: list[Issue]
) -> dict[int, list[Template]]:
    """Templates per reference index of task ``i`` (unresolvable references become issues)."""
    task = card.tasks[i]
    out: dict[int, list[Template]] = {}
    for j, ref in enumerate(task.templates):
        loc = ("tasks", i, "templates", j)
        if is_file_ref(ref):
            path: Path = inputs.template_files[ref]
            if not path.is_file():
                issues.append(card.issue(loc, f"template file {ref!r} not found (looked at {path})"))
                continue
            try:
                found = load_template_file(path)
            except UserInputError as exc:
                issues.extend(exc.issues)
                continue
        else:
            found = library.match(ref)
            if not found:
                issues.append(card.issue(loc, library.unmatched_message(ref)))
                continue
        out[j] = found
    return out


def template_issues(card: Card, inputs: ResolvedInputs) -> tuple[dict[str, list[Template]], list[Issue]]:
    """(task name → templates, issues): references resolve, sources carry every declared input."""
    try:
        library = card_library(card, inputs)
    except UserInputError as exc:
        return {}, list(exc.issues)
    issues: list[Issue] = []
    by_task: dict[str, list[Template]] = {}
    for i, task in enumerate(card.tasks):
        unresolved = len(issues)
        per_ref = _resolve_task(card, inputs, i, library, issues)
        by_task[task.name] = list({t.id: t for found in per_ref.values() for t in found}.values())
        resolved = inputs.sources.get(task.name)  # None when the source itself could not be resolved
        if per_ref and len(issues) == unresolved and resolved is not None:  # all of this task's references resolved
            issues.extend(_input_issues(card, resolved, i, per_ref))
        if not task.templates and resolved is not None:
            issues.extend(_passthrough_issues(card, resolved, i))
    return by_task, issues


def _input_issues(card: Card, resolved: ResolvedSource, i: int, per_ref: dict[int, list[Template]]) -> list[Issue]:
    from cardtune.curate.sources.read import source_columns

    task = card.tasks[i]
    try:
        columns = source_columns(resolved, task)
    except UserInputError as exc:
        return [
            card.issue(("tasks", i, "source"), str(e) if not e.file else f"{e.file}: {e.message}") for e in exc.issues
        ]
    out: list[Issue] = []
    have = set(columns)
    for j, ref in enumerate(task.templates):
        matched = per_ref.get(j, [])
        missing = sorted({name for t in matched for name in t.inputs if name not in have})
        if not missing:
            continue
        needing = [t.id for t in matched if set(t.inputs) - have]
        who = f"template {needing[0]!r}" if len(needing) == 1 else f"{len(needing)} templates of {ref!r}"
        hints = "".join(did_you_mean(name, columns) for name in missing[:1])
        out.append(
            card.issue(
                ("tasks", i, "templates", j),
                f"{who} {'needs' if len(needing) == 1 else 'need'} input(s) {', '.join(map(repr, missing))} that task {task.name!r} does not have"
                f"{hints} (its source columns: {', '.join(columns)}); map them with "
                f"`columns: {{{missing[0]}: <source column>}}`",
            )
        )
    return out


PASSTHROUGH_COLUMNS = (("messages",), ("conversations",), ("prompt", "completion"))


def _passthrough_issues(card: Card, resolved: ResolvedSource, i: int) -> list[Issue]:
    """A task without templates must have columns to pass through (``messages``, ``conversations``, or both
    ``prompt`` and ``completion``)."""
    from cardtune.curate.sources.read import source_columns

    task = card.tasks[i]
    try:
        columns = source_columns(resolved, task)
    except UserInputError as exc:
        return [card.issue(("tasks", i, "source"), e.message) for e in exc.issues]
    if any(set(group) <= set(columns) for group in PASSTHROUGH_COLUMNS):
        return []
    return [
        card.issue(
            ("tasks", i, "name"),
            f"task {task.name!r} has no `templates`, and its source has no `messages`, `conversations` or "
            f"`prompt` + `completion` columns to pass through (its columns: {', '.join(columns)}); add "
            "`templates:` or map columns with `columns: {prompt: <column>, completion: <column>}`",
        )
    ]


def task_templates(card: Card, inputs: ResolvedInputs | None = None) -> dict[str, list[Template]]:
    """Task name → templates (empty for passthrough tasks). Raises ``UserInputError`` with every issue."""
    if inputs is None:
        from cardtune.curate.inputs import resolve_inputs

        inputs = resolve_inputs(card)
    by_task, issues = template_issues(card, inputs)
    if issues:
        raise UserInputError(issues)
    return by_task
