"""Exact dedup: rows whose normalized text equals an earlier row's are dropped; each names the row it duplicates.

Text is normalized by :func:`textnorm.normalize` (NFKC, lowercase, whitespace folded) and hashed with xxh3-64
(stable; never ``pl.Expr.hash``); the first occurrence in row order is kept. Global: it compares all rows.
Conversations are compared whole; a dropped conversation row's evidence also says how many turns it has
(``turns``, non-system messages; :mod:`cardtune.curate.filters.turns`).
"""

from __future__ import annotations

import numpy as np
import polars as pl
import xxhash
from pydantic import Field

from cardtune.curate.card.section import Section
from cardtune.curate.filters import textnorm, turns
from cardtune.curate.filters.base import BuildContext, Decision, Filter, RowView, Scope, global_run
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult


class ExactDedup(Section):
    """Exact duplicates on normalized text (NFKC, lowercase, whitespace folded)."""

    scope: Scope = Field("both", description="Text compared: `prompt`, `completion` or `both`. Default: `both`.")


_SEP = "\x00"  # joins prompt and completion for scope `both`; not whitespace, so folding keeps it


_BATCH = 65_536  # normalization in batches stays in cache (about 25% faster at 1M rows)


def scoped_text(df: pl.DataFrame, scope: str) -> pl.Series:
    """The text a dedup step compares: prompt, completion, or both joined by a separator."""
    prompt = df.get_column(PROMPT_TEXT).cast(pl.String).fill_null("")
    completion = df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("")
    if scope == "prompt":
        return prompt
    if scope == "completion":
        return completion
    if scope == "both":
        return prompt + _SEP + completion
    raise ValueError(f"unknown dedup scope {scope!r} (expected prompt, completion or both)")


def text_hashes(texts: pl.Series) -> pl.Series:
    """Stable xxh3-64 of each normalized text (UInt64)."""
    norm = pl.concat([textnorm.normalize(texts.slice(i, _BATCH)) for i in range(0, len(texts), _BATCH)] or [texts])
    # hashing the UTF-8 bytes polars already holds: no per-row str.encode (about 4x faster than a str loop)
    values = np.fromiter(
        map(xxhash.xxh3_64_intdigest, norm.cast(pl.Binary).to_list()), dtype=np.uint64, count=len(norm)
    )
    return pl.Series("_hash", values, dtype=pl.UInt64)


HASH = "_exact_hash"  # the key column: xxh3-64 of the normalized scoped text
TURNS = "_exact_turns"  # a conversation row's turns (null for other rows), for the evidence


def exact_keys(df: pl.DataFrame, spec: ExactDedup, ctx: BuildContext | None = None) -> pl.DataFrame:
    """Row-local: the hash of each row's normalized text (per ``spec.scope``)."""
    if df.height == 0:
        return pl.DataFrame({HASH: pl.Series([], dtype=pl.UInt64), TURNS: pl.Series([], dtype=pl.Int64)})
    n_turns = pl.Series(TURNS, turns.turn_counts(df), dtype=pl.Int64)
    return pl.DataFrame({HASH: text_hashes(scoped_text(df, spec.scope)), TURNS: n_turns})


def exact_decide(view: RowView, spec: ExactDedup, ctx: BuildContext | None = None) -> Decision:
    """Over all rows' hashes: every row whose hash an earlier row has is dropped as a duplicate of that row."""
    keys = pl.DataFrame({"h": view.column(HASH), "ref": view.column(SOURCE_REF), "turns": view.column(TURNS)})
    marked = keys.with_columns(
        pl.col("h").is_first_distinct().alias("first"), pl.col("ref").first().over("h").alias("dup_of")
    ).with_row_index("pos")
    dropped = marked.filter(~pl.col("first"))
    digest = pl.col("h").map_elements(_hex, pl.String)
    evidence = dropped.select(
        pl.when(pl.col("turns").is_null())
        .then(pl.format('{{"scope": "{}", "xxh3": "{}"}}', pl.lit(spec.scope), digest))
        .otherwise(pl.format('{{"scope": "{}", "xxh3": "{}", "turns": {}}}', pl.lit(spec.scope), digest, "turns"))
    ).to_series()
    report: dict[str, object] = {
        "scope": spec.scope,
        "duplicates": dropped.height,
        "clusters": dropped.get_column("h").n_unique(),
    }
    return Decision(
        drop=dropped.get_column("pos").cast(pl.Int64).to_numpy(),
        reason="duplicate",
        evidence=evidence.to_list(),
        duplicate_of=dropped.get_column("dup_of").to_list(),
        report=report,
    )


def _hex(h: int) -> str:
    return f"{h:016x}"


_run = global_run(exact_keys, exact_decide, "exact_dedup")


def exact_dedup(df: pl.DataFrame, spec: ExactDedup, ctx: BuildContext | None = None) -> StepResult:
    """Drop rows whose normalized text (per ``spec.scope``) equals an earlier row's; first occurrence kept."""
    return _run(df, spec, ctx)


EXACT_DEDUP = Filter(
    name="exact_dedup",
    key=("dedup", "exact"),
    spec=ExactDedup,
    run=exact_dedup,
    locality="global",
    keys=exact_keys,
    decide=exact_decide,
    title="exact dedup",
    on_by_default=True,
    summary="Exact dedup on normalized text",
)
