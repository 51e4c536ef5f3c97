"""The per-partition work of a build (what executors map): read, render + filter, finish. Picklable.

Each function takes the :class:`Job` (the card and its resolved inputs, the spill folder) and one partition,
reads its input from the spill (or the source), writes its output to the spill and returns small results.
Templates are resolved once per worker process. Filters run in the registry's order, cut into segments:
row-local filters run here; before a run of global filters, their ``keys`` are computed here (row-aligned with
the spilled rows) and the driver decides (``engine.py``); the next pass writes the rejects of those decisions.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate import filters
from cardtune.curate.card.schema import Card, Task
from cardtune.curate.execute import spill
from cardtune.curate.execute.parts import Part, read_part
from cardtune.curate.filters.base import BuildContext, Decision, Filter, rejects_of
from cardtune.curate.inputs import ResolvedInputs
from cardtune.curate.rows import SOURCE_REF
from cardtune.curate.tokens import row_tokens

POS = "__spill_pos"  # a row's position in its partition's spilled rows, carried through row-local filters


@dataclass(frozen=True)
class Segment:
    """Consecutive filters of one locality, in registry order."""

    locality: str  # "row" | "global"
    filters: tuple[tuple[Filter[Any], Any], ...]


def segments(card: Card) -> list[Segment]:
    """The card's enabled filters cut into runs of row-local and global ones (always starting row-local)."""
    out: list[Segment] = [Segment("row", ())]
    for flt, spec in filters.enabled(card.filters):
        if out[-1].locality == flt.locality:
            out[-1] = Segment(flt.locality, (*out[-1].filters, (flt, spec)))
        else:
            out.append(Segment(flt.locality, ((flt, spec),)))
    if len(out) == 1:  # no global filter: an empty global step, so the last pass still runs
        out.append(Segment("global", ()))
    if out[-1].locality == "global":
        out.append(Segment("row", ()))
    return out


@dataclass(frozen=True)
class Job:
    """What every partition's work needs: the card, its resolved inputs, the spill folder."""

    key: str  # the version id (worker caches are per job)
    card: Card
    inputs: ResolvedInputs
    spill: Path
    boilerplate: dict[str, str]

    def task(self, name: str) -> Task:
        return next(t for t in self.card.tasks if t.name == name)

    def context(self) -> BuildContext:
        return BuildContext(self.inputs, self.boilerplate)


_TEMPLATES: dict[str, dict[str, list[Any]]] = {}  # per process: job key -> task -> templates


def templates(job: Job) -> dict[str, list[Any]]:
    """The card's templates per task, resolved once per process."""
    if job.key not in _TEMPLATES:
        from cardtune.curate.templating.unseen import card_templates

        _TEMPLATES.clear()
        _TEMPLATES[job.key] = card_templates(job.card, job.inputs)[
            0
        ]  # training templates (held-out ones never render here)
    return _TEMPLATES[job.key]


@dataclass(frozen=True)
class ReadResult:
    index: int
    rows: int
    schema: dict[str, pl.DataType]


def read_stage(job: Job, part: Part) -> ReadResult:
    """Read a partition's source rows into the spill; report their count and schema."""
    task = job.task(part.task)
    raw = read_part(part, task, job.inputs.sources[task.name])
    if part.path is None and task.source.limit is not None:
        raw = raw.head(task.source.limit)
    spill.write(raw, spill.path(job.spill, "raw", part.index))
    return ReadResult(part.index, raw.height, dict(raw.schema))


@dataclass(frozen=True)
class FilterOut:
    """A filter's results in one partition: its report and how many rows it dropped."""

    report: dict[str, Any]
    dropped: int


@dataclass(frozen=True)
class RenderResult:
    index: int
    refs: pl.Series  # source_ref of every spilled (rendered, first-segment kept) row
    rendered: int
    filters: dict[str, FilterOut]
    schema: dict[str, pl.DataType]  # of the spilled rows
    ids: pl.Series | None = None  # every source row's source_ref, when they come from an `id_column` (unique check)


