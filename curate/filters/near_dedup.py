"""Near dedup: MinHash over word n-gram shingles, LSH banding, verified candidate pairs, one row per cluster.

Signatures come from :mod:`cardtune.curate.filters.minhash`; LSH banding proposes candidate pairs, which are
verified (``verify``) on the exact Jaccard of the two rows' shingle sets (``exact``, the default: the shingles of
the rows in candidate pairs are recomputed and intersected), on the MinHash estimate (``estimate``, ±0.035 at 128
permutations) or not at all (``none``: every candidate pair is a duplicate, like datatrove). Verified pairs are
grouped into connected components, and one row is kept per component (``first`` or ``longest_completion``). Rows
of earlier versions (``against``) are never kept: new rows in a component with one of them are dropped as
duplicates of it. Global: it compares all rows.

Each reject's evidence gives its Jaccard with the row kept for it: ``jaccard`` (exact) with ``verify: exact``,
``jaccard_estimate`` otherwise; a dropped conversation row's also says how many turns it has (``turns``,
non-system messages: conversations are compared whole; :mod:`cardtune.curate.filters.turns`). The report counts
``candidate_pairs`` (from LSH) and ``verified_pairs``.
"""

from __future__ import annotations

import functools
import json
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any, Literal

import numpy as np
import numpy.typing as npt
import polars as pl
from pydantic import Field, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.cores import driver_threads, thread_map, window_map
from cardtune.curate.filters import minhash, turns
from cardtune.curate.filters.base import (
    BuildContext,
    Decision,
    Filter,
    FrameView,
    InputRef,
    RowView,
    Scope,
    rejects_of,
)
from cardtune.curate.filters.exact_dedup import scoped_text
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, StepResult


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


VALID = "_near_valid"  # the row has at least one shingle
DIGEST = "_near_digest"  # sum of its shingle hashes (equal digests: Jaccard 1)
CHARS = "_near_chars"  # completion length (``keep: longest_completion``)
TURNS = "_near_turns"  # a conversation row's turns (null for other rows), for the evidence


def band_column(band: int) -> str:
    """The key column of one LSH band."""
    return f"_near_band_{band}"


def near_keys(df: pl.DataFrame, spec: NearDedup, ctx: BuildContext | None = None) -> pl.DataFrame:
    """Row-local: per row its LSH band keys, whether it has shingles, its shingle digest (and completion length)."""
    bands, rows = banding(spec)
    hasher = minhash.MinHasher(num_perm=spec.num_perm, ngram=spec.ngram)
    sig, digest = hasher.sketch(scoped_text(df, spec.scope))
    columns = [pl.Series(VALID, minhash.has_shingles(sig)), pl.Series(DIGEST, digest, dtype=pl.UInt64)]
    columns.append(pl.Series(TURNS, turns.turn_counts(df), dtype=pl.Int64))
    columns += [pl.Series(band_column(b), minhash.band_keys(sig, b, rows), dtype=pl.UInt64) for b in range(bands)]
    if spec.keep == "longest_completion":
        chars = df.get_column(COMPLETION_TEXT).cast(pl.String).fill_null("").str.len_chars().cast(pl.Int64)
        columns.append(chars.alias(CHARS))
    return pl.DataFrame(columns)


