"""Max turns: drop conversations longer (or shorter) than a bound (the worked example of adding a filter).

A row's turns are its non-system messages, prompt and completion together: a single-turn instruction row has
2 (user + assistant), a plain ``finetune`` row counts as 2 as well. Rows with more than ``max`` turns are dropped
with reason ``too_many_turns`` and evidence ``{"turns": n, "max": m}``; rows with fewer than ``min`` (e.g. 3: only
real multi-turn conversations) with ``too_few_turns`` and ``{"turns": n, "min": m}``. Row-local: each row is judged
alone, so a partitioned executor may run it per partition.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from typing import Any

import polars as pl
from pydantic import Field, SerializerFunctionWrapHandler, model_serializer, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.filters.base import BuildContext, Filter
from cardtune.curate.rows import COMPLETION, PROMPT, StepResult, make_rejects


class MaxTurns(Section):
    """Drop conversations with more than `max` (or fewer than `min`) turns (system messages are not turns)."""

    max: int | None = Field(None, ge=1, description="Most turns a row may have. Default: none (give `max` or `min`).")
    min: int | None = Field(
        None, ge=1, description="Fewest turns a row may have (3: only multi-turn conversations). Default: none."
    )

    @model_validator(mode="after")
    def _bounds(self) -> MaxTurns:
        if self.max is None and self.min is None:
            raise ValueError("give `max`, `min` or both")
        if self.max is not None and self.min is not None and self.min > self.max:
            raise ValueError(f"`min` ({self.min}) is above `max` ({self.max})")
        return self

    @model_serializer(mode="wrap")
    def _set_fields(self, handler: SerializerFunctionWrapHandler) -> Any:
        data = handler(self)  # `min` came after the first release: hashed only when set, so old ids stay
        return {k: v for k, v in data.items() if v is not None} if isinstance(data, dict) else data


def turns(rows: pl.DataFrame) -> pl.Series:
    """Non-system messages per row, prompt and completion together (2 for a plain prompt/completion pair)."""

    def count(column: str) -> pl.Expr:
        if isinstance(rows.schema[column], pl.List):
            role = pl.element().struct.field("role")
            return pl.col(column).list.eval(role != "system").list.sum().fill_null(0)
        return pl.lit(1)

    return rows.select((count(PROMPT) + count(COMPLETION)).cast(pl.Int64).alias("turns")).to_series()


def max_turns(rows: pl.DataFrame, spec: MaxTurns, ctx: BuildContext) -> StepResult:
    """Keep rows with at most ``spec.max`` (at least ``spec.min``) turns; reject the others with their turn count."""
    n = turns(rows)
    over = n > spec.max if spec.max is not None else pl.Series([False] * rows.height, dtype=pl.Boolean)
    under = (n < spec.min) & ~over if spec.min is not None else pl.Series([False] * rows.height, dtype=pl.Boolean)
    parts = []
    if spec.max is not None:
        ev = pl.format('{{"turns": {}, "max": {}}}', n.filter(over), pl.lit(spec.max)).alias("__ev")
        parts.append(make_rejects(rows.filter(over).with_columns(ev), "max_turns", "too_many_turns", pl.col("__ev")))
    if spec.min is not None:
        ev = pl.format('{{"turns": {}, "min": {}}}', n.filter(under), pl.lit(spec.min)).alias("__ev")
        parts.append(make_rejects(rows.filter(under).with_columns(ev), "max_turns", "too_few_turns", pl.col("__ev")))
    drop = over | under
    rejects = pl.concat(parts) if len(parts) > 1 else parts[0]
    if len(parts) > 1:  # in row order, as every row-local filter returns them
        order = pl.Series(range(rows.height)).filter(over).append(pl.Series(range(rows.height)).filter(under))
        rejects = rejects.with_columns(order.alias("__pos")).sort("__pos").drop("__pos")
    return StepResult(rows.filter(~drop), rejects, _report(spec, int(over.sum()), int(under.sum())))


def _report(spec: MaxTurns, over: int, under: int) -> dict[str, object]:
    out: dict[str, object] = {} if spec.max is None else {"max": spec.max}
    if spec.min is not None:
        out |= {"min": spec.min, "too_few": int(under)}
    return {**out, "dropped": int(over) + int(under)}


def _merge(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """Bounds as they are, counts added up (the report of a partitioned run equals the whole run's)."""
    out: dict[str, Any] = {k: reports[0][k] for k in ("max", "min") if k in reports[0]}
    if "min" in out:
        out["too_few"] = sum(int(r["too_few"]) for r in reports)
    return {**out, "dropped": sum(int(r["dropped"]) for r in reports)}


MAX_TURNS = Filter(
    name="max_turns",
    key=("max_turns",),
    spec=MaxTurns,
    run=max_turns,
    locality="row",
    merge=_merge,
    title="max turns",
    summary="Drop conversations longer than `max` (or shorter than `min`) turns",
)
