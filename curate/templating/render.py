"""Rendering a task's source rows into the row contract (``rows.py``) with its templates.

Owns: ``render_task`` (the row plan of ``plan.py`` → each template's rows through the first engine of
``ENGINES`` that accepts them → one frame in row order), ``render_row`` (one row through one template with
Jinja; lint and previews use it too, so every path renders identically) and ``JinjaEngine`` (the engine that
renders any template's rows with ``render_row``). The other engines: ``fastrender.FastEngine`` (simple
templates, column-wise) and ``passthrough.PassthroughEngine`` (tasks without templates); their interface is
``engine.Engine``.

Errors name the template, the file line of the failing Jinja line, the task and the row's ``source_ref``;
a task reports its first bad row in row order, whichever engine met it. An empty prompt or completion from
non-empty inputs is an error (a template bug), never an empty example; when a row's own input is empty, the
row renders and the quality filter drops it with its reason. There is no unseeded randomness.

A `jinja` template (``spec.split``) renders its whole text once per row, in the same sandbox and budget as any
part, and splits it at its marker, which must appear exactly once; each side is then stripped and checked like
a prompt and completion. A marker inside a row's text value is protected while rendering (as promptsource
does), so only the template's own markers split; the same holds for answer choices given as Jinja.

A `turns` template (``Template.over``) renders its user and assistant parts once per turn, with ``turn`` (see
``turns.turn_mappings``) in the context: the row's turns are [system?] + user, assistant, ..., user on the prompt
side and the last assistant turn as the completion, the shape a `messages` template has. An empty turn is an
error whatever the inputs (a filter could not drop it from the middle of a conversation).
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import polars as pl
from jinja2 import nodes

from cardtune.curate.card.schema import Task
from cardtune.curate.errors import Issue, Loc, UserInputError, did_you_mean
from cardtune.curate.rows import CHOICE_ID, COMPLETION_TEXT, ROW_HASH, SOURCE_REF, SYSTEM_TEXT, TEMPLATE_ID, USER_TEXT
from cardtune.curate.templating.engine import Engine, RowFailure, Turns, assemble, in_row_order, take
from cardtune.curate.templating.fastrender import FastEngine
from cardtune.curate.templating.jinja_env import ENV, PROTECTOR
from cardtune.curate.templating.library import CHOICE_SEP, Part, Template
from cardtune.curate.templating.passthrough import PassthroughEngine
from cardtune.curate.templating.plan import PlanSlice, RowPlan
from cardtune.curate.templating.schema import TURN
from cardtune.curate.templating.turns import TurnsError, turn_mappings

MODES = ("instruction", "finetune")
_GLOBALS: dict[str, Any] = dict(ENV.globals)  # what Template.render would copy into every context


@dataclass(frozen=True)
class Rendered:
    """One rendered row: optional system text, the prompt-side turns, the completion, answer choices."""

    system: str | None
    turns: tuple[tuple[str, str], ...]  # (role, content), ends with the user turn
    completion: str
    answer_choices: tuple[str, ...] | None

    def prompt_text(self) -> str:
        """All prompt-side text (system first) joined by blank lines: the finetune prompt, the filters' text."""
        texts = [c for _, c in self.turns]
        return "\n\n".join([self.system, *texts] if self.system is not None else texts)


class RenderError(Exception):
    """A template failed on a row: which template, which part and line, and why."""

    def __init__(
        self,
        template: Template,
        part: Part | None,
        line: int | None,
        message: str,
        at: tuple[Loc, int] | None = None,  # (location, file line) of a field that is no Jinja part
    ) -> None:
        self.template, self.part, self.line, self.message, self.at = template, part, line, message, at
        super().__init__(message)

    def issue(self, task: str | None = None, source_ref: str | None = None) -> Issue:
        file, line = self.template.where(self.part, self.line)
        loc = self.part.loc if self.part is not None else ("templates", self.template.index)
        if self.at is not None:
            loc, line = self.at
        where = f" (task {task!r}, row {source_ref})" if task is not None else ""
        return Issue(file, line, loc, f"template {self.template.id!r}: {self.message}{where}")


def _template_line(exc: BaseException) -> int | None:
    tb, line = exc.__traceback__, None
    while tb is not None:
        if tb.tb_frame.f_code.co_filename == "<template>":
            line = tb.tb_lineno
        tb = tb.tb_next
    return line


def _failure(t: Template, part: Part, ctx: dict[str, Any], exc: Exception) -> RenderError:
    try:  # Template.render rewrites the traceback to template lines; the fast path does not
        part.compiled.render(ctx)
    except Exception as again:
        exc = again
    kind = "sandbox: " if isinstance(exc, jinja2.exceptions.SecurityError) else ""
    message = str(exc) if isinstance(exc, jinja2.TemplateError) else f"{type(exc).__name__}: {exc}"
    if isinstance(exc, jinja2.UndefinedError) and "is undefined" in message:
        message += did_you_mean(message.split("'")[1] if "'" in message else "", t.inputs)
    return RenderError(t, part, _template_line(exc), f"{part.name}: {kind}{message}")


