"""Max turns: drop conversations longer than a bound (the worked example of adding a filter).

A row's turns are its non-system messages, prompt and completion together: a single-turn instruction row has
2 (user + assistant), a plain ``finetune`` row counts as 2 as well. Rows with more than ``max`` turns are dropped
with reason ``too_many_turns`` and evidence ``{"turns": n, "max": m}``. Row-local: each row is judged alone,
so a partitioned executor may run it per partition.
"""

from __future__ import annotations

import polars as pl
from pydantic import Field

from cardtune.curate.card.section import Section
from cardtune.curate.filters.base import BuildContext, Filter
from cardtune.curate.rows import COMPLETION, PROMPT, StepResult, make_rejects


class MaxTurns(Section):
    """Drop conversations with more than `max` turns (system messages are not turns)."""

    max: int = Field(..., ge=1, description="Most turns a row may have (required).")


def turns(rows: pl.DataFrame) -> pl.Series:
    """Non-system messages per row, prompt and completion together (2 for a plain prompt/completion pair)."""

    def count(column: str) -> pl.Expr:
        if isinstance(rows.schema[column], pl.List):
            role = pl.element().struct.field("role")
            return pl.col(column).list.eval(role != "system").list.sum().fill_null(0)
        return pl.lit(1)

    return rows.select((count(PROMPT) + count(COMPLETION)).cast(pl.Int64).alias("turns")).to_series()


def max_turns(rows: pl.DataFrame, spec: MaxTurns, ctx: BuildContext) -> StepResult:
    """Keep rows with at most ``spec.max`` turns; reject the others with their turn count."""
    n = turns(rows)
    over = n > spec.max
    dropped = rows.filter(over).with_columns(
        pl.format('{{"turns": {}, "max": {}}}', n.filter(over), pl.lit(spec.max)).alias("__ev")
    )
    rejects = make_rejects(dropped, "max_turns", "too_many_turns", evidence=pl.col("__ev"))
    return StepResult(rows.filter(~over), rejects, {"max": spec.max, "dropped": dropped.height})


MAX_TURNS = Filter(
    name="max_turns",
    key=("max_turns",),
    spec=MaxTurns,
    run=max_turns,
    locality="row",
    merge=lambda reports: {"max": reports[0]["max"], "dropped": sum(int(r["dropped"]) for r in reports)},
    title="max turns",
    summary="Drop conversations longer than `max` turns",
)