def render_stage(job: Job, part: Part, offset: int, schema: dict[str, pl.DataType]) -> RenderResult:
    """Rows in source order → renamed, ``source_ref`` from ``offset`` → rendered → first row-local filters."""
    from cardtune.curate.sources.read import apply_columns, with_source_ref
    from cardtune.curate.templating.render import render_task

    task = job.task(part.task)
    source = job.inputs.sources[task.name]
    raw = spill.read(spill.path(job.spill, "raw", part.index))
    if dict(raw.schema) != schema:  # the task's files differ in schema: as one relaxed concat would type them
        raw = pl.concat([pl.DataFrame(schema=schema), raw], how="diagonal_relaxed")
    frame = with_source_ref(apply_columns(raw, task, source.label), task, source.label, offset=offset)
    ids = frame.get_column(SOURCE_REF) if task.source.id_column is not None else None
    rows = render_task(frame, task, templates(job)[task.name], job.card.mode, job.card.mixture.seed)
    rendered = rows.height
    rows = rows.with_row_index(POS)
    plan = segments(job.card)
    outs, kept = _row_filters(job, part, rows, plan[0])
    kept = kept.drop(POS)
    spill.write(kept, spill.path(job.spill, "rows", part.index))
    if len(plan) > 1:
        _write_keys(job, part, kept, plan[1], 0)
    return RenderResult(part.index, kept.get_column(SOURCE_REF), rendered, outs, dict(kept.schema), ids)


def _row_filters(
    job: Job, part: Part, rows: pl.DataFrame, segment: Segment
) -> tuple[dict[str, FilterOut], pl.DataFrame]:
    """Run a segment's row-local filters; spill their rejects. Returns each filter's out and the kept rows."""
    ctx = job.context()
    outs: dict[str, FilterOut] = {}
    for flt, spec in segment.filters:
        result = flt.run(rows, spec, ctx)
        if result.rejects.height:
            spill.write(result.rejects, spill.path(job.spill, "rej", part.index, flt.name))
        outs[flt.name] = FilterOut(result.report, result.rejects.height)
        rows = result.kept
    return outs, rows


def _write_keys(job: Job, part: Part, rows: pl.DataFrame, segment: Segment, pass_no: int) -> None:
    if not segment.filters:
        return
    ctx = job.context()
    frames = []
    for flt, spec in segment.filters:
        assert flt.keys is not None, f"global filter {flt.name} declares no keys"
        frames.append(flt.keys(rows, spec, ctx))
    keys = pl.concat(frames, how="horizontal") if frames else pl.DataFrame()
    spill.write(keys, spill.path(job.spill, f"keys{pass_no}", part.index))


@dataclass(frozen=True)
class Drops:
    """One global filter's drops in one partition: local row positions (ascending) and their evidence."""

    name: str
    decision: Decision  # drop = local positions


@dataclass(frozen=True)
class FinishResult:
    index: int
    alive: npt.NDArray[np.bool_]  # spilled rows still in after this pass
    filters: dict[str, FilterOut]
    tokens: npt.NDArray[np.int64] | None = None  # per alive row (last pass)
    dropped: dict[str, int] = field(default_factory=dict)


def finish_stage(
    job: Job,
    part: Part,
    pass_no: int,
    alive: npt.NDArray[np.bool_],
    drops: list[Drops],
    last: bool,
) -> FinishResult:
    """Rejects of the global filters' drops, then the next row-local filters; on the last pass, row tokens."""
    plan = segments(job.card)
    rows = spill.read(spill.path(job.spill, "rows", part.index)).with_row_index(POS)
    alive = alive.copy()
    for d in drops:
        if len(d.decision.drop):
            picked = rows[d.decision.drop].drop(POS)
            spill.write(rejects_of(picked, d.name, d.decision), spill.path(job.spill, "rej", part.index, d.name))
        alive[d.decision.drop] = False
    segment = plan[2 * pass_no]
    outs, kept = _row_filters(job, part, rows.filter(pl.Series(alive)), segment)
    alive = np.zeros(rows.height, dtype=np.bool_)
    alive[kept.get_column(POS).to_numpy()] = True
    if not last:
        _write_keys(job, part, rows.drop(POS), plan[2 * pass_no + 1], pass_no)
        return FinishResult(part.index, alive, outs)
    tokenizer = job.card.mixture.tokenizer
    named = job.inputs.tokenizer(tokenizer) if tokenizer is not None else None
    return FinishResult(part.index, alive, outs, row_tokens(kept, named))