def _text(t: Template, part: Part, ctx: dict[str, Any]) -> str:
    """Render one part as is; ``ctx`` already holds the globals (see ``render_row``), so it is shared, not copied."""
    compiled = part.compiled
    try:
        return "".join(compiled.root_render_func(compiled.new_context(ctx, shared=True)))
    except Exception as exc:
        raise _failure(t, part, ctx, exc) from None


def _finish(t: Template, part: Part, text: str, ctx: dict[str, Any], label: str | None = None) -> str:
    """``strip`` and the empty rule: blank text is an error unless one of the row's own inputs is blank."""
    if t.spec.strip:
        text = text.strip()
    if not text.strip():
        if any(isinstance(ctx.get(name), str) and not ctx[name].strip() for name in t.inputs):
            # empty because the row's data is empty: keep it, so the quality filter drops it with a reason
            return ""
        raise RenderError(t, part, None, f"{label or part.name} rendered empty (an empty example is never kept)")
    return text


def _run(t: Template, part: Part, ctx: dict[str, Any]) -> str:
    return _finish(t, part, _text(t, part, ctx), ctx)


def _protected(ctx: dict[str, Any], row: dict[str, Any], marker: str) -> dict[str, Any] | None:
    """``ctx`` with ``marker`` in the row's text values replaced by ``PROTECTOR``; None when no value has it."""
    hits = {k: v.replace(marker, PROTECTOR) for k, v in row.items() if isinstance(v, str) and marker in v}
    return {**ctx, **hits} if hits else None


def _split_run(t: Template, ctx: dict[str, Any], row: dict[str, Any]) -> tuple[str, str]:
    """A `jinja` template's (prompt, completion): the whole text rendered once, split at its one marker."""
    part, marker = t.jinja, t.spec.split
    assert part is not None and marker is not None
    text = _text(t, part, _protected(ctx, row, marker) or ctx)
    pieces = text.split(marker)
    if len(pieces) != 2:
        found = len(pieces) - 1
        message = (
            f"jinja rendered no `{marker}` for this row, so it has no completion (the template does not apply to "
            "it; promptsource leaves such rows out): filter these rows out of the task's source"
            if not found
            else f"jinja rendered `{marker}` {found} times for this row; exactly one separates prompt and completion"
        )
        raise RenderError(t, part, None, message)
    prompt, completion = (piece.replace(PROTECTOR, marker) for piece in pieces)
    return (
        _finish(t, part, prompt, ctx, f"jinja (the prompt, before `{marker}`)"),
        _finish(t, part, completion, ctx, f"jinja (the completion, after `{marker}`)"),
    )