@dataclass(frozen=True)
class _Rows:
    """Earlier versions' rows (first, in memory) followed by the new rows (a view): global row numbers."""

    view: RowView
    prior: pl.DataFrame  # earlier versions' rows with their key columns
    scope: Scope

    @property
    def n_prior(self) -> int:
        return self.prior.height

    def array(self, name: str) -> npt.NDArray[Any]:
        new = self.view.column(name).to_numpy()
        return np.concatenate([self.prior.get_column(name).to_numpy(), new]) if self.n_prior else new

    def refs(self) -> pl.Series:
        new = self.view.column(SOURCE_REF).cast(pl.String)
        return pl.concat([self.prior.get_column(SOURCE_REF).cast(pl.String), new]) if self.n_prior else new

    def texts(self, positions: minhash.I64) -> pl.Series:
        """Scoped text of global rows ``positions`` (ascending)."""
        cut = int(np.searchsorted(positions, self.n_prior))
        old = scoped_text(self.prior[positions[:cut]], self.scope) if cut else None
        new = self.view.texts(positions[cut:] - self.n_prior, self.scope)
        return pl.concat([old, new]) if old is not None else new

    def exact_jaccard(self, a: minhash.I64, b: minhash.I64, digest: minhash.U64, ngram: int) -> npt.NDArray[np.float64]:
        """Exact Jaccard of pairs of global rows; the texts of the rows in pairs are fetched a chunk at a time."""
        out = np.ones(len(a), dtype=np.float64)
        differ = np.flatnonzero(digest[a] != digest[b])  # equal digests: the same shingles (Jaccard 1), no fetch

        def verify(lo: int) -> npt.NDArray[np.float64]:
            chunk = differ[lo : lo + PAIRS_PER_CHUNK]
            x, y = a[chunk], b[chunk]
            held = np.unique(np.concatenate([x, y]))
            return minhash.exact_jaccard(
                self.texts(held), np.searchsorted(held, x), np.searchsorted(held, y), digest[held], ngram
            )

        starts = range(0, len(differ), PAIRS_PER_CHUNK)
        for lo, jaccard in zip(starts, window_map(verify, starts), strict=True):  # a few chunks at once
            out[differ[lo : lo + PAIRS_PER_CHUNK]] = jaccard
        return out

    def estimated_jaccard(self, a: minhash.I64, b: minhash.I64, hasher: minhash.MinHasher) -> npt.NDArray[np.float64]:
        """MinHash estimate of the Jaccard of pairs of global rows (signatures recomputed a chunk at a time)."""
        out = np.zeros(len(a), dtype=np.float64)
        for lo in range(0, len(a), PAIRS_PER_CHUNK):
            x, y = a[lo : lo + PAIRS_PER_CHUNK], b[lo : lo + PAIRS_PER_CHUNK]
            held = np.unique(np.concatenate([x, y]))
            sig = hasher.signatures(self.texts(held))
            out[lo : lo + len(x)] = minhash.estimated_jaccard(sig, np.searchsorted(held, x), np.searchsorted(held, y))
        return out


def _candidate_codes(rows_of: _Rows, idx: minhash.I64, bands: int, total: int) -> minhash.I64:
    """The distinct LSH candidate pairs of rows ``idx`` as ``a * total + b`` (a < b), ascending.

    Bands are merged one at a time, so memory holds the distinct pairs, not every band's links; with more than
    one driver thread, each thread merges its own share of the bands and the shares are merged at the end (the
    union does not depend on the order).
    """

    def merge(share: range) -> minhash.I64:
        codes = np.zeros(0, dtype=np.int64)
        for band in share:
            la, lb = minhash.band_links(rows_of.array(band_column(band))[idx], idx)
            if len(la):
                ua, ub = minhash.unique_pairs([la], [lb], total)
                codes = np.union1d(codes, ua * np.int64(total) + ub)
        return codes

    shares = min(driver_threads(), bands)
    merged = thread_map(merge, [range(k, bands, shares) for k in range(shares)])
    return functools.reduce(np.union1d, merged) if len(merged) > 1 else merged[0]


PAIRS_PER_CHUNK = 32_768  # candidate pairs verified at once: bounds the texts and shingle sets held (~70 MB)


