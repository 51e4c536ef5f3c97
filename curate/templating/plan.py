"""The row plan of a task: which template renders each row, the row's hash, and its few-shot exemplars.

Owns ``row_hash`` (the one per-row hash option styles and ``choice`` read: rendering, ``cardtune templates
render --task`` previews and lint all call it), the template choice per row (a stable hash of (seed, task,
source_ref): adding a task or a row never reshuffles the others), the zero-/few-shot decision and exemplar
choice, and ``RowPlan`` / ``PlanSlice``, which hold all of that for one task.

A plan is computed once per task and never raises: the engines (``engine.py``) report bad rows, in row order,
so errors stay those of the row-by-row loop. Per-template parts (row hashes, shots) are computed on first use,
once, for the rows of that template only; the fast engine never needs them.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from functools import cached_property
from typing import Any

import numpy as np
import polars as pl
import xxhash

from cardtune.curate.card.schema import FewShot
from cardtune.curate.rows import EXEMPLARS, FEW_SHOT, ROW, ROW_HASH, TEMPLATE_ID
from cardtune.curate.templating.jinja_env import stable_hash
from cardtune.curate.templating.library import Template

DEFAULT_FEW_SHOT_K = 3
_digest = xxhash.xxh3_64_intdigest


def row_hash(seed: object, task: str, source_ref: str, template_id: str) -> int:
    """The 64-bit hash of one row under one template: ``stable_hash(seed, task, source_ref, template_id)``."""
    return _digest(f"{seed}\x1f{task}\x1f{source_ref}\x1f{template_id}".encode())


def template_choices(seed: object, task: str, refs: Sequence[str], n_templates: int) -> list[int]:
    """Each row's template index: ``stable_hash(seed, task, source_ref) % n_templates`` (inlined: one per row)."""
    if n_templates <= 1:
        return [0] * len(refs)
    prefix = f"{seed}\x1f{task}\x1f"
    return [_digest((prefix + ref).encode()) % n_templates for ref in refs]


def exemplar_indices(i: int, n: int, k: int, key: tuple[object, ...]) -> tuple[int, ...]:
    """``k`` distinct row indices of a pool of ``n`` (``n > k``), never ``i``, from a stable hash of ``key``."""
    chosen: list[int] = []
    j = 0
    while len(chosen) < k:
        cand = stable_hash(*key, "shot", j) % n if j < 8 * k + 16 else (i + j) % n
        if cand != i and cand not in chosen:
            chosen.append(cand)
        j += 1
    return tuple(chosen)


def few_shot_params(t: Template, few: FewShot | None) -> tuple[int, float] | None:
    """(k, fraction) when rows of ``t`` may render few-shot in a task configured with ``few``, else None."""
    if t.shots == "zero" or t.multi_turn or (t.shots != "few" and few is None):
        return None
    k = few.k if few is not None else DEFAULT_FEW_SHOT_K
    fraction = 1.0 if t.shots == "few" or few is None else few.fraction
    return k, fraction


@dataclass(frozen=True, eq=False)
class RowPlan:
    """One task's plan over its rows (``source_refs``, in row order) and its templates (none: passthrough)."""

    task: str
    seed: int
    templates: tuple[Template, ...]
    few_shot: FewShot | None
    source_refs: pl.Series
    conversation: Any = None  # the task's `conversation:` section (passthrough's field mapping), or None

    @property
    def n_rows(self) -> int:
        return len(self.source_refs)

    @cached_property
    def refs(self) -> list[str]:
        """Each row's ``source_ref`` as text."""
        return self.source_refs.cast(pl.String).to_list()

    @cached_property
    def inputs(self) -> list[str]:
        """Every template's inputs, in first-use order (the raw fields text joins them in this order)."""
        return list(dict.fromkeys(n for t in self.templates for n in t.inputs))

    @cached_property
    def which(self) -> list[int]:
        """Each row's template: an index into ``templates``."""
        return template_choices(self.seed, self.task, self.refs, len(self.templates))

    def slices(self) -> list[PlanSlice]:
        """One slice per template that renders rows, in template order (one slice when the task has no rows).

        A task without templates (passthrough) is one slice with ``template`` None.
        """
        n = self.n_rows
        if len(self.templates) <= 1 or n == 0:
            return [PlanSlice(self, 0, range(n))]
        which = np.asarray(self.which, dtype=np.uint32)
        out = []
        for k in range(len(self.templates)):
            idx = np.flatnonzero(which == k)
            if idx.size:
                out.append(PlanSlice(self, k, idx.tolist() if idx.size < n else range(n)))
        return out

    def frame(self) -> pl.DataFrame:
        """The whole plan as a frame in row order: row, template id, row hash, few-shot, exemplars."""
        parts = [s.frame() for s in self.slices()]
        return pl.concat(parts).sort(ROW) if len(parts) > 1 else parts[0]


@dataclass(frozen=True, eq=False)
class PlanSlice:
    """The rows of one template (``rows``: ascending positions in the task's frame) and their plan."""

    plan: RowPlan
    index: int  # the template's position in ``plan.templates``
    rows: Sequence[int]

    @property
    def template(self) -> Template | None:
        return self.plan.templates[self.index] if self.plan.templates else None

    @property
    def whole(self) -> bool:
        """Whether this slice is every row of the task (in order)."""
        return isinstance(self.rows, range) and len(self.rows) == self.plan.n_rows

    def positions(self) -> pl.Series:
        return pl.Series(ROW, self.rows, dtype=pl.UInt32)

    @cached_property
    def row_hashes(self) -> list[int]:
        """``row_hash`` of each row of the slice."""
        p, t = self.plan, self.template
        tid = t.id if t is not None else ""
        return [row_hash(p.seed, p.task, p.refs[i], tid) for i in self.rows]

    @cached_property
    def k(self) -> int:
        """Exemplars per few-shot row (0 when the template never renders few-shot)."""
        t = self.template
        kf = few_shot_params(t, self.plan.few_shot) if t is not None else None
        return 0 if kf is None else kf[0]

    @cached_property
    def few(self) -> list[bool]:
        """Whether each row of the slice renders few-shot (a stable hash against the task's fraction)."""
        p, t = self.plan, self.template
        kf = few_shot_params(t, p.few_shot) if t is not None else None
        if t is None or kf is None or kf[1] <= 0:
            return [False] * len(self.rows)
        if kf[1] >= 1:
            return [True] * len(self.rows)
        return [stable_hash(p.seed, p.task, p.refs[i], t.id, "few") / 2**64 < kf[1] for i in self.rows]

    @cached_property
    def exemplars(self) -> list[tuple[int, ...]]:
        """Each row's exemplar positions: empty when zero-shot, or when the task has too few rows (``k >= n``)."""
        p, t, n, k = self.plan, self.template, self.plan.n_rows, self.k
        if t is None or n <= k:
            return [()] * len(self.rows)
        return [
            exemplar_indices(i, n, k, (p.seed, p.task, p.refs[i], t.id)) if few else ()
            for i, few in zip(self.rows, self.few, strict=True)
        ]

    def frame(self) -> pl.DataFrame:
        t = self.template
        return pl.DataFrame(
            {
                ROW: self.positions(),
                TEMPLATE_ID: pl.Series([t.id if t is not None else ""] * len(self.rows), dtype=pl.String),
                ROW_HASH: pl.Series(self.row_hashes, dtype=pl.UInt64),
                FEW_SHOT: pl.Series(self.few, dtype=pl.Boolean),
                EXEMPLARS: pl.Series([list(e) for e in self.exemplars], dtype=pl.List(pl.UInt32)),
            }
        )
