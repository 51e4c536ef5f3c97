"""Near dedup: MinHash over word n-gram shingles, LSH banding, verified candidate pairs, one row per cluster.

Signatures come from :mod:`cardtune.curate.filters.minhash`; LSH banding proposes candidate pairs, which are
verified (``verify``) on the exact Jaccard of the two rows' shingle sets (``exact``, the default: the shingles of
the rows in candidate pairs are recomputed and intersected), on the MinHash estimate (``estimate``, ±0.035 at 128
permutations) or not at all (``none``: every candidate pair is a duplicate, like datatrove). Verified pairs are
grouped into connected components, and one row is kept per component (``first`` or ``longest_completion``). Rows
of earlier versions (``against``) are never kept: new rows in a component with one of them are dropped as
duplicates of it. Global: it compares all rows.

Each reject's evidence gives its Jaccard with the row kept for it: ``jaccard`` (exact) with ``verify: exact``,
``jaccard_estimate`` otherwise. The report counts ``candidate_pairs`` (from LSH) and ``verified_pairs``.
"""

from __future__ import annotations

import json
from collections.abc import Sequence
from typing import Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import Field, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.filters import minhash
from cardtune.curate.filters.base import BuildContext, Filter, InputRef, Scope
from cardtune.curate.filters.exact_dedup import scoped_text
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult, make_rejects


class NearDedup(Section):
    """Near duplicates: MinHash over word n-gram shingles with LSH banding."""

    threshold: float = Field(
        0.8,
        gt=0,
        le=1,
        description="Jaccard of two rows' shingle sets at or above which they are duplicates (the MinHash estimate "
        "of it with `verify: estimate`; with `verify: none` it only sets the banding). Default: 0.8.",
    )
    num_perm: int = Field(128, ge=8, le=1024, description="MinHash permutations. Default: 128.")
    ngram: int = Field(5, ge=1, description="Words per shingle. Default: 5.")
    bands: int | None = Field(
        None,
        ge=1,
        description="LSH bands. Default: derived from `threshold` and `verify` (at 0.8 and 128 permutations: 32 "
        "bands of 4 rows with `exact`, which proposes 99%+ of the pairs at the threshold; 16 of 8 otherwise).",
    )
    rows: int | None = Field(None, ge=1, description="Rows per band; bands*rows must equal num_perm. Default: derived.")
    verify: Literal["exact", "estimate", "none"] = Field(
        "exact",
        description="How LSH candidate pairs are confirmed: `exact` (Jaccard of the two shingle sets, computed), "
        "`estimate` (MinHash estimate of it, ±0.035 at 128 permutations, so pairs near the threshold are missed "
        "or merged by chance), `none` (every candidate pair is a duplicate, like datatrove). Default: `exact`.",
    )
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
    """The card's (bands, rows), or the split derived from ``threshold``, ``num_perm`` and ``verify``.

    With exact verification a false candidate costs one set intersection, never a wrong merge, so the banding
    favours recall (:func:`~cardtune.curate.filters.minhash.recall_banding`); otherwise false candidates become
    false merges (``none``) or chances of one (``estimate``), so it balances both errors
    (:func:`~cardtune.curate.filters.minhash.optimal_banding`).
    """
    if spec.bands is not None and spec.rows is not None:
        return spec.bands, spec.rows
    if spec.verify == "exact":
        return minhash.recall_banding(spec.threshold, spec.num_perm)
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
    sig, digest = hasher.sketch(texts)
    valid = minhash.has_shingles(sig)
    a, b = minhash.candidate_pairs(sig, bands, rows, valid)
    pair_jaccard = np.zeros(0)
    if spec.verify == "exact":
        pair_jaccard = minhash.exact_jaccard(texts, a, b, digest, spec.ngram)
        ok = pair_jaccard >= spec.threshold
    elif spec.verify == "estimate":
        ok = minhash.estimated_jaccard(sig, a, b) >= spec.threshold
    else:
        ok = np.ones(len(a), dtype=np.bool_)
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
    # Jaccard of each dropped row with the row kept for it (below the threshold when they are linked via others)
    jac: npt.NDArray[np.float64]
    if spec.verify == "exact":
        verified = (a, b, pair_jaccard)
        jac, jac_key = _exact_jaccard(texts, digest, spec.ngram, verified, dropped_idx, keep_of_dropped), "jaccard"
    else:
        jac, jac_key = minhash.estimated_jaccard(sig, dropped_idx, keep_of_dropped), "jaccard_estimate"
    sizes = np.bincount(label, minlength=total)
    evidence = [
        json.dumps(
            {
                jac_key: round(float(j), 4),
                "cluster_size": int(sizes[label[i]]),
                "earlier_version": bool(k < n_prior),
                "threshold": spec.threshold,
            }
        )
        for i, k, j in zip(dropped_idx.tolist(), keep_of_dropped.tolist(), jac.tolist(), strict=True)
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
        "verify": spec.verify,
        "candidate_pairs": len(a),
        "verified_pairs": int(ok.sum()),
        "duplicates": int(dropped_mask.sum()),
        "duplicates_of_earlier_versions": int((keep_of_dropped < n_prior).sum()),
        "rows_without_shingles": int((~valid[n_prior:]).sum()),
    }
    return StepResult(kept=df.filter(~row_drop), rejects=rejects, report=report)


def _exact_jaccard(
    texts: pl.Series,
    digest: minhash.U64,
    ngram: int,
    verified: tuple[minhash.I64, minhash.I64, npt.NDArray[np.float64]],
    x: minhash.I64,
    y: minhash.I64,
) -> npt.NDArray[np.float64]:
    """Jaccard of rows ``x[i]``, ``y[i]``: looked up among the verified candidate pairs ``(a, b, jaccard)``
    (ascending (a, b), a < b), computed for the others (rows linked through other rows)."""
    a, b, known = verified
    width = np.int64(max(int(x.max(initial=0)), int(y.max(initial=0)), int(b.max(initial=0))) + 1)
    codes = a * width + b
    want = np.minimum(x, y) * width + np.maximum(x, y)
    pos = np.minimum(np.searchsorted(codes, want), max(len(codes) - 1, 0))
    found = codes[pos] == want if len(codes) else np.zeros(len(want), dtype=np.bool_)
    out = np.empty(len(want), dtype=np.float64)
    out[found] = known[pos[found]]
    out[~found] = minhash.exact_jaccard(texts, x[~found], y[~found], digest, ngram)
    return out


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
    summary="Near dedup (MinHash LSH, candidate pairs verified on their exact Jaccard)",
)
