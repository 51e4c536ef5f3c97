"""The template workbench: a task's templates, live previews of edited template text on the task's real rows, and
saving the file.

Everything goes through ``cardtune.curate.templating``: the text is parsed and compiled by ``templates_from_text``
(the sandbox's load-time checks included), linted by ``lint_templates``, and each row rendered by
``preview.preview_row`` → ``render_row`` (the build's sandbox and render limits). Nothing here raises for bad
input: problems come back as ``Problem`` lines (with the file line where there is one) for the page to show inline.
"""

from __future__ import annotations

import re
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from cardtune.curate.card.schema import Card, Task
from cardtune.curate.errors import Issue, UserInputError
from cardtune.curate.templating.library import Template, templates_from_text
from cardtune.studio.workspace import NEW_FILE, Refused, Workspace

PREVIEW_SOURCE_ROWS = 2000  # rows of a source read for previews (rows are picked among these)
MAX_PREVIEW_ROWS = 20


@dataclass(frozen=True)
class Problem:
    """One lint/sandbox/render/source problem: its line in the edited file (0: none) and the message."""

    line: int
    message: str
    severity: str = "error"  # error | warning

    @property
    def short(self) -> str:
        """The message without its ``field: template 'id':`` lead (the editor shows it at the line itself)."""
        return re.sub(r"^\S+: template '[^']*': ", "", self.message)


@dataclass(frozen=True)
class Turn:
    """One rendered part: its role and its text as (text, field index or None) runs."""

    role: str
    runs: list[tuple[str, int | None]]


@dataclass(frozen=True)
class RowView:
    """One previewed row: its ref, its turns, answer choices, whether fields could be coloured, exemplars used."""

    source_ref: str
    turns: list[Turn]
    choices: list[list[tuple[str, int | None]]] | None
    marked: bool
    shots: int


@dataclass
class PreviewResult:
    """What the preview pane shows."""

    template: Template | None = None
    templates: list[str] = field(default_factory=list)  # ids in the edited text
    problems: list[Problem] = field(default_factory=list)
    rows: list[RowView] = field(default_factory=list)
    fields: list[str] = field(default_factory=list)
    source_error: str | None = None

    @property
    def errors(self) -> list[Problem]:
        return [p for p in self.problems if p.severity == "error"]

    def lines(self) -> dict[int, str]:
        """Line → messages, for the editor's gutter."""
        out: dict[int, str] = {}
        for p in self.problems:
            if p.line:
                out[p.line] = (out[p.line] + "\n" if p.line in out else "") + p.message
        return out


@dataclass(frozen=True)
class TemplateEntry:
    """A template a task renders with: its id, its file, and whether the studio may write that file."""

    id: str
    file: Path
    editable: bool


def task_templates(ws: Workspace, card: Card) -> tuple[dict[str, list[TemplateEntry]], list[Issue]]:
    """Task → its templates (as the build resolves them), plus the issues that stopped some from resolving."""
    from cardtune.curate.inputs import resolve_inputs
    from cardtune.curate.templating.card_templates import template_issues

    issues: list[Issue] = []
    inputs = resolve_inputs(card, issues)
    by_task, more = template_issues(card, inputs)
    out: dict[str, list[TemplateEntry]] = {}
    for task in card.tasks:
        entries = []
        for t in by_task.get(task.name, []):
            path = Path(t.file)
            entries.append(TemplateEntry(t.id, path, editable(ws, path)))
        out[task.name] = entries
    return out, [*issues, *more]


def editable(ws: Workspace, path: Path) -> bool:
    """Whether the studio may write ``path`` (inside the card's folder or the output dir)."""
    try:
        ws.writable(path)
    except Refused:
        return False
    return True


