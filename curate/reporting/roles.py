"""Tokens per role (system, user, assistant, tool) of a version's conversation rows, for ``cardtune inspect`` and the
HTML report.

Counted as the rest of the report counts tokens: with the mixture's tokenizer when the version was built with one
(resolved against the card's folder, as the build did) and whitespace words otherwise — or when that tokenizer
cannot be loaded here, which the unit then says. A turn's text is the filters' (content, reasoning, tool calls;
:mod:`cardtune.curate.filters.turns`). Only conversation rows are counted; a version without any has no table.
Reporting only: nothing here is on the build path.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl
from rich.table import Table

from cardtune.curate import tokens
from cardtune.curate.errors import UserInputError
from cardtune.curate.filters import turns
from cardtune.curate.inputs import NamedInput, card_path, looks_like_path
from cardtune.curate.rows import COMPLETION, PROMPT, TASK, TEMPLATE_ID
from cardtune.curate.store import versions as store

if TYPE_CHECKING:
    from cardtune.curate.store.manifest import Manifest

ROLES = ("system", "user", "assistant", "tool")
ROWS = "conversations"


def report_tokenizer(m: Manifest) -> tuple[NamedInput | None, str]:
    """The mixture's tokenizer of version ``m`` (``None``: count words) and the unit to show."""
    unit = m.tokens.unit
    if unit == tokens.WORDS:
        return None, tokens.WORDS
    path = card_path(unit, Path(m.card_path).parent if m.card_path else Path.cwd())
    if path.exists():
        named = NamedInput(unit, path, None)
    elif looks_like_path(unit):
        return None, f"{tokens.WORDS} (tokenizer {unit} not found here)"
    else:
        named = NamedInput(unit, None, unit)
    try:
        tokens.load_tokenizer(named)
    except UserInputError:
        return None, f"{tokens.WORDS} (tokenizer {unit} not loadable here)"
    return named, unit


def role_tokens(version_dir: Path, m: Manifest) -> tuple[pl.DataFrame, str]:
    """Per split and task with conversation rows: their count and tokens per role; and the unit."""
    tokenizer, unit = report_tokenizer(m)
    frames = []
    for split in store.SPLITS:
        rows = pl.read_parquet(version_dir / f"{split}.parquet", columns=[TASK, TEMPLATE_ID, PROMPT, COMPLETION])
        table = turns.turn_table(rows)
        if table.height == 0:
            continue
        counted = table.with_columns(
            pl.Series("tokens", tokens.count_tokens(table.get_column(turns.TEXT), tokenizer), dtype=pl.Int64),
            rows.get_column(TASK).gather(table.get_column(turns.ROW)).alias(TASK),
        )
        per_role = counted.group_by(TASK, turns.ROLE).agg(pl.col("tokens").sum())
        n_rows = counted.group_by(TASK).agg(pl.col(turns.ROW).n_unique().alias(ROWS))
        wide = n_rows.join(
            per_role.pivot(on=turns.ROLE, index=TASK, values="tokens"), on=TASK, how="left", maintain_order="left"
        )
        wide = wide.with_columns(
            *(pl.col(r).fill_null(0) if r in wide.columns else pl.lit(0).alias(r) for r in ROLES)
        ).sort(TASK)
        frames.append(wide.select(pl.lit(split).alias("split"), TASK, ROWS, *(pl.col(r).cast(pl.Int64) for r in ROLES)))
    return (pl.concat(frames) if frames else pl.DataFrame()), unit


def role_table(stats: pl.DataFrame, unit: str) -> Table:
    """``cardtune inspect``'s table of :func:`role_tokens`."""
    table = Table(title=f"conversation tokens per role ({unit})", title_justify="left")
    for col in ("split", "task", ROWS, *ROLES):
        table.add_column(col, justify="left" if col in ("split", "task") else "right")
    for r in stats.iter_rows(named=True):
        table.add_row(r["split"], r[TASK], *(f"{r[c]:,}" for c in (ROWS, *ROLES)))
    return table
