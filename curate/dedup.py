"""Exact and near-duplicate removal over rendered rows; every dropped row names the row it duplicates.

* :func:`exact_dedup` — text normalized by :func:`textnorm.normalize` (NFKC, lowercase, whitespace folded)
  hashed with xxh3-64 (stable; never ``pl.Expr.hash``); the first occurrence in row order is kept.
* :func:`near_dedup` — MinHash over word n-gram shingles (:mod:`cardtune.curate.minhash`), LSH banding,
  candidate pairs verified by estimated Jaccard ≥ threshold, connected components, one row kept per component
  (``first`` or ``longest_completion``). Rows of earlier versions (``against``) are never kept: new rows in a
  component with one of them are dropped as duplicates of it.
"""

from __future__ import annotations

import json
from collections.abc import Sequence

import numpy as np
import polars as pl
import xxhash

from cardtune.curate import minhash, textnorm
from cardtune.curate.card import ExactDedup, NearDedup
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult, make_rejects

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


def exact_dedup(df: pl.DataFrame, spec: ExactDedup) -> StepResult:
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


def banding(spec: NearDedup) -> tuple[int, int]:
    """The card's (bands, rows), or the split derived from ``threshold`` and ``num_perm``."""
    if spec.bands is not None and spec.rows is not None:
        return spec.bands, spec.rows
    return minhash.optimal_banding(spec.threshold, spec.num_perm)


def near_dedup(df: pl.DataFrame, spec: NearDedup, against: Sequence[pl.DataFrame] = ()) -> StepResult:
    """Drop near duplicates (MinHash LSH, verified, connected components); see the module docstring."""
    bands, rows = banding(spec)
    prior = [frame.select(PROMPT_TEXT, COMPLETION_TEXT, SOURCE_REF) for frame in against if frame.height]
    prior_df = pl.concat(prior, how="vertical_relaxed") if prior else None
    n_prior = prior_df.height if prior_df is not None else 0
    texts = scoped_text(df, spec.scope)
    if prior_df is not None:
        texts = pl.concat([scoped_text(prior_df, spec.scope), texts])
    hasher = minhash.MinHasher(num_perm=spec.num_perm, ngram=spec.ngram)
    sig = hasher.signatures(texts)
    valid = minhash.has_shingles(sig)
    a, b = minhash.candidate_pairs(sig, bands, rows, valid)
    jac = minhash.estimated_jaccard(sig, a, b)
    ok = jac >= spec.threshold
    total = len(texts)
    label = minhash.connected_components(total, a[ok], b[ok])

    # survivor[c] = the row component c (labelled by its smallest row index) keeps: an earlier-version row if it
    # holds one (then c < n_prior), else per keep policy among the new rows.
    if spec.keep == "longest_completion" and df.height:
        length = np.zeros(total, dtype=np.int64)
        length[n_prior:] = df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("").str.len_chars().to_numpy()
        order = np.lexsort((np.arange(total), -length, label))  # by component, longest first, then row order
        heads = order[np.r_[True, label[order][1:] != label[order][:-1]]]
        survivor = np.arange(total, dtype=np.int64)
        survivor[label[heads]] = heads
        survivor[:n_prior] = np.arange(n_prior)  # a component holding an earlier-version row keeps that row
    else:
        survivor = np.arange(total, dtype=np.int64)  # component c (its smallest row index) keeps row c
    keeper = survivor[label]  # for every row, the row its component keeps
    new = np.arange(n_prior, total)
    dropped_mask = keeper[new] != new
    dropped_idx = new[dropped_mask]
    keep_of_dropped = keeper[dropped_idx]

    refs = texts_refs = df.get_column(SOURCE_REF).cast(pl.String)
    if prior_df is not None:
        texts_refs = pl.concat([prior_df.get_column(SOURCE_REF).cast(pl.String), refs])
    dup_of = texts_refs.gather(keep_of_dropped) if len(keep_of_dropped) else pl.Series([], dtype=pl.String)
    est = minhash.estimated_jaccard(sig, dropped_idx, keep_of_dropped) if len(dropped_idx) else np.zeros(0)
    sizes = np.bincount(label, minlength=total)
    evidence = [
        json.dumps(
            {
                "jaccard_estimate": round(float(j), 4),
                "cluster_size": int(sizes[label[i]]),
                "earlier_version": bool(k < n_prior),
                "threshold": spec.threshold,
            }
        )
        for i, k, j in zip(dropped_idx.tolist(), keep_of_dropped.tolist(), est.tolist(), strict=True)
    ]
    row_drop = pl.Series(dropped_mask)
    dropped = df.filter(row_drop).with_columns(
        pl.Series("__dup_of", dup_of, dtype=pl.String), pl.Series("__ev", evidence, dtype=pl.String)
    )
    rejects = make_rejects(
        dropped, "near_dedup", "near_duplicate", evidence=pl.col("__ev"), duplicate_of=pl.col("__dup_of")
    )
    report: dict[str, object] = {
        "scope": spec.scope,
        "threshold": spec.threshold,
        "num_perm": spec.num_perm,
        "bands": bands,
        "rows": rows,
        "ngram": spec.ngram,
        "keep": spec.keep,
        "candidate_pairs": len(a),
        "verified_pairs": int(ok.sum()),
        "duplicates": int(dropped_mask.sum()),
        "duplicates_of_earlier_versions": int((keep_of_dropped < n_prior).sum()),
        "rows_without_shingles": int((~valid[n_prior:]).sum()),
    }
    return StepResult(kept=df.filter(~row_drop), rejects=rejects, report=report)
