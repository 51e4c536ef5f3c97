"""Rendering a task's source rows into the row contract (``rows.py``) with its templates.

Owns: ``render_task`` (one template per row, chosen by a stable hash of (seed, task, source_ref); option
styles and few-shot exemplars derive from a stable hash that also includes the template id), ``render_row``
(one row through one template; lint and previews use it too, so every path renders identically), and
the passthrough of conversation columns for tasks without templates (``passthrough.py``).

Errors name the template, the file line of the failing Jinja line, the task and the row's ``source_ref``.
An empty prompt or completion from non-empty inputs is an error (a template bug), never an empty example;
when a row's own input is empty, the row renders and the quality filter drops it with its reason. There is no unseeded randomness.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

import jinja2
import polars as pl
import xxhash

from cardtune.curate.card.schema import Task
from cardtune.curate.errors import Issue, UserInputError, did_you_mean
from cardtune.curate.rows import (
    ANSWER_CHOICES,
    COMPLETION,
    COMPLETION_TEXT,
    FIELDS_TEXT,
    PROMPT,
    PROMPT_TEXT,
    SOURCE_REF,
    TASK,
    TEMPLATE_ID,
)
from cardtune.curate.templating import fastrender
from cardtune.curate.templating.jinja_env import ENV, ROW_HASH, stable_hash
from cardtune.curate.templating.library import CHOICE_SEP, Part, Template

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
MESSAGES = pl.List(MESSAGE)
DEFAULT_FEW_SHOT_K = 3
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

    def __init__(self, template: Template, part: Part | None, line: int | None, message: str) -> None:
        self.template, self.part, self.line, self.message = template, part, line, message
        super().__init__(message)

    def issue(self, task: str | None = None, source_ref: str | None = None) -> Issue:
        file, line = self.template.where(self.part, self.line)
        loc = self.part.loc if self.part is not None else ("templates", self.template.index)
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


def _run(t: Template, part: Part, ctx: dict[str, Any]) -> str:
    """Render one part; ``ctx`` already holds the globals (see ``render_row``), so it is shared, not copied."""
    compiled = part.compiled
    try:
        text = "".join(compiled.root_render_func(compiled.new_context(ctx, shared=True)))
    except Exception as exc:
        raise _failure(t, part, ctx, exc) from None
    if t.spec.strip:
        text = text.strip()
    if not text.strip():
        if any(isinstance(ctx.get(name), str) and not ctx[name].strip() for name in t.inputs):
            # empty because the row's data is empty: keep it, so the quality filter drops it with a reason
            return ""
        raise RenderError(t, part, None, f"{part.name} rendered empty (an empty example is never kept)")
    return text


def _choices(t: Template, ctx: dict[str, Any]) -> tuple[str, ...] | None:
    if t.choices is None:
        return t.static_choices()
    raw = _run(t, t.choices, ctx)
    return tuple(c.strip() for c in raw.split(CHOICE_SEP))


def render_row(
    t: Template,
    row: dict[str, Any],
    h: int = 0,
    exemplars: Sequence[dict[str, Any]] = (),
    mode: str = "instruction",
) -> Rendered:
    """Render ``row`` (template inputs → values) through ``t``; ``h`` is the row's stable hash."""
    ctx = {**_GLOBALS, **row, ROW_HASH: h}
    choices = _choices(t, ctx)
    ctx["answer_choices"] = choices
    system = _run(t, t.system, ctx) if t.system is not None else None
    turns = [(role, _run(t, part, ctx)) for role, part in t.turns]
    completion = _run(t, t.completion, ctx)
    if exemplars:
        fmt = t.spec.few_shot
        shots: list[tuple[str, str]] = []
        for ex in exemplars:
            ex_ctx = {**_GLOBALS, **ex, ROW_HASH: h}  # the exemplars share the row's option style
            ex_ctx["answer_choices"] = _choices(t, ex_ctx)
            shots.append((_run(t, t.turns[-1][1], ex_ctx), _run(t, t.completion, ex_ctx)))
        if fmt.style == "turns" and mode == "instruction":
            pre = [turn for p, c in shots for turn in (("user", p), ("assistant", c))]
            turns = turns[:-1] + pre + turns[-1:]
        else:
            blocks = [f"{p}{fmt.answer_separator}{c}" for p, c in shots]
            turns[-1] = (turns[-1][0], fmt.separator.join([*blocks, turns[-1][1]]))
    return Rendered(system, tuple(turns), completion, choices)


