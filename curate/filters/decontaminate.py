"""Benchmark decontamination: word n-gram overlap with evaluation sets, and canary strings.

Every training row is checked twice — its rendered text (``_prompt_text`` + ``_completion_text``) and its raw
template inputs (``_fields_text``) — against the n-grams (default 13 normalized words, :mod:`textnorm`) of each
benchmark item's named fields. N-grams are stable uint64 hashes; membership is a ``np.searchsorted`` into the
benchmark's sorted hashes, so no Python set is built. N-grams that occur in the row's template boilerplate (the
template's constant text) do not count: a template cannot contaminate. Items with fewer than ``ngram`` words
cannot match and are counted in the report as ``items_too_short``.

Canary strings (e.g. BIG-bench's GUID) flag the rows containing them. Mode ``drop`` (the default) drops every
flagged row — benchmark matches and canary hits — as rejects with the evidence; mode ``report`` drops nothing
and only reports (per benchmark: items matched, rows matched, examples; per canary: rows and examples). A
conversation row's evidence also names the turn its first matching n-gram starts in (``turn``, its position in
prompt + completion from 0, and ``role``; :mod:`cardtune.curate.filters.turns`).

Rendered text and raw fields of a batch are tokenized in one pass; a ``bench_index.Prefilter`` table drops most
n-grams with one gather before the binary search, and template boilerplate is only checked for the few
n-grams that matched.
"""

from __future__ import annotations

import json
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import Field, field_validator, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.filters import textnorm, turns
from cardtune.curate.filters.base import BuildContext, Filter, InputRef
from cardtune.curate.filters.bench_index import (
    ROW_BATCH,
    BenchmarkIndex,
    Prefilter,
    benchmark_index,
    benchmark_source,
    index_benchmark,
    load_benchmark,
)
from cardtune.curate.rows import (
    COMPLETION_TEXT,
    FIELDS_TEXT,
    PROMPT_TEXT,
    SOURCE_REF,
    TEMPLATE_ID,
    StepResult,
    empty_rejects,
    make_rejects,
)
from cardtune.curate.sources.spec import known_format

EXAMPLES = 3
__all__ = ["DECONTAMINATE", "Benchmark", "Decontaminate", "decontaminate", "index_benchmark", "load_benchmark"]


