"""Benchmark decontamination: word n-gram overlap with evaluation sets, and canary strings.

Every training row is checked twice — its rendered text (``_prompt_text`` + ``_completion_text``) and its raw
template inputs (``_fields_text``) — against the n-grams (default 13 normalized words, :mod:`textnorm`) of each
benchmark item's named fields. N-grams are stable uint64 hashes; membership is a ``np.searchsorted`` into the
benchmark's sorted hashes, so no Python set is built. N-grams that occur in the row's template boilerplate (the
template's constant text) do not count: a template cannot contaminate. Items with fewer than ``ngram`` words
cannot match and are counted in the report as ``items_too_short``.

Canary strings (e.g. BIG-bench's GUID) always drop the rows containing them, in both modes: a canary means
"never train on this". Benchmark matches drop rows in mode ``drop`` and are only reported in mode ``report``.
"""

from __future__ import annotations

import json
from collections.abc import Mapping
from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate import textnorm
from cardtune.curate.card import Benchmark, Decontaminate
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
from cardtune.curate.yamlsrc import Issue, UserInputError, did_you_mean

ROW_BATCH = 16_384
EXAMPLES = 3


@dataclass(frozen=True)
class BenchmarkIndex:
    """A benchmark's n-grams: sorted unique hashes and, for each, the first item that has it."""

    name: str
    hashes: npt.NDArray[np.uint64]
    item_of: npt.NDArray[np.int64]
    item_ids: list[str]
    items_too_short: int

    def lookup(self, query: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """For each query hash, the index into ``hashes`` if present, else -1."""
        if not len(self.hashes):
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.searchsorted(self.hashes, query)
        pos = np.minimum(pos, len(self.hashes) - 1)
        return np.where(self.hashes[pos] == query, pos, -1).astype(np.int64)


def _where(bench: Benchmark, index: int) -> tuple[str, tuple[str | int, ...]]:
    return (bench.path or f"hf:{bench.hf}"), ("filters", "decontaminate", "benchmarks", index)


def load_benchmark(bench: Benchmark, card_dir: Path, index: int = 0) -> pl.DataFrame:
    """The benchmark's rows with an ``_item_id`` and an ``_item_text`` column (named fields joined by newlines)."""
    file, loc = _where(bench, index)
    if bench.path is not None:
        path = (card_dir / bench.path).resolve()
        if not path.is_file():
            raise UserInputError(
                [Issue(file=str(path), line=0, loc=(*loc, "path"), message="benchmark file not found")]
            )
        suffix = path.suffix.lower()
        try:
            if suffix in (".jsonl", ".ndjson"):
                frame = pl.read_ndjson(path)
            elif suffix == ".json":
                frame = pl.read_json(path)
            elif suffix == ".parquet":
                frame = pl.read_parquet(path)
            elif suffix == ".csv":
                frame = pl.read_csv(path)
            else:
                raise UserInputError(
                    [
                        Issue(
                            str(path), 0, (*loc, "path"), f"unsupported benchmark format {suffix!r} (jsonl/parquet/csv)"
                        )
                    ]
                )
        except (pl.exceptions.PolarsError, OSError, ValueError) as exc:
            raise UserInputError([Issue(str(path), 0, (*loc, "path"), f"cannot read benchmark: {exc}")]) from exc
        file = str(path)
    else:
        frame = _load_hub(bench, loc)
    if frame.height == 0:
        raise UserInputError([Issue(file, 0, loc, f"benchmark '{bench.name}' is empty (no rows)")])
    for name in [*bench.fields, *([bench.id_field] if bench.id_field else [])]:
        if name not in frame.columns:
            raise UserInputError(
                [
                    Issue(
                        file,
                        0,
                        (*loc, "id_field" if name == bench.id_field else "fields"),
                        f"benchmark '{bench.name}' has no field '{name}'{did_you_mean(name, frame.columns)}"
                        f" (fields: {', '.join(frame.columns)})",
                    )
                ]
            )
    parts = []
    for name in bench.fields:
        dtype = frame.schema[name]
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            col = col.cast(pl.List(pl.String)).list.join("\n")
        elif isinstance(dtype, pl.Struct | pl.Array):
            raise UserInputError([Issue(file, 0, (*loc, "fields"), f"field '{name}' is {dtype}, not text")])
        parts.append(col.cast(pl.String).fill_null(""))
    ids = pl.col(bench.id_field).cast(pl.String) if bench.id_field else pl.int_range(pl.len()).cast(pl.String)
    return frame.select(ids.alias("_item_id"), pl.concat_str(parts, separator="\n").alias("_item_text"))


def _load_hub(bench: Benchmark, loc: tuple[str | int, ...]) -> pl.DataFrame:
    file = f"hf:{bench.hf}"
    try:
        import datasets  # optional: cardtune[hf]
    except ImportError as exc:
        raise UserInputError(
            [Issue(file, 0, (*loc, "hf"), "hub benchmarks need the `datasets` package: pip install 'cardtune[hf]'")]
        ) from exc
    try:
        ds = datasets.load_dataset(bench.hf, bench.config, split=bench.split, revision=bench.revision)
    except Exception as exc:  # offline, unknown dataset, bad split: all are user-facing
        raise UserInputError(
            [
                Issue(
                    file,
                    0,
                    (*loc, "hf"),
                    f"cannot load hub dataset '{bench.hf}' (config {bench.config}, split {bench.split}): {exc}."
                    " Offline? Download it once, or export it to a local file and use `path:`.",
                )
            ]
        ) from exc
    return pl.from_arrow(ds.data.table)  # type: ignore[return-value]


def index_benchmark(name: str, items: pl.DataFrame, n: int) -> BenchmarkIndex:
    """Hash every item's n-grams; keep the first item per n-gram."""
    hashes: list[npt.NDArray[np.uint64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    too_short = 0
    for lo in range(0, items.height, ROW_BATCH):
        grams = textnorm.ngrams(textnorm.words(items.get_column("_item_text").slice(lo, ROW_BATCH)), n)
        counts = np.diff(grams.doc_offsets)
        too_short += int((counts == 0).sum())
        hashes.append(grams.hashes)
        owners.append(np.repeat(np.arange(lo, lo + len(counts), dtype=np.int64), counts))
    flat = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    uniq, first = np.unique(flat, return_index=True)
    return BenchmarkIndex(name, uniq, owner[first], items.get_column("_item_id").to_list(), too_short)


def _boilerplate_hashes(boilerplate: Mapping[str, str], n: int) -> dict[str, npt.NDArray[np.uint64]]:
    if not boilerplate:
        return {}
    keys = list(boilerplate)
    grams = textnorm.ngrams(textnorm.words(pl.Series([boilerplate[k] for k in keys], dtype=pl.String)), n)
    return {k: np.unique(grams.hashes[grams.doc_offsets[i] : grams.doc_offsets[i + 1]]) for i, k in enumerate(keys)}


def _scan(
    texts: pl.Series,
    templates: npt.NDArray[np.object_] | None,
    indexes: list[BenchmarkIndex],
    n: int,
    boiler: dict[str, npt.NDArray[np.uint64]],
) -> list[dict[int, tuple[int, int, str]]]:
    """Per benchmark: rows (batch-local) with a match → (item, matched n-grams, first matching n-gram's text)."""
    w = textnorm.words(texts)
    grams = textnorm.ngrams(w, n)
    doc_of = np.repeat(np.arange(len(texts)), np.diff(grams.doc_offsets))
    usable = np.ones(len(grams.hashes), dtype=bool)
    if templates is not None and boiler and len(doc_of):
        row_templates = templates[doc_of]
        for tid in np.unique(templates).tolist():
            own = boiler.get(str(tid))
            if own is not None and len(own):
                sel = np.flatnonzero(row_templates == tid)
                usable[sel[np.isin(grams.hashes[sel], own)]] = False  # boilerplate n-grams never count
    results: list[dict[int, tuple[int, int, str]]] = []
    for idx in indexes:
        pos = idx.lookup(grams.hashes)
        where = np.flatnonzero((pos >= 0) & usable)
        out: dict[int, tuple[int, int, str]] = {}
        if len(where):
            docs = doc_of[where]
            matches = np.bincount(docs, minlength=len(texts))
            first = where[np.r_[True, docs[1:] != docs[:-1]]]
            for d, g in zip(np.unique(docs).tolist(), first.tolist(), strict=True):
                out[d] = (int(idx.item_of[pos[g]]), int(matches[d]), w.text(int(grams.first_word[g]), n))
        results.append(out)
    return results


def decontaminate(df: pl.DataFrame, spec: Decontaminate, card_dir: Path, boilerplate: Mapping[str, str]) -> StepResult:
    """Drop (or report) rows overlapping a benchmark by an n-gram, and drop rows holding a canary string."""
    indexes = [
        index_benchmark(b.name, load_benchmark(b, card_dir, i), spec.ngram) for i, b in enumerate(spec.benchmarks)
    ]
    boiler = _boilerplate_hashes(boilerplate, spec.ngram)
    rendered = (
        df.get_column(PROMPT_TEXT).cast(pl.String).fill_null("")
        + "\n"
        + df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("")
    )
    fields = df.get_column(FIELDS_TEXT).cast(pl.String).fill_null("") if FIELDS_TEXT in df.columns else None
    templates = df.get_column(TEMPLATE_ID).cast(pl.String).fill_null("").to_numpy().astype(object)
    hits: list[dict[int, tuple[str, int, int, str]]] = [{} for _ in indexes]  # row → (where, item, count, ngram)
    for lo in range(0, df.height, ROW_BATCH):
        for where, texts, tmpl in (("rendered", rendered, templates), ("fields", fields, None)):
            if texts is None:
                continue
            batch_templates = tmpl[lo : lo + ROW_BATCH] if tmpl is not None else None
            found = _scan(texts.slice(lo, ROW_BATCH), batch_templates, indexes, spec.ngram, boiler)
            for k, batch_rows in enumerate(found):
                for d, (item, count, gram) in batch_rows.items():
                    hits[k].setdefault(lo + d, (where, item, count, gram))

    canary = np.zeros(df.height, dtype=bool)
    canary_of: dict[int, str] = {}
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

    reason: dict[int, str] = {}
    evidence: dict[int, str] = {}
    for r, text in canary_of.items():
        reason[r], evidence[r] = "canary", json.dumps({"canary": text})
    table = []
    for k, idx in enumerate(indexes):
        rows = hits[k]
        for r, (where, item, count, gram) in sorted(rows.items()):
            if r in reason:
                continue
            reason[r] = f"benchmark:{idx.name}"
            evidence[r] = json.dumps(
                {
                    "benchmark": idx.name,
                    "item_id": idx.item_ids[item],
                    "ngram": gram,
                    "matched_ngrams": count,
                    "where": where,
                    "n": spec.ngram,
                }
            )
        refs = df.get_column(SOURCE_REF).gather(sorted(rows)).to_list() if rows else []
        examples = [
            {"source_ref": ref, "item_id": idx.item_ids[rows[r][1]], "ngram": rows[r][3], "where": rows[r][0]}
            for ref, r in zip(refs[:EXAMPLES], sorted(rows)[:EXAMPLES], strict=True)
        ]
        table.append(
            {
                "benchmark": idx.name,
                "items": len(idx.item_ids),
                "items_too_short": idx.items_too_short,
                "items_matched": len({v[1] for v in rows.values()}),
                "rows_matched": len(rows),
                "rows_dropped": len(rows) if spec.mode == "drop" else 0,
                "examples": examples,
            }
        )
    drop = canary.copy()
    if spec.mode == "drop":
        for matched in hits:
            drop[list(matched)] = True
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
        "canary_rows": int(canary.sum()),
        "rows_dropped": len(drop_idx),
    }
    return StepResult(kept=df.filter(pl.Series(~drop)), rejects=rejects, report=report)