def _check_inputs(rows: pl.DataFrame, task: Task, templates: Sequence[Template], refs: list[str]) -> None:
    """Every declared input is a column, and non-nullable inputs have no nulls (vectorized, before rendering)."""
    issues: list[str] = []
    for t in templates:
        for name in t.inputs:
            if name not in rows.columns:
                hint = did_you_mean(name, rows.columns)
                issues.append(
                    f"task {task.name!r}: template {t.id!r} needs input {name!r}, which the source lacks{hint} "
                    f"(first row {refs[0] if refs else '-'}; columns: {', '.join(rows.columns)}; "
                    "rename with `columns:` in the card)"
                )
    if issues:
        raise UserInputError("\n".join(sorted(set(issues))))


def _null_error(task: Task, t: Template, name: str, ref: str) -> UserInputError:
    return UserInputError(
        f"task {task.name!r}, row {ref}: input {name!r} of template {t.id!r} is null "
        f"(filter such rows out, or list {name!r} under the template's `nullable`)"
    )


def _exemplar_indices(i: int, n: int, k: int, key: tuple[object, ...]) -> list[int]:
    """``k`` distinct row indices of the pool, never ``i``, from a stable hash of ``key``."""
    chosen: list[int] = []
    j = 0
    while len(chosen) < k:
        cand = stable_hash(*key, "shot", j) % n if j < 8 * k + 16 else (i + j) % n
        if cand != i and cand not in chosen:
            chosen.append(cand)
        j += 1
    return chosen


