"""``cardtune templates lint``: checks that make a template safe to put in a mixture.

Owns ``lint_paths`` / ``lint_templates``. Per template: the Jinja parses, passes the sandbox check and uses
no refused filter or global (``random``, ``lipsum``, ``cycler``, ``joiner``, ...: done at load, with the line;
see ``sandbox.refused_features``), declared ``inputs`` equal the variables the sources read (a `turns`
template's ``turn.<name>`` reads its input ``name``, and may read only its `over` inputs), every example
row of its file renders within the render limits (zero-shot, and few-shot when the file has enough rows),
nothing renders empty, the completion (and every assistant turn) has no stray leading/trailing whitespace, answer choices are unique and non-empty and contain the completion,
``choices_in_prompt`` matches the prompt; ids are unique across everything linted. A file without example
rows is a warning (nothing could be rendered).
"""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path

from cardtune.curate.errors import Issue, UserInputError
from cardtune.curate.templating.library import Template, load_template_file, template_files
from cardtune.curate.templating.plan import row_hash
from cardtune.curate.templating.render import RenderError, render_row


@dataclass
class LintReport:
    """Errors fail lint; warnings are printed."""

    templates: list[Template] = field(default_factory=list)
    errors: list[Issue] = field(default_factory=list)
    warnings: list[Issue] = field(default_factory=list)
    files: int = 0

    @property
    def ok(self) -> bool:
        return not self.errors


def _issue(t: Template, message: str, loc_tail: tuple[str | int, ...] = ()) -> Issue:
    return Issue(t.file, t.line, ("templates", t.index, *loc_tail), f"template {t.id!r}: {message}")


def _check_variables(t: Template) -> list[Issue]:
    used, declared = t.variables(), set(t.inputs)
    out = []
    if missing := sorted(used - declared):
        out.append(_issue(t, f"uses {', '.join(missing)} but does not declare it in `inputs`", ("inputs",)))
    if unused := sorted(declared - used):
        out.append(_issue(t, f"declares input(s) {', '.join(unused)} that no part of the template uses", ("inputs",)))
    if t.over is not None:
        fields, _ = t.turn_fields()
        if stray := sorted(fields - set(t.over.names)):
            message = f"reads turn.{', turn.'.join(stray)}, but `turn` holds only the turns.over inputs and positions"
            out.append(_issue(t, message, ("turns", "over")))
    static = t.static_choices()
    if static is not None:
        if any(not c.strip() for c in static):
            out.append(_issue(t, "answer_choices has an empty choice", ("answer_choices",)))
        if len(set(static)) != len(static):
            out.append(_issue(t, "answer_choices repeat", ("answer_choices",)))
    return out


def _check_render(t: Template, row: dict[str, object], k: int, exemplars: Sequence[dict[str, object]]) -> list[Issue]:
    missing = [name for name in t.inputs if name not in row]
    if missing:
        return [_issue(t, f"example row {k} lacks input(s) {', '.join(missing)}; add them to `examples`")]
    values = {name: row[name] for name in t.inputs}
    h = row_hash(0, "lint", f"lint:{k}", t.id)  # example row k, as a task named "lint" with seed 0 renders it
    try:
        r = render_row(t, values, h)
        if exemplars:
            render_row(t, values, h, [{n: ex[n] for n in t.inputs} for ex in exemplars])
    except RenderError as exc:
        issue = exc.issue()
        return [Issue(issue.file, issue.line, issue.loc, f"{issue.message} (example row {k})")]
    out = []
    answers = [c for role, c in r.turns if role == "assistant"] + [r.completion]
    if odd := next((a for a in answers if a != a.strip()), None):
        what = "completion" if odd is r.completion else "an assistant turn"
        out.append(_issue(t, f"{what} has leading/trailing whitespace on example row {k}: {odd!r}"))
    if r.answer_choices is not None:
        if r.completion.strip() not in r.answer_choices and not _is_letter_answer(r.completion, r.answer_choices):
            out.append(
                _issue(
                    t, f"completion {r.completion!r} (example row {k}) is not one of answer_choices", ("completion",)
                )
            )
        prompt = r.prompt_text()
        shown = all(c in prompt for c in r.answer_choices)
        if t.spec.metadata.choices_in_prompt is True and not shown:
            out.append(_issue(t, "metadata.choices_in_prompt is true but the prompt does not show every choice"))
        if t.spec.metadata.choices_in_prompt is False and shown and len(r.answer_choices) > 1:
            message = "metadata.choices_in_prompt is false but the prompt shows every choice"
            out.append(_issue(t, message, ("metadata", "choices_in_prompt")))
    return out


def _is_letter_answer(completion: str, choices: Sequence[str]) -> bool:
    """A lettered answer (``B``) for ``options('letters')``-style templates."""
    letters = "ABCDEFGHIJKLMNOPQRSTUVWXYZ"[: len(choices)]
    return len(completion) == 1 and completion in letters


def lint_templates(templates: Iterable[Template]) -> LintReport:
    """Lint already-loaded templates."""
    report = LintReport(templates=list(templates))
    seen: set[str] = set()
    first: dict[str, Template] = {}
    for t in report.templates:
        if t.id in first:
            other = first[t.id]
            report.errors.append(_issue(t, f"duplicate id (also {other.file}:{other.line})", ("id",)))
        first.setdefault(t.id, t)
        report.errors.extend(_check_variables(t))
        if not t.examples:
            message = "no `examples` rows in its file, so lint could not render it"
            report.warnings.append(_issue(t, message))
            continue
        for k, row in enumerate(t.examples):
            few = t.shots != "zero" and not t.multi_turn and len(t.examples) > 1
            exemplars = [ex for j, ex in enumerate(t.examples) if j != k][:2] if few else []
            for issue in _check_render(t, row, k, exemplars):
                if issue.message not in seen:  # one report per problem, not one per example row
                    seen.add(issue.message)
                    report.errors.append(issue)
    return report


def lint_paths(paths: Sequence[Path]) -> LintReport:
    """Load and lint template files/directories (the shipped library when ``paths`` is empty)."""
    from cardtune.curate.templating.library import shipped_dir

    roots = list(paths) or [shipped_dir()]
    loaded: list[Template] = []
    load_errors: list[Issue] = []
    files = 0
    for root in roots:
        try:
            found = template_files(Path(root))
        except UserInputError as exc:
            load_errors.extend(exc.issues)
            continue
        for file in found:
            files += 1
            try:
                loaded.extend(load_template_file(file))
            except UserInputError as exc:
                load_errors.extend(exc.issues)
    report = lint_templates(loaded)
    report.errors = load_errors + report.errors
    report.errors = list({str(i): i for i in report.errors}.values())
    report.files = files
    return report