def source_rows(card: Card, task: Task) -> list[dict[str, Any]]:
    """Up to ``PREVIEW_SOURCE_ROWS`` rows of a task's source, read and renamed as the build reads them."""
    from cardtune.curate.inputs import resolve_inputs
    from cardtune.curate.sources.read import load_source

    issues: list[Issue] = []
    inputs = resolve_inputs(card, issues)
    if task.name not in inputs.sources:
        raise UserInputError([i for i in issues if i.loc[:2] == ("tasks", card.tasks.index(task))] or issues)
    limit = min(task.source.limit or PREVIEW_SOURCE_ROWS, PREVIEW_SOURCE_ROWS)
    limited = task.model_copy(update={"source": task.source.model_copy(update={"limit": limit})})
    frame = load_source(inputs.sources[task.name], limited)
    return frame.to_dicts()


def _problems(issues: list[Issue], file: str) -> list[Problem]:
    return [Problem(i.line if i.file == file else 0, _short(i, file)) for i in issues]


def _short(issue: Issue, file: str) -> str:
    """The issue without the file name (the page shows the file once); the line stays in the gutter."""
    text = str(issue)
    prefix = f"{file}:{issue.line}: " if issue.line else f"{file}: "
    return text[len(prefix) :] if issue.file == file and text.startswith(prefix) else text


def preview(
    card: Card,
    task: Task,
    text: str,
    file: str,
    template_id: str,
    *,
    n: int = 5,
    few_shot: bool = False,
    rows: list[dict[str, Any]] | None = None,
) -> PreviewResult:
    """Parse, lint and render ``text`` (the edited template file named ``file``) on ``n`` rows of ``task``."""
    from cardtune.curate.templating.lint import lint_templates
    from cardtune.curate.templating.plan import DEFAULT_FEW_SHOT_K

    out = PreviewResult()
    try:
        templates = templates_from_text(text, file)
    except UserInputError as exc:
        out.problems = _problems(exc.issues, file)
        return out
    except Exception as exc:  # a bug must read as one line in the page, never a traceback
        out.problems = [Problem(0, f"{type(exc).__name__}: {exc}")]
        return out
    out.templates = [t.id for t in templates]
    report = lint_templates(templates)
    out.problems = _problems(report.errors, file) + [
        Problem(p.line, p.message, "warning") for p in _problems(report.warnings, file)
    ]
    fallback = templates[0] if len(templates) == 1 or not template_id else None
    chosen = next((t for t in templates if t.id == template_id), fallback)
    if chosen is None:
        out.problems.append(Problem(0, f"no template {template_id!r} in this file (it has {', '.join(out.templates)})"))
        return out
    out.template, out.fields = chosen, chosen.inputs
    if rows is None:
        try:
            rows = source_rows(card, task)
        except UserInputError as exc:
            out.source_error = str(exc).splitlines()[0] if str(exc) else "the source cannot be read"
            return out
        except Exception as exc:  # an unreadable file the readers did not foresee: still one line
            out.source_error = f"{task.name}: cannot read the source: {type(exc).__name__}: {exc}"
            return out
    missing = [name for name in chosen.inputs if rows and name not in rows[0]]
    if missing:
        columns = ", ".join(k for k in rows[0] if k != "source_ref")
        out.problems.append(
            Problem(
                chosen.line,
                f"task {task.name!r} has no column {missing[0]!r} (its columns: {columns}); map one "
                f"with `columns: {{{missing[0]}: <column>}}` in the card",
            )
        )
        return out
    k = task.few_shot.k if task.few_shot is not None else DEFAULT_FEW_SHOT_K
    shots = k if few_shot and chosen.shots != "zero" and not chosen.multi_turn else 0
    out.rows = _render_rows(card, task, chosen, rows, min(max(n, 1), MAX_PREVIEW_ROWS), shots, out)
    return out