def render_task(
    rows: pl.DataFrame, task: Task, templates: list[Template], mode: str, seed: int, *, fast: bool = True
) -> pl.DataFrame:
    """Render a task's rows (source columns, already renamed, plus ``source_ref``) into the row contract.

    Simple templates render column-wise (``fastrender.py``), the others row by row through Jinja; the output
    is the same either way. ``fast=False`` forces Jinja for every row (tests and benchmarks compare the two).
    """
    if mode not in MODES:
        raise ValueError(f"mode must be one of {MODES}, got {mode!r}")
    if not templates:
        from cardtune.curate.templating.passthrough import passthrough

        return passthrough(rows, task, mode)
    refs: list[str] = rows.get_column(SOURCE_REF).cast(pl.String).to_list()
    _check_inputs(rows, task, templates, refs)
    names = list(dict.fromkeys(n for t in templates for n in t.inputs))
    n_rows = rows.height
    nulls = {n: rows.get_column(n).null_count() > 0 for n in names}
    few = task.few_shot
    n_templates = len(templates)
    digest = xxhash.xxh3_64_intdigest
    prefix = f"{seed}\x1f{task.name}\x1f"  # == stable_hash(seed, task, ref[, template id]), inlined
    which = [digest((prefix + ref).encode()) % n_templates for ref in refs] if n_templates > 1 else [0] * n_rows
    choice_ids: dict[tuple[str, ...], int] = {}
    fast_plans: dict[int, fastrender.FastPlan] = {}
    if fast:
        for k, t in enumerate(templates):
            if (p := fastrender.plan(t, rows.schema, nulls, few is not None)) is not None:
                fast_plans[k] = p
    groups = fastrender.render_groups(rows, names, which, fast_plans, choice_ids) if fast_plans else []
    if groups is None:  # a row the Jinja path rejects: render everything there, for its exact error
        groups, choice_ids = [], {}
    slow = [i for i, k in enumerate(which) if k not in fast_plans] if groups else range(n_rows)
    cols = {n: rows.get_column(n).to_list() for n in names} if slow else {}
    plans = [
        (t, [cols.get(n, []) for n in t.inputs], [n for n in t.inputs if nulls[n] and n not in t.spec.nullable])
        for t in templates
    ]
    ids: list[str] = []
    systems: list[str | None] = []
    users: list[str] = []
    completions: list[str] = []
    choices: list[int | None] = []
    extra_turns: list[list[tuple[str, str]] | None] = []
    for i in slow:
        ref = refs[i]
        t, values, null_check = plans[which[i]]
        row = {name: v[i] for name, v in zip(t.spec.inputs, values, strict=True)}
        for name in null_check:
            if row[name] is None:
                raise _null_error(task, t, name, ref)
        h = digest(f"{prefix}{ref}\x1f{t.id}".encode())
        exemplars: list[dict[str, Any]] = []
        if t.shots != "zero" and t.spec.messages is None and (t.shots == "few" or few is not None):
            k = few.k if few is not None else DEFAULT_FEW_SHOT_K
            fraction = 1.0 if t.shots == "few" or few is None else few.fraction
            if fraction > 0 and (fraction >= 1 or stable_hash(seed, task.name, ref, t.id, "few") / 2**64 < fraction):
                if n_rows <= k:
                    raise UserInputError(f"task {task.name!r}: few-shot k={k} needs more than {k} rows, got {n_rows}")
                for j in _exemplar_indices(i, n_rows, k, (seed, task.name, ref, t.id)):
                    ex = {name: v[j] for name, v in zip(t.spec.inputs, values, strict=True)}
                    for name in null_check:
                        if ex[name] is None:
                            raise _null_error(task, t, name, refs[j])
                    exemplars.append(ex)
        try:
            r = render_row(t, row, h, exemplars, mode)
        except RenderError as exc:
            raise UserInputError([exc.issue(task.name, ref)]) from None
        ids.append(t.id)
        systems.append(r.system)
        completions.append(r.completion)
        choices.append(None if r.answer_choices is None else choice_ids.setdefault(r.answer_choices, len(choice_ids)))
        if len(r.turns) == 1:
            users.append(r.turns[0][1])
            extra_turns.append(None)
        else:
            users.append(r.turns[-1][1])
            extra_turns.append(list(r.turns[:-1]))
    slow_frame = pl.DataFrame(
        {
            fastrender.INDEX: pl.Series(slow, dtype=pl.UInt32),
            TEMPLATE_ID: pl.Series(ids, dtype=pl.String),
            "_sys": pl.Series(systems, dtype=pl.String),
            "_user": pl.Series(users, dtype=pl.String),
            COMPLETION_TEXT: pl.Series(completions, dtype=pl.String),
            "_choices": pl.Series(choices, dtype=pl.UInt32),
        }
    )
    body = pl.concat([*groups, slow_frame]).sort(fastrender.INDEX) if groups else slow_frame
    extra: list[list[tuple[str, str]] | None] | None = None
    if any(e is not None for e in extra_turns):
        extra = [None] * n_rows
        for i, e in zip(slow, extra_turns, strict=True):
            extra[i] = e
    return _assemble(rows, task, mode, body, choice_ids, extra, names)


def _assemble(
    rows: pl.DataFrame,
    task: Task,
    mode: str,
    body: pl.DataFrame,
    choice_ids: dict[tuple[str, ...], int],
    extra_turns: list[list[tuple[str, str]] | None] | None,
    names: list[str],
) -> pl.DataFrame:
    """The row-contract frame from ``body`` (template_id, _sys, _user, _completion_text, _choices in row order)."""
    multi = extra_turns is not None
    systems: list[str | None] = body.get_column("_sys").to_list() if multi else []
    users: list[str] = body.get_column("_user").to_list() if multi else []
    if extra_turns is not None:
        flat: list[str] = []
        for s, e, u in zip(systems, extra_turns, users, strict=True):
            texts = [c for _, c in e] if e else []
            flat.append("\n\n".join([x for x in (s, *texts, u) if x is not None]))
        prompt_text = pl.Series(PROMPT_TEXT, flat, dtype=pl.String)
    n = body.height
    frame = pl.DataFrame(
        {
            TASK: pl.repeat(task.name, n, dtype=pl.String, eager=True),
            TEMPLATE_ID: body.get_column(TEMPLATE_ID),
            SOURCE_REF: rows.get_column(SOURCE_REF).cast(pl.String),
            "_sys": body.get_column("_sys"),
            "_user": body.get_column("_user"),
            COMPLETION_TEXT: body.get_column(COMPLETION_TEXT),
            ANSWER_CHOICES: _choices_column(choice_ids, body.get_column("_choices")),
            FIELDS_TEXT: rows.select(_fields_text(rows, names)).to_series()
            if names
            else pl.Series([""] * n, dtype=pl.String),
        }
    )
    if multi:
        frame = frame.with_columns(prompt_text)
    else:
        sys_user = pl.concat_str([pl.col("_sys"), pl.col("_user")], separator="\n\n")
        frame = frame.with_columns(
            pl.when(pl.col("_sys").is_null()).then(pl.col("_user")).otherwise(sys_user).alias(PROMPT_TEXT)
        )
    payload: list[pl.Expr | pl.Series]
    if mode == "finetune":
        payload = [pl.col(PROMPT_TEXT).alias(PROMPT), pl.col(COMPLETION_TEXT).alias(COMPLETION)]
    elif extra_turns is not None:
        payload = [_prompt_messages(systems, extra_turns, users), _assistant()]
    else:
        payload = [_simple_messages(frame), _assistant()]
    frame = frame.with_columns(payload)
    return frame.select(
        TASK, TEMPLATE_ID, SOURCE_REF, PROMPT, COMPLETION, ANSWER_CHOICES, PROMPT_TEXT, COMPLETION_TEXT, FIELDS_TEXT
    ).rechunk()