def near_decide(
    view: RowView, spec: NearDedup, ctx: BuildContext | None = None, prior: pl.DataFrame | None = None
) -> Decision:
    """Over all rows' band keys: candidate pairs, verified, connected components, one row kept per component."""
    if prior is None:
        prior = _prior_rows(spec, ctx) if ctx is not None and spec.against else pl.DataFrame()
    if prior.height:
        prior = prior.hstack(near_keys(prior, spec))
    rows_of = _Rows(view, prior, spec.scope)
    bands, rows = banding(spec)
    hasher = minhash.MinHasher(num_perm=spec.num_perm, ngram=spec.ngram)
    n_prior, total = rows_of.n_prior, rows_of.n_prior + view.height
    valid = rows_of.array(VALID).astype(np.bool_)
    digest = rows_of.array(DIGEST).astype(np.uint64)
    idx = np.flatnonzero(valid).astype(np.int64)
    codes = _candidate_codes(rows_of, idx, bands, total) if len(idx) >= 2 else np.zeros(0, dtype=np.int64)
    a, b = codes // np.int64(max(total, 1)), codes % np.int64(max(total, 1))
    pair_jaccard = np.zeros(0)
    if spec.verify == "exact":
        pair_jaccard = rows_of.exact_jaccard(a, b, digest, spec.ngram)
        ok = pair_jaccard >= spec.threshold
    elif spec.verify == "estimate":
        ok = rows_of.estimated_jaccard(a, b, hasher) >= spec.threshold
    else:
        ok = np.ones(len(a), dtype=np.bool_)
    label = minhash.connected_components(total, a[ok], b[ok])

    # survivor[c] = the row component c (labelled by its smallest row index) keeps: an earlier-version row if it
    # holds one (then c < n_prior), else per keep policy among the new rows.
    if spec.keep == "longest_completion" and view.height:
        length = np.zeros(total, dtype=np.int64)
        length[n_prior:] = view.column(CHARS).to_numpy()
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
    dup_of = rows_of.refs().gather(keep_of_dropped).to_list() if len(keep_of_dropped) else []
    # Jaccard of each dropped row with the row kept for it (below the threshold when they are linked via others)
    jac: npt.NDArray[np.float64]
    if spec.verify == "exact":
        jac, jac_key = (
            _pair_jaccard(rows_of, digest, spec.ngram, (a, b, pair_jaccard), dropped_idx, keep_of_dropped),
            "jaccard",
        )
    else:
        jac, jac_key = rows_of.estimated_jaccard(dropped_idx, keep_of_dropped, hasher), "jaccard_estimate"
    sizes = np.bincount(label, minlength=total)
    n_turns = view.column(TURNS).gather(dropped_idx - n_prior).to_list() if len(dropped_idx) else []
    evidence = [
        json.dumps(
            {
                jac_key: round(float(j), 4),
                "cluster_size": int(sizes[label[i]]),
                "earlier_version": bool(k < n_prior),
                "threshold": spec.threshold,
                **({"turns": t} if t is not None else {}),
            }
        )
        for i, k, j, t in zip(dropped_idx.tolist(), keep_of_dropped.tolist(), jac.tolist(), n_turns, strict=True)
    ]
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
    return Decision(
        drop=(dropped_idx - n_prior).astype(np.int64),
        reason="near_duplicate",
        evidence=evidence,
        duplicate_of=dup_of,
        report=report,
    )


def _pair_jaccard(
    rows_of: _Rows,
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
    lo, hi = np.minimum(x, y), np.maximum(x, y)
    want = lo * width + hi
    pos = np.minimum(np.searchsorted(codes, want), max(len(codes) - 1, 0))
    found = codes[pos] == want if len(codes) else np.zeros(len(want), dtype=np.bool_)
    out = np.empty(len(want), dtype=np.float64)
    out[found] = known[pos[found]]
    out[~found] = rows_of.exact_jaccard(lo[~found], hi[~found], digest, ngram)
    return out


def _prior_rows(spec: NearDedup, ctx: BuildContext) -> pl.DataFrame:
    """The rows of the earlier versions named by ``against`` (train and eval, each source_ref once per version)."""
    from cardtune.curate.rows import with_flat_text
    from cardtune.curate.store import versions

    frames = []
    for ref in spec.against:
        version_dir = ctx.inputs.version(ref)
        split_rows = [versions.read_split(version_dir, s) for s in ("train", "eval")]
        rows = pl.concat(split_rows, how="vertical_relaxed").unique(SOURCE_REF, keep="first", maintain_order=True)
        if rows.height:
            frames.append(with_flat_text(rows).select(PROMPT_TEXT, COMPLETION_TEXT, SOURCE_REF))
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def near_dedup(df: pl.DataFrame, spec: NearDedup, against: Sequence[pl.DataFrame] = ()) -> StepResult:
    """Drop near duplicates (MinHash LSH, verified, connected components); see the module docstring."""
    prior = [frame.select(PROMPT_TEXT, COMPLETION_TEXT, SOURCE_REF) for frame in against if frame.height]
    prior_df = pl.concat(prior, how="vertical_relaxed") if prior else pl.DataFrame()
    decision = near_decide(FrameView(df.hstack(near_keys(df, spec))), spec, prior=prior_df)
    mask = np.zeros(df.height, dtype=np.bool_)
    mask[decision.drop] = True
    return StepResult(
        df.filter(pl.Series(~mask)), rejects_of(df[decision.drop], "near_dedup", decision), decision.report
    )


def _run(df: pl.DataFrame, spec: NearDedup, ctx: BuildContext) -> StepResult:
    return near_dedup(df, spec, against=[_prior_rows(spec, ctx)] if spec.against else [])


def _inputs(spec: NearDedup) -> list[InputRef]:
    return [InputRef("version", ref, ("filters", "dedup", "near", "against", i)) for i, ref in enumerate(spec.against)]


NEAR_DEDUP = Filter(
    name="near_dedup",
    key=("dedup", "near"),
    spec=NearDedup,
    run=_run,
    locality="global",
    keys=near_keys,
    decide=near_decide,
    title="near dedup",
    inputs=_inputs,
    summary="Near dedup (MinHash LSH, candidate pairs verified on their exact Jaccard)",
)