def _render_rows(
    card: Card, task: Task, t: Template, rows: list[dict[str, Any]], n: int, shots: int, out: PreviewResult
) -> list[RowView]:
    from cardtune.curate.templating.preview import pick_rows, preview_row, segments
    from cardtune.curate.templating.render import RenderError

    views = []
    for i in pick_rows(rows, n, card.mixture.seed):
        nulls = [name for name in t.inputs if rows[i].get(name) is None and name not in t.spec.nullable]
        if nulls:
            message = (
                f"row {rows[i]['source_ref']}: input {nulls[0]!r} is null (list it under `nullable`, or filter it)"
            )
            out.problems.append(Problem(0, message))
            continue
        try:
            p = preview_row(t, rows, i, task=task.name, seed=card.mixture.seed, shots=shots, mode=card.mode)
        except RenderError as exc:
            issue = exc.issue(task.name, str(rows[i]["source_ref"]))
            out.problems.append(Problem(issue.line if issue.file == t.file else 0, _short(issue, t.file)))
            continue
        except Exception as exc:  # pragma: no cover - render_row turns template failures into RenderError
            out.problems.append(Problem(0, f"row {rows[i]['source_ref']}: {type(exc).__name__}: {exc}"))
            continue
        r = p.rendered
        turns = ([Turn("system", segments(r.system))] if r.system is not None else []) + [
            Turn(role, segments(text)) for role, text in r.turns
        ]
        turns.append(Turn("assistant", segments(r.completion)))
        choices = [segments(c) for c in r.answer_choices] if r.answer_choices is not None else None
        views.append(RowView(p.source_ref, turns, choices, p.marked, p.shots))
    return views


def check_savable(text: str, file: str) -> list[Problem]:
    """The problems that stop a template file from being saved (it must load: parse, schema, sandbox checks)."""
    try:
        templates_from_text(text, file)
    except UserInputError as exc:
        return _problems(exc.issues, file)
    return []


def new_template(text: str, family: str, columns: list[str]) -> str:
    """``text`` (a template file, maybe empty) with a starter template appended; every other byte as it was."""
    import yaml

    from cardtune.studio.yamledit import append_item

    try:
        data = yaml.safe_load(text) if text.strip() else None
    except yaml.YAMLError:
        data = None
    family = str(data.get("family") or family) if isinstance(data, dict) else family
    existing = {str(t.get("id")) for t in (data or {}).get("templates") or [] if isinstance(t, dict)}
    name, k = "new", 1
    while f"{family}/{name}" in existing:
        k += 1
        name = f"new-{k}"
    inputs = [c for c in columns if c != "source_ref"][:2] or ["text"]
    prompt = [f"  {c.capitalize()}: {{{{ {c} }}}}" for c in inputs[:-1]] or ["  Answer:"]
    item = [f"id: {family}/{name}", f"inputs: [{', '.join(inputs)}]", "prompt: |", *prompt,
            f'completion: "{{{{ {inputs[-1]} }}}}"']  # fmt: skip
    if isinstance(data, dict) and data.get("templates"):
        try:
            return append_item(text, ("templates",), item)
        except (KeyError, ValueError):
            pass  # an unusual layout: the starter goes in a new file's text below, for the user to move
    head = text if isinstance(data, dict) else f"family: {family}\n"
    if isinstance(data, dict) and "templates" in data:
        return head.rstrip("\n") + "\n  - " + "\n    ".join(item) + "\n"
    return head.rstrip("\n") + "\ntemplates:\n  - " + "\n    ".join(item) + "\n"


def family_for(task: Task) -> str:
    """A template family name for a task's new template file (lowercase, ``[a-z0-9_.-]``)."""
    name = re.sub(r"[^a-z0-9_.\-]", "-", task.name.lower()).strip("-.") or "task"
    return name if name[0].isalnum() else f"t{name}"


def new_file_for(ws: Workspace, card: Card, task: Task) -> tuple[str, str, str]:
    """(path relative to the card's folder, text, hash) of the file a task's new template goes into: the card's
    ``templates_dir/<family>.yaml`` (or ``templates/<family>.yaml``), existing or new."""
    base = Path(card.templates_dir) if card.templates_dir else Path("templates")
    rel = str(base / f"{family_for(task)}.yaml")
    path = ws.writable(rel)
    text, h = ws.read(path)
    return rel, text, h if text else NEW_FILE