class Benchmark(Section):
    """An evaluation set that training rows must not overlap."""

    name: str = Field(..., min_length=1, description="Name in reports (required).")
    path: str | None = Field(
        None, description="Local data file (any source format), relative to the card. Default: none."
    )
    hf: str | None = Field(None, description="Hub dataset id instead of `path`. Default: none.")
    config: str | None = Field(None, description="Hub configuration. Default: none.")
    split: str = Field("test", description="Hub split. Default: `test`.")
    revision: str | None = Field(None, description="Hub revision. Default: none.")
    fields: list[str] = Field(..., min_length=1, description="Fields whose text is checked (required).")
    id_field: str | None = Field(None, description="Field with the item id; default: the row index.")
    format: str = Field(
        "auto", description="File format, as a task source's `format`; `auto` infers it from the name. Default: `auto`."
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return known_format(value)

    @model_validator(mode="after")
    def _one_of(self) -> Benchmark:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` or `hf`")
        return self


class Decontaminate(Section):
    """Benchmark decontamination by word n-gram overlap, and canary strings."""

    ngram: int = Field(13, ge=3, description="Words per n-gram. Default: 13.")
    mode: Literal["drop", "report"] = Field("drop", description="Drop matching rows or only report. Default: `drop`.")
    benchmarks: list[Benchmark] = Field(default_factory=list, description="Benchmarks to check. Default: none.")
    canaries: list[str] = Field(
        default_factory=list, description="Rows containing any of these strings are flagged (dropped in mode `drop`)."
    )


def _boilerplate_hashes(boilerplate: Mapping[str, str], n: int) -> dict[str, npt.NDArray[np.uint64]]:
    if not boilerplate:
        return {}
    keys = list(boilerplate)
    grams = textnorm.ngrams(textnorm.words(pl.Series([boilerplate[k] for k in keys], dtype=pl.String)), n)
    return {k: np.unique(grams.hashes[grams.doc_offsets[i] : grams.doc_offsets[i + 1]]) for i, k in enumerate(keys)}


# where ("rendered" | "fields"), item, matched n-grams, first matching n-gram, its first word's index in the text
Hit = tuple[str, int, int, str, int]


def _scan(
    rendered: pl.Series,
    fields: pl.Series | None,
    templates: npt.NDArray[np.object_],
    indexes: list[BenchmarkIndex],
    prefilter: Prefilter,
    n: int,
    boiler: dict[str, npt.NDArray[np.uint64]],
) -> list[dict[int, Hit]]:
    """Per benchmark: rows (batch-local) with a match → hit; rendered text and raw fields tokenized in one pass.

    A row matched in both counts as ``rendered`` (its first match there); the counts add both places up.
    """
    rows = len(rendered)
    texts = rendered if fields is None else pl.concat([rendered, fields])
    w = textnorm.words(texts)
    grams = textnorm.ngrams(w, n)
    cand = prefilter.candidates(grams.hashes)
    doc_of = np.searchsorted(grams.doc_offsets, cand, side="right") - 1  # document of each candidate n-gram
    if boiler and len(cand):  # boilerplate n-grams of a rendered row's own template never count
        rendered_cand = np.flatnonzero(doc_of < rows)
        row_templates = templates[doc_of[rendered_cand]]
        usable = np.ones(len(cand), dtype=bool)
        for tid in np.unique(row_templates).tolist():
            own = boiler.get(str(tid))
            if own is not None and len(own):
                sel = rendered_cand[row_templates == tid]
                usable[sel[np.isin(grams.hashes[cand[sel]], own)]] = False
        cand, doc_of = cand[usable], doc_of[usable]
    results: list[dict[int, Hit]] = []
    for idx in indexes:
        pos = idx.lookup(grams.hashes[cand])
        found = np.flatnonzero(pos >= 0)  # ordered by document: rendered rows first, then fields
        out: dict[int, Hit] = {}
        if len(found):
            docs = doc_of[found]
            row = docs % rows
            matches = np.bincount(row, minlength=rows)
            first = found[np.r_[True, docs[1:] != docs[:-1]]]
            for d, g in zip(np.unique(docs).tolist(), first.tolist(), strict=True):
                r = d % rows
                if r not in out:
                    word = int(grams.first_word[cand[g]])
                    where = "rendered" if d < rows else "fields"
                    at = word - int(w.doc_offsets[d])
                    out[r] = (where, int(idx.item_of[pos[g]]), int(matches[r]), w.text(word, n), at)
        results.append(out)
    return results


def merge_decontaminate(reports: Sequence[Mapping[str, Any]]) -> dict[str, Any]:
    """The report over all partitions: counts add up, examples in row order (first few), matched items as a set."""
    first = reports[0]
    benches = []
    for k, bench in enumerate(first["benchmarks"]):
        parts = [r["benchmarks"][k] for r in reports]
        matched = set().union(*(p[MATCHED] for p in parts))
        benches.append(
            {
                **{key: value for key, value in bench.items() if key != MATCHED},
                "items_matched": len(matched),
                "rows_matched": sum(p["rows_matched"] for p in parts),
                "rows_dropped": sum(p["rows_dropped"] for p in parts),
                "examples": [e for p in parts for e in p["examples"]][:EXAMPLES],
            }
        )
    canaries = [
        {
            "canary": c["canary"],
            "rows": sum(r["canaries"][k]["rows"] for r in reports),
            "examples": [e for r in reports for e in r["canaries"][k]["examples"]][:EXAMPLES],
        }
        for k, c in enumerate(first["canaries"])
    ]
    totals = {key: sum(r[key] for r in reports) for key in ("canary_rows", "rows_flagged", "rows_dropped")}
    return {"mode": first["mode"], "ngram": first["ngram"], "benchmarks": benches, "canaries": canaries, **totals}


MATCHED = "_matched_items"  # per benchmark in a partition's report: the matched item positions (merged away)


def decontaminate(df: pl.DataFrame, spec: Decontaminate, ctx: BuildContext) -> StepResult:
    """Drop (mode ``drop``) or only report (mode ``report``) rows overlapping a benchmark or holding a canary.

    The report of one call lists each benchmark's matched item positions under ``_matched_items``;
    :func:`merge_decontaminate` (the filter's ``merge``, applied by the pipeline) turns them into counts.
    """
    indexes = [benchmark_index(b, ctx, i, spec.ngram) for i, b in enumerate(spec.benchmarks)]
    boiler = _boilerplate_hashes(ctx.boilerplate, spec.ngram)
    prefilter = Prefilter(indexes)
    rendered = (
        df.get_column(PROMPT_TEXT).cast(pl.String).fill_null("")
        + "\n"
        + df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("")
    )
    fields = df.get_column(FIELDS_TEXT).cast(pl.String).fill_null("") if FIELDS_TEXT in df.columns else None
    templates = df.get_column(TEMPLATE_ID).cast(pl.String).fill_null("").to_numpy().astype(object)
    hits: list[dict[int, Hit]] = [{} for _ in indexes]  # row → (where, item, count, ngram, word)
    conversation = turns.conversation_mask(df)
    if indexes:
        for lo in range(0, df.height, ROW_BATCH):
            found = _scan(
                rendered.slice(lo, ROW_BATCH),
                fields.slice(lo, ROW_BATCH) if fields is not None else None,
                templates[lo : lo + ROW_BATCH],
                indexes,
                prefilter,
                spec.ngram,
                boiler,
            )
            for k, batch_rows in enumerate(found):
                hits[k].update({lo + d: hit for d, hit in batch_rows.items()})

    canary = np.zeros(df.height, dtype=bool)
    canary_of: dict[int, str] = {}
    canary_table = []
    for text in spec.canaries:
        expr = pl.any_horizontal(
            pl.col(c).cast(pl.String).fill_null("").str.contains(text, literal=True)
            for c in (PROMPT_TEXT, COMPLETION_TEXT, FIELDS_TEXT)
            if c in df.columns
        )
        has = df.select(expr).to_series().to_numpy()
        for r in np.flatnonzero(has & ~canary).tolist():
            canary_of[r] = text
        canary |= has
        with_it = np.flatnonzero(has)
        examples = df.get_column(SOURCE_REF).gather(with_it[:EXAMPLES]).to_list()
        canary_table.append({"canary": text, "rows": len(with_it), "examples": examples})

    reason: dict[int, str] = {}
    evidence: dict[int, str] = {}
    for r, text in canary_of.items():
        reason[r], evidence[r] = "canary", json.dumps({"canary": text})
    table = []
    for k, idx in enumerate(indexes):
        rows = hits[k]
        for r, (where, item, count, gram, at) in sorted(rows.items()):
            if r in reason:
                continue
            reason[r] = f"benchmark:{idx.name}"
            match: dict[str, Any] = {
                "benchmark": idx.name,
                "item_id": idx.item_ids[item],
                "ngram": gram,
                "matched_ngrams": count,
                "where": where,
                "n": spec.ngram,
            }
            evidence[r] = json.dumps(match | _turn_of(df, conversation, r, where, at))
        refs = df.get_column(SOURCE_REF).gather(sorted(rows)[:EXAMPLES]).to_list() if rows else []
        examples = [
            {"source_ref": ref, "item_id": idx.item_ids[rows[r][1]], "ngram": rows[r][3], "where": rows[r][0]}
            for ref, r in zip(refs, sorted(rows)[:EXAMPLES], strict=True)
        ]
        table.append(
            {
                "benchmark": idx.name,
                "items": len(idx.item_ids),
                "items_too_short": idx.items_too_short,
                "items_matched": len({v[1] for v in rows.values()}),
                MATCHED: sorted({v[1] for v in rows.values()}),
                "rows_matched": len(rows),
                "rows_dropped": len(rows) if spec.mode == "drop" else 0,
                "examples": examples,
            }
        )
    flagged = canary.copy()
    for matched in hits:
        flagged[list(matched)] = True
    drop = flagged if spec.mode == "drop" else np.zeros(df.height, dtype=bool)  # report mode drops nothing
    drop_idx = np.flatnonzero(drop).tolist()
    if drop_idx:
        dropped = df[drop_idx].with_columns(
            pl.Series("__reason", [reason[r] for r in drop_idx], dtype=pl.String),
            pl.Series("__ev", [evidence[r] for r in drop_idx], dtype=pl.String),
        )
        rejects = make_rejects(dropped, "decontaminate", pl.col("__reason"), evidence=pl.col("__ev"))
    else:
        rejects = empty_rejects()
    report: dict[str, object] = {
        "mode": spec.mode,
        "ngram": spec.ngram,
        "benchmarks": table,
        "canaries": canary_table,
        "canary_rows": int(canary.sum()),
        "rows_flagged": int(flagged.sum()),
        "rows_dropped": len(drop_idx),
    }
    return StepResult(kept=df.filter(pl.Series(~drop)), rejects=rejects, report=report)


def _turn_of(df: pl.DataFrame, conversation: npt.NDArray[np.bool_], r: int, where: str, word: int) -> dict[str, Any]:
    """``{turn, role}`` of the turn a conversation row's match starts in (its rendered text); ``{}`` otherwise."""
    if not conversation[r] or where != "rendered":
        return {}
    found = turns.turn_of_word(df, r, word)
    return {} if found is None else {"turn": found[0], "role": found[1]}


def _inputs(spec: Decontaminate) -> list[InputRef]:
    return [
        InputRef("benchmark", b.name, ("filters", "decontaminate", "benchmarks", i), benchmark_source(b))
        for i, b in enumerate(spec.benchmarks)
    ]


DECONTAMINATE = Filter(
    name="decontaminate",
    key=("decontaminate",),
    spec=Decontaminate,
    run=decontaminate,
    locality="row",
    merge=merge_decontaminate,
    title="decontaminate",
    inputs=_inputs,
    summary="Benchmark decontamination (n-gram overlap, canary strings)",
)
