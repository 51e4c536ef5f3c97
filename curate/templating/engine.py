"""The interface every rendering engine implements, and the assembly of rendered parts into the row contract.

Owns ``Engine`` (``render(rows, plan, template, mode)``: the row-contract frame for the plan slice's rows, in
their order, or None for "cannot, let the next engine try"), ``RowFailure`` (a row an engine rejects, with its
position, so ``render_task`` reports the task's first bad row whichever engine met it), ``take`` (a slice's
rows of the task frame) and ``assemble`` (rendered text parts → ``task, template_id, source_ref, prompt,
completion, answer_choices`` and the internal text columns of ``rows.py``).

The engines: ``fastrender.FastEngine`` (simple templates, column-wise polars), ``render.JinjaEngine`` (every
template, row by row) and ``passthrough.PassthroughEngine`` (tasks without templates).
"""

from __future__ import annotations

import json
from typing import Protocol

import polars as pl

from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import (
    ANSWER_CHOICES,
    CHOICE_ID,
    COMPLETION,
    COMPLETION_TEXT,
    FIELDS_TEXT,
    PROMPT,
    PROMPT_TEXT,
    SOURCE_REF,
    SYSTEM_TEXT,
    TASK,
    TEMPLATE_ID,
    USER_TEXT,
)
from cardtune.curate.templating.library import Template
from cardtune.curate.templating.plan import PlanSlice

MESSAGE = pl.Struct({"role": pl.String, "content": pl.String})
MESSAGES = pl.List(MESSAGE)
Turns = list[tuple[str, str]]


class Engine(Protocol):
    """Renders one template's rows of a task (``plan``), or declines with None."""

    name: str

    def render(
        self, rows: pl.DataFrame, plan_slice: PlanSlice, template: Template | None, mode: str
    ) -> pl.DataFrame | None:
        """Render the rows ``plan_slice.rows`` of ``rows`` (the task's whole frame: exemplars may be any row).

        Returns the row-contract frame for them in their order, None when this engine cannot render them, and
        raises ``RowFailure`` for a row that no engine can render.
        """
        ...


class RowFailure(Exception):
    """Row ``row`` (a position in the task's frame) cannot render: ``error`` is what the user sees."""

    def __init__(self, row: int, error: UserInputError) -> None:
        self.row, self.error = row, error
        super().__init__(str(error))


def take(rows: pl.DataFrame, plan: PlanSlice, columns: list[str]) -> pl.DataFrame:
    """``columns`` of the slice's rows, in its order."""
    frame = rows.select(columns)
    return frame if plan.whole else frame.select(pl.all().gather(plan.positions()))


def assemble(
    rows: pl.DataFrame,
    plan: PlanSlice,
    mode: str,
    body: pl.DataFrame,
    choice_ids: dict[tuple[str, ...], int],
    extra_turns: list[Turns | None] | None,
) -> pl.DataFrame:
    """The row-contract frame of a slice from its rendered parts.

    ``rows``: the slice's rows (``take``: the task's template inputs and ``source_ref``); ``body``: per row
    ``template_id``, ``_sys`` (null without a system part), ``_user`` (the last user turn), ``_completion_text``
    and ``_choices`` (an id in ``choice_ids``: tuple → id); ``extra_turns``: per row the turns between the
    system text and the last user turn (None for a row without, or for the whole slice when no row has any).
    """
    names = plan.plan.inputs
    multi = extra_turns is not None
    systems: list[str | None] = body.get_column(SYSTEM_TEXT).to_list() if multi else []
    users: list[str] = body.get_column(USER_TEXT).to_list() if multi else []
    if extra_turns is not None:
        flat: list[str] = []
        for s, e, u in zip(systems, extra_turns, users, strict=True):
            texts = [c for _, c in e] if e else []
            flat.append("\n\n".join([x for x in (s, *texts, u) if x is not None]))
        prompt_text = pl.Series(PROMPT_TEXT, flat, dtype=pl.String)
    n = body.height
    frame = pl.DataFrame(
        {
            TASK: pl.repeat(plan.plan.task, n, dtype=pl.String, eager=True),
            TEMPLATE_ID: body.get_column(TEMPLATE_ID),
            SOURCE_REF: rows.get_column(SOURCE_REF).cast(pl.String),
            SYSTEM_TEXT: body.get_column(SYSTEM_TEXT),
            USER_TEXT: body.get_column(USER_TEXT),
            COMPLETION_TEXT: body.get_column(COMPLETION_TEXT),
            ANSWER_CHOICES: _choices_column(choice_ids, body.get_column(CHOICE_ID)),
            FIELDS_TEXT: rows.select(_fields_text(rows, names)).to_series()
            if names
            else pl.Series([""] * n, dtype=pl.String),
        }
    )
    if multi:
        frame = frame.with_columns(prompt_text)
    else:
        sys_user = pl.concat_str([pl.col(SYSTEM_TEXT), pl.col(USER_TEXT)], separator="\n\n")
        frame = frame.with_columns(
            pl.when(pl.col(SYSTEM_TEXT).is_null()).then(pl.col(USER_TEXT)).otherwise(sys_user).alias(PROMPT_TEXT)
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
    user = pl.concat_list([_msg("user", pl.col(USER_TEXT))]).alias(PROMPT)
    if body.get_column(SYSTEM_TEXT).null_count() == body.height:
        return body.select(user).to_series()
    base = body.select(pl.int_range(pl.len(), dtype=pl.UInt32).alias("i"), pl.col(SYSTEM_TEXT), pl.col(USER_TEXT))
    turns = [
        base.filter(pl.col(SYSTEM_TEXT).is_not_null()).select(
            "i", pl.lit(0).alias("k"), _msg("system", pl.col(SYSTEM_TEXT)).alias("m")
        ),
        base.select("i", pl.lit(1).alias("k"), _msg("user", pl.col(USER_TEXT)).alias("m")),
    ]
    flat = pl.concat(turns).sort("i", "k")
    return flat.group_by("i", maintain_order=True).agg(pl.col("m").alias(PROMPT)).get_column(PROMPT)


def _assistant() -> pl.Expr:
    return pl.concat_list([_msg("assistant", pl.col(COMPLETION_TEXT))]).alias(COMPLETION)


def _prompt_messages(systems: list[str | None], extra: list[Turns | None], users: list[str]) -> pl.Series:
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
            exprs.append(col.map_elements(lambda v: json.dumps(v, ensure_ascii=False, default=str), pl.String))
    return pl.concat_str(exprs, separator="\n", ignore_nulls=True).fill_null("").alias(FIELDS_TEXT)


def in_row_order(parts: list[tuple[PlanSlice, pl.DataFrame]]) -> pl.DataFrame:
    """The slices' frames as one frame in the task's row order."""
    if len(parts) == 1 and parts[0][0].whole:
        return parts[0][1]
    frame = pl.concat([f for _, f in parts], rechunk=True)  # a gather across chunks is ~10x slower
    order = pl.concat([s.positions() for s, _ in parts])
    return frame.select(pl.all().gather(order.arg_sort()))
