"""Near dedup: MinHash over word n-gram shingles, LSH banding, verified candidate pairs, one row per cluster.

Signatures come from :mod:`cardtune.curate.filters.minhash`; candidate pairs from LSH banding are verified by
estimated Jaccard ≥ threshold, grouped into connected components, and one row is kept per component (``first``
or ``longest_completion``). Rows of earlier versions (``against``) are never kept: new rows in a component with
one of them are dropped as duplicates of it. Global: it compares all rows.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import numpy as np
import polars as pl
from pydantic import Field, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.filters import minhash
from cardtune.curate.filters.base import BuildContext, Filter, InputRef, Scope
from cardtune.curate.filters.exact_dedup import scoped_text
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult, make_rejects


class NearDedup(Section):
    """Near duplicates: MinHash over word n-gram shingles with LSH banding."""

    threshold: float = Field(0.8, gt=0, le=1, description="Estimated Jaccard to call a pair duplicate. Default: 0.8.")
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations. Default: 128.")
    ngram: int = Field(5, ge=1, description="Words per shingle. Default: 5.")
    bands: int | None = Field(None, ge=1, description="LSH bands; default: derived from threshold (16 at 0.8).")
    rows: int | None = Field(None, ge=1, description="Rows per band; bands*rows must equal num_perm. Default: derived.")
    scope: Scope = Field("prompt", description="Text compared. Default: `prompt`.")
    keep: Literal["first", "longest_completion"] = Field(
        "first", description="Which row of a duplicate cluster survives. Default: `first`."
    )
    against: list[str] = Field(
        default_factory=list, description="Earlier version directories whose rows new rows must not duplicate."
    )

    @model_validator(mode="after")
    def _banding(self) -> NearDedup:
        if (self.bands is None) != (self.rows is None):
            raise ValueError("give both `bands` and `rows`, or neither")
        if self.bands is not None and self.rows is not None and self.bands * self.rows != self.num_perm:
            raise ValueError(f"bands*rows = {self.bands * self.rows} but num_perm is {self.num_perm}")
        return self


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


def _run(df: pl.DataFrame, spec: NearDedup, ctx: BuildContext) -> StepResult:
    from cardtune.curate.rows import with_flat_text
    from cardtune.curate.store import versions

    against = []
    for ref in spec.against:
        version_dir = ctx.inputs.version(ref)
        frames = [versions.read_split(version_dir, s) for s in ("train", "eval")]
        rows = pl.concat(frames, how="vertical_relaxed").unique(SOURCE_REF, keep="first", maintain_order=True)
        against.append(with_flat_text(rows))
    return near_dedup(df, spec, against=against)


def _inputs(spec: NearDedup) -> list[InputRef]:
    return [InputRef("version", ref, ("filters", "dedup", "near", "against", i)) for i, ref in enumerate(spec.against)]


NEAR_DEDUP = Filter(
    name="near_dedup",
    key=("dedup", "near"),
    spec=NearDedup,
    run=_run,
    locality="global",
    title="near dedup",
    inputs=_inputs,
    summary="Near dedup (MinHash LSH, verified pairs)",
)
