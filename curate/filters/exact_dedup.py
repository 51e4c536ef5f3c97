"""Exact dedup: rows whose normalized text equals an earlier row's are dropped; each names the row it duplicates.

Text is normalized by :func:`textnorm.normalize` (NFKC, lowercase, whitespace folded) and hashed with xxh3-64
(stable; never ``pl.Expr.hash``); the first occurrence in row order is kept. Global: it compares all rows.
"""

from __future__ import annotations

import numpy as np
import polars as pl
import xxhash
from pydantic import Field

from cardtune.curate.card.section import Section
from cardtune.curate.filters import textnorm
from cardtune.curate.filters.base import BuildContext, Filter, Scope
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult, make_rejects


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


def exact_dedup(df: pl.DataFrame, spec: ExactDedup, ctx: BuildContext | None = None) -> StepResult:
    """Drop rows whose normalized text (per ``spec.scope``) equals an earlier row's; first occurrence kept."""
    if df.height == 0:
        return StepResult(kept=df, rejects=make_rejects(df, "exact_dedup", "duplicate"), report={"duplicates": 0})
    hashed = df.with_columns(text_hashes(scoped_text(df, spec.scope)).alias("__h"))
    hashed = hashed.with_columns(
        pl.col("__h").is_first_distinct().alias("__first"),
        pl.col(SOURCE_REF).first().over("__h").alias("__dup_of"),
    )
    dropped = hashed.filter(~pl.col("__first"))
    evidence = pl.concat_str(
        [
            pl.lit(f'{{"scope": "{spec.scope}", "xxh3": "'),
            pl.col("__h").map_elements(lambda h: f"{h:016x}", return_dtype=pl.String),
            pl.lit('"}'),
        ]
    )
    rejects = make_rejects(dropped, "exact_dedup", "duplicate", evidence=evidence, duplicate_of=pl.col("__dup_of"))
    kept = hashed.filter(pl.col("__first")).drop("__h", "__first", "__dup_of")
    report: dict[str, object] = {
        "scope": spec.scope,
        "duplicates": dropped.height,
        "clusters": dropped.get_column("__h").n_unique(),
    }
    return StepResult(kept=kept, rejects=rejects, report=report)


EXACT_DEDUP = Filter(
    name="exact_dedup",
    key=("dedup", "exact"),
    spec=ExactDedup,
    run=exact_dedup,
    locality="global",
    title="exact dedup",
    on_by_default=True,
    summary="Exact dedup on normalized text",
)