def _choices_column(index: dict[tuple[str, ...], int], ids: pl.Series) -> pl.Series:
    """list[str] per row: rows share few distinct tuples (``index``: tuple -> id), so convert those once and gather."""
    distinct = pl.Series([list(c) for c in index], dtype=pl.List(pl.String))
    return distinct.gather(ids) if index else pl.Series([None] * len(ids), dtype=pl.List(pl.String))


def _msg(role: str, content: pl.Expr) -> pl.Expr:
    return pl.struct(pl.lit(role, dtype=pl.String).alias("role"), content.alias("content"))


def _simple_messages(body: pl.DataFrame) -> pl.Series:
    """[system?, user] per row. Built flat and grouped: ``concat_list`` of two structs is ~30x slower."""
    user = pl.concat_list([_msg("user", pl.col("_user"))]).alias(PROMPT)
    if body.get_column("_sys").null_count() == body.height:
        return body.select(user).to_series()
    base = body.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"), pl.col("_sys"), pl.col("_user"))
    turns = [
        base.filter(pl.col("_sys").is_not_null()).select(
            "i", pl.lit(0).alias("k"), _msg("system", pl.col("_sys")).alias("m")
        ),
        base.select("i", pl.lit(1).alias("k"), _msg("user", pl.col("_user")).alias("m")),
    ]
    flat = pl.concat(turns).sort("i", "k")
    return flat.group_by("i", maintain_order=True).agg(pl.col("m").alias(PROMPT)).get_column(PROMPT)


def _assistant() -> pl.Expr:
    return pl.concat_list([_msg("assistant", pl.col(COMPLETION_TEXT))]).alias(COMPLETION)


def _prompt_messages(
    systems: list[str | None], extra: list[list[tuple[str, str]] | None], users: list[str]
) -> pl.Series:
    out = []
    for s, e, u in zip(systems, extra, users, strict=True):
        msgs = [{"role": "system", "content": s}] if s is not None else []
        msgs.extend({"role": r, "content": c} for r, c in e or ())
        msgs.append({"role": "user", "content": u})
        out.append(msgs)
    return pl.Series(PROMPT, out, dtype=MESSAGES)


def _fields_text(rows: pl.DataFrame, names: list[str]) -> pl.Expr:
    """The raw template inputs as text, joined by newlines (decontamination checks raw fields too)."""
    exprs: list[pl.Expr] = []
    for name in names:
        dtype = rows.schema[name]
        col = pl.col(name)
        if dtype == pl.String:
            exprs.append(col)
        elif dtype == pl.List(pl.String):
            exprs.append(col.list.join("\n"))
        elif dtype.is_numeric() or dtype == pl.Boolean:
            exprs.append(col.cast(pl.String))
        else:
            import json

            exprs.append(col.map_elements(lambda v: json.dumps(v, ensure_ascii=False, default=str), pl.String))
    return pl.concat_str(exprs, separator="\n", ignore_nulls=True).fill_null("").alias(FIELDS_TEXT)