def _sides(t: Template, ctx: dict[str, Any], row: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """The prompt-side turns and the completion of one row."""
    if t.jinja is not None:
        prompt, completion = _split_run(t, ctx, row)
        return [("user", prompt)], completion
    if t.over is not None:
        return _turns(t, ctx, row)
    assert t.completion is not None
    turns = [(role, _run(t, part, ctx)) for role, part in t.turns]
    return turns, _run(t, t.completion, ctx)


def _turns(t: Template, ctx: dict[str, Any], row: dict[str, Any]) -> tuple[list[tuple[str, str]], str]:
    """A `turns` template's conversation: a user and an assistant turn per element of its `over` lists."""
    assert t.over is not None and t.completion is not None
    try:
        mappings = turn_mappings(t.over.names, t.spec.nullable, row)
    except TurnsError as exc:
        raise RenderError(t, None, None, f"turns.over: {exc}", at=(t.over.loc, t.over.line)) from None
    out: list[tuple[str, str]] = []
    parts = (("user", t.turns[0][1]), ("assistant", t.completion))
    for turn in mappings:
        turn_ctx = {**ctx, TURN: turn}
        which = f"turn {turn['number']} of {turn['count']}"
        for role, part in parts:
            try:
                text = _text(t, part, turn_ctx)
            except RenderError as exc:
                raise RenderError(t, exc.part, exc.line, f"{exc.message} ({which})") from None
            if t.spec.strip:
                text = text.strip()
            if not text.strip():
                raise RenderError(
                    t, part, None, f"{part.name} rendered empty for {which} (an empty turn is never kept)"
                )
            out.append((role, text))
    return out[:-1], out[-1][1]


class AnswerChoices(tuple[str, ...]):
    """A row's answer choices: indexing with a negative number is an error, not the last choice.

    GLUE-style data marks unlabeled rows with ``label: -1``; Python would silently pick the last choice.
    """

    def __getitem__(self, index: Any) -> Any:
        if isinstance(index, int) and not isinstance(index, bool) and index < 0:
            raise ValueError(  # not an IndexError: Jinja would turn that into "undefined"
                f"answer_choices[{index}]: a negative index (-1 often marks an unlabeled row); filter such rows "
                "out of the source or map them to a choice"
            )
        return super().__getitem__(index)


def _choices(t: Template, ctx: dict[str, Any], row: dict[str, Any]) -> tuple[str, ...] | None:
    if t.choices is None:
        static = t.static_choices()
        return AnswerChoices(static) if static is not None else None
    protected = _protected(ctx, row, CHOICE_SEP)  # a row value's `|||` is text, not a separator
    raw = _run(t, t.choices, protected or ctx)
    choices = (c.strip() for c in raw.split(CHOICE_SEP))
    return AnswerChoices(c.replace(PROTECTOR, CHOICE_SEP) for c in choices) if protected else AnswerChoices(choices)


def render_row(
    t: Template,
    row: dict[str, Any],
    h: int = 0,
    exemplars: Sequence[dict[str, Any]] = (),
    mode: str = "instruction",
) -> Rendered:
    """Render ``row`` (template inputs → values) through ``t``; ``h`` is the row's stable hash."""
    ctx = {**_GLOBALS, **row, ROW_HASH: h}
    choices = _choices(t, ctx, row)
    ctx["answer_choices"] = choices
    system = _run(t, t.system, ctx) if t.system is not None else None
    turns, completion = _sides(t, ctx, row)
    if exemplars:
        if t.over is not None:
            raise ValueError(f"template {t.id!r} is a turns template: zero-shot, never given exemplars")
        fmt = t.spec.few_shot
        shots: list[tuple[str, str]] = []
        for ex in exemplars:
            ex_ctx = {**_GLOBALS, **ex, ROW_HASH: h}  # the exemplars share the row's option style
            ex_ctx["answer_choices"] = _choices(t, ex_ctx, ex)
            ex_turns, ex_completion = _sides(t, ex_ctx, ex)
            shots.append((ex_turns[-1][1], ex_completion))
        if fmt.style == "turns" and mode == "instruction":
            pre = [turn for p, c in shots for turn in (("user", p), ("assistant", c))]
            turns = turns[:-1] + pre + turns[-1:]
        else:
            blocks = [f"{p}{fmt.answer_separator}{c}" for p, c in shots]
            turns[-1] = (turns[-1][0], fmt.separator.join([*blocks, turns[-1][1]]))
    return Rendered(system, tuple(turns), completion, choices)


def _check_inputs(rows: pl.DataFrame, task: Task, templates: Sequence[Template]) -> None:
    """Every declared input is a column (before rendering)."""
    issues: list[str] = []
    for t in templates:
        for name in t.inputs:
            if name not in rows.columns:
                hint = did_you_mean(name, rows.columns)
                first = rows.get_column(SOURCE_REF).cast(pl.String)[0] if rows.height else "-"
                issues.append(
                    f"task {task.name!r}: template {t.id!r} needs input {name!r}, which the source lacks{hint} "
                    f"(first row {first}; columns: {', '.join(rows.columns)}; "
                    "rename with `columns:` in the card)"
                )
        for part in t.parts():  # `{{ x }}` of a struct column would print a Python dict repr
            for output in part.ast.find_all(nodes.Output):
                for node in output.nodes:
                    if not isinstance(node, nodes.Name):
                        continue
                    dtype = rows.schema.get(node.name)
                    if isinstance(dtype, pl.Struct):
                        issues.append(
                            f"task {task.name!r}: template {t.id!r} ({part.name}) prints input {node.name!r} whole, "
                            f"but it is a struct column ({dtype}): its text would be a Python dict repr; print its "
                            f"fields (`{{{{ {node.name}.<field> }}}}`) or `| tojson`"
                        )
    if issues:
        raise UserInputError("\n".join(sorted(set(issues))))


def _null_error(task: str, t: Template, name: str, ref: str) -> UserInputError:
    return UserInputError(
        f"task {task!r}, row {ref}: input {name!r} of template {t.id!r} is null "
        f"(filter such rows out, or list {name!r} under the template's `nullable`)"
    )


class JinjaEngine:
    """Every template, row by row through ``render_row``, with the plan's row hashes and exemplars."""

    name = "jinja"

    def render(
        self, rows: pl.DataFrame, plan_slice: PlanSlice, template: Template | None, mode: str
    ) -> pl.DataFrame | None:
        if template is None:
            return None
        t, task, refs = template, plan_slice.plan.task, plan_slice.plan.refs
        positions = list(plan_slice.rows)
        # the values of the slice's rows and of their exemplars (any row of the task), as Python objects
        few, exemplars = plan_slice.few, plan_slice.exemplars
        shots = sorted({j for e in exemplars for j in e})
        needed = sorted(set(positions).union(shots)) if shots else positions
        at = {pos: j for j, pos in enumerate(needed)} if shots else {}
        frame = rows.select(t.inputs)
        if not plan_slice.whole or shots:
            frame = frame.select(pl.all().gather(pl.Series(needed, dtype=pl.UInt32)))
        values = [frame.get_column(n).to_list() for n in t.spec.inputs]
        null_check = [n for n in t.inputs if rows.get_column(n).null_count() > 0 and n not in t.spec.nullable]

        def row_values(j: int) -> dict[str, Any]:
            return {name: v[j] for name, v in zip(t.spec.inputs, values, strict=True)}

        systems: list[str | None] = []
        users: list[str] = []
        completions: list[str] = []
        choices: list[int | None] = []
        extra_turns: list[Turns | None] = []
        choice_ids: dict[tuple[str, ...], int] = {}
        k, n_rows = plan_slice.k, plan_slice.plan.n_rows
        for p, (i, h) in enumerate(zip(positions, plan_slice.row_hashes, strict=True)):
            ref = refs[i]
            row = row_values(at[i] if shots else p)
            for name in null_check:
                if row[name] is None:
                    raise RowFailure(i, _null_error(task, t, name, ref))
            shot_rows: list[dict[str, Any]] = []
            if few[p]:
                if n_rows <= k:
                    message = f"task {task!r}: few-shot k={k} needs more than {k} rows, got {n_rows}"
                    raise RowFailure(i, UserInputError(message))
                for j in exemplars[p]:
                    ex = row_values(at[j])
                    for name in null_check:
                        if ex[name] is None:
                            raise RowFailure(i, _null_error(task, t, name, refs[j]))
                    shot_rows.append(ex)
            try:
                r = render_row(t, row, h, shot_rows, mode)
            except RenderError as exc:
                raise RowFailure(i, UserInputError([exc.issue(task, ref)])) from None
            systems.append(r.system)
            completions.append(r.completion)
            choices.append(
                None if r.answer_choices is None else choice_ids.setdefault(r.answer_choices, len(choice_ids))
            )
            users.append(r.turns[-1][1])
            extra_turns.append(list(r.turns[:-1]) if len(r.turns) > 1 else None)
        body = pl.DataFrame(
            {
                TEMPLATE_ID: pl.Series([t.id] * len(positions), dtype=pl.String),
                SYSTEM_TEXT: pl.Series(systems, dtype=pl.String),
                USER_TEXT: pl.Series(users, dtype=pl.String),
                COMPLETION_TEXT: pl.Series(completions, dtype=pl.String),
                CHOICE_ID: pl.Series(choices, dtype=pl.UInt32),
            }
        )
        sub = take(rows, plan_slice, [*plan_slice.plan.inputs, SOURCE_REF])
        multi = any(e is not None for e in extra_turns)
        return assemble(sub, plan_slice, mode, body, choice_ids, extra_turns if multi else None)


ENGINES: tuple[Engine, ...] = (FastEngine(), JinjaEngine(), PassthroughEngine())
"""In order of preference: a slice renders through the first engine that does not decline."""


def render_task(
    rows: pl.DataFrame, task: Task, templates: list[Template], mode: str, seed: int, *, fast: bool = True
) -> pl.DataFrame:
    """Render a task's rows (source columns, already renamed, plus ``source_ref``) into the row contract.

    The plan (``plan.py``) picks each row's template; each template's rows render through the first engine
    that accepts them: simple templates column-wise (``fastrender.py``), the others row by row through Jinja,
    tasks without templates by passthrough. The output is the same either way; ``fast=False`` skips the fast
    engine (tests and benchmarks compare the two). Errors name the task's first bad row, in row order.
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if templates:
        _check_inputs(rows, task, templates)
    refs = rows.get_column(SOURCE_REF)
    plan = RowPlan(task.name, seed, tuple(templates), task.few_shot, refs, task.conversation)
    engines = ENGINES if fast else tuple(e for e in ENGINES if e.name != "fast")
    done: list[tuple[PlanSlice, pl.DataFrame]] = []
    failures: list[RowFailure] = []
    for part in plan.slices():
        try:
            out = next((f for e in engines if (f := e.render(rows, part, part.template, mode)) is not None), None)
        except RowFailure as exc:
            failures.append(exc)  # the other slices still run: an earlier row may fail there
            continue
        if out is None:
            raise RuntimeError(f"no rendering engine accepts template {part.template!r}")
        done.append((part, out))
    if failures:
        raise min(failures, key=lambda f: f.row).error from None
    return in_row_order(done)
