"""The passes of a partitioned build, driven from one process: read → render + filter → global decisions →
finish, each pass mapped over partitions by an executor, the global steps run here on key columns.

:func:`run_passes` returns an :class:`Outcome`: where every surviving row is in the spill, per-task counts,
filter reports and drops, and the files of the rejects in order. The pipeline then splits and mixes a light
frame of the surviving rows and streams the splits out of the spill (``writer.py``).
"""

from __future__ import annotations

import functools
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.errors import UserInputError
from cardtune.curate.execute import spill, stages
from cardtune.curate.execute.executors import Executor
from cardtune.curate.execute.parts import PARTITION_ROWS, NeedsWhole, Part, plan_parts
from cardtune.curate.execute.writer import by_partition, unify
from cardtune.curate.filters.base import Decision
from cardtune.curate.progress import Steps
from cardtune.curate.rows import INTERNAL_COLUMNS, SOURCE_REF, TASK

Advance = Callable[[int], None]


@dataclass
class Outcome:
    """What the passes leave: the spilled rows' layout, which survived, counts, reports, rejects files."""

    parts: list[Part]  # partitions in row order (their rows are spilled under their index)
    offsets: npt.NDArray[np.int64]  # first spilled row of each partition; last entry = all spilled rows
    refs: pl.Series  # source_ref per spilled row
    tasks: pl.Series  # task per spilled row
    final: npt.NDArray[np.bool_]  # spilled rows that passed every filter
    tokens: npt.NDArray[np.int64]  # per surviving row, in row order
    source_counts: dict[str, int]
    rendered: dict[str, int]
    reports: dict[str, Any] = field(default_factory=dict)
    dropped: dict[str, dict[str, int]] = field(default_factory=dict)
    schema: dict[str, pl.DataType] = field(default_factory=dict)  # of the written rows (internal columns dropped)
    rejects: list[Path] = field(default_factory=list)  # in filter order, then row order
    sources: list[tuple[Part, int, dict[str, pl.DataType]]] = field(default_factory=list)  # (part, first row, schema)

    def load(self, spill_dir: Path) -> Callable[[int], pl.DataFrame]:
        """``load(k)``: partition ``k``'s spilled rows, public columns only."""

        def load(k: int) -> pl.DataFrame:
            file = spill.path(spill_dir, "rows", self.parts[k].index)
            names = pl.read_ipc_schema(file)
            return spill.read(file, [c for c in names if c not in INTERNAL_COLUMNS])  # the text columns stay on disk

        return load


def _safe_read(job: stages.Job, part: Part) -> stages.ReadResult | None:
    try:
        return stages.read_stage(job, part)
    except NeedsWhole:
        return None


def _render(job: stages.Job, item: tuple[Part, int, dict[str, pl.DataType]]) -> stages.RenderResult:
    return stages.render_stage(job, *item)


def _finish(
    job: stages.Job, item: tuple[Part, int, npt.NDArray[np.bool_], list[stages.Drops], bool]
) -> stages.FinishResult:
    return stages.finish_stage(job, *item)


def run_passes(
    job: stages.Job,
    templates: dict[str, list[Any]],
    executor: Executor,
    steps: Steps,
    partition_rows: int = PARTITION_ROWS,
) -> Outcome:
    """Every pass of a build over the card's partitions (see the module docstring)."""
    card = job.card
    parts, reads = _read_pass(job, templates, executor, steps, partition_rows)
    by_task: dict[str, list[int]] = {}
    for k, part in enumerate(parts):
        by_task.setdefault(part.task, []).append(k)
    source_counts = {t.name: sum(reads[k].rows for k in by_task.get(t.name, [])) for t in card.tasks}
    for task in card.tasks:
        if source_counts[task.name] == 0:
            raise UserInputError(f"{job.inputs.sources[task.name].label}: the source is empty (task {task.name!r})")
    items: list[tuple[Part, int, dict[str, pl.DataType]]] = []
    for task in card.tasks:
        schema = unify(reads[k].schema for k in by_task[task.name])
        offset = 0
        for k in by_task[task.name]:
            items.append((parts[k], offset, schema))
            offset += reads[k].rows
    with steps.step("render + filter", total=len(items)) as advance:
        rendered = executor.map(functools.partial(_render, job), items, advance)
    _check_ids(job, parts, rendered)
    sizes = np.array([len(r.refs) for r in rendered], dtype=np.int64)
    offsets = np.concatenate([[0], np.cumsum(sizes)]).astype(np.int64)
    refs = pl.concat([r.refs for r in rendered]).cast(pl.String) if rendered else pl.Series([], dtype=pl.String)
    tasks = pl.Series(TASK, np.repeat(np.array([p.task for p in parts], dtype=object), sizes), dtype=pl.String)
    out = Outcome(
        parts=parts,
        offsets=offsets,
        refs=refs.alias(SOURCE_REF),
        tasks=tasks.cast(pl.Categorical),
        final=np.ones(int(offsets[-1]), dtype=np.bool_),
        tokens=np.zeros(0, dtype=np.int64),
        source_counts=source_counts,
        rendered={t.name: sum(rendered[k].rendered for k in by_task[t.name]) for t in card.tasks},
        schema={n: d for n, d in unify(r.schema for r in rendered).items() if n not in INTERNAL_COLUMNS},
        sources=items,
    )
    plan = stages.segments(card)
    _merge_row_filters(out, plan[0], [r.filters for r in rendered], parts)
    for g in range(1, len(plan), 2):
        drops = _global_segment(job, out, plan[g], g // 2, steps)
        last = g + 2 >= len(plan)
        finish_items = [
            (part, g // 2 + 1, out.final[out.offsets[k] : out.offsets[k + 1]], drops.get(k, []), last)
            for k, part in enumerate(parts)
        ]
        title = "finish" if last else "filter"
        with steps.step(title, total=len(finish_items)) as advance:
            finished = executor.map(functools.partial(_finish, job), finish_items, advance)
        out.final = np.concatenate([f.alive for f in finished]) if finished else out.final
        _merge_row_filters(out, plan[g + 1], [f.filters for f in finished], parts)
        if last:
            tokens = [f.tokens for f in finished if f.tokens is not None]
            out.tokens = np.concatenate(tokens) if tokens else np.zeros(0, dtype=np.int64)
    from cardtune.curate import filters

    out.rejects = [
        file
        for flt, _ in filters.enabled(card.filters)
        for part in parts
        if (file := spill.path(job.spill, "rej", part.index, flt.name)).exists()
    ]
    return out


def _few_shot(task: Any, templates: list[Any]) -> bool:
    from cardtune.curate.templating.plan import few_shot_params

    return any(few_shot_params(t, task.few_shot) is not None for t in templates)


def _read_pass(
    job: stages.Job, templates: dict[str, list[Any]], executor: Executor, steps: Steps, partition_rows: int
) -> tuple[list[Part], list[stages.ReadResult]]:
    """Plan the partitions and read them; a task whose slices cannot be read alone is read whole."""
    card = job.card
    planned: list[list[Part]] = []
    next_index = 0
    for task in card.tasks:
        whole = _few_shot(task, templates[task.name])
        task_parts = plan_parts(task, job.inputs.sources[task.name], whole, next_index, partition_rows)
        next_index += len(task_parts)
        planned.append(task_parts)
    flat = [p for ps in planned for p in ps]
    with steps.step("read", total=len(flat)) as advance:
        results = executor.map(functools.partial(_safe_read, job), flat, advance)
        got = {p.index: r for p, r in zip(flat, results, strict=True)}
        for t, task_parts in enumerate(planned):
            if any(got[p.index] is None for p in task_parts):
                one = Part(next_index, card.tasks[t].name)
                next_index += 1
                planned[t] = [one]
                got[one.index] = stages.read_stage(job, one)
    parts = [p for ps in planned for p in ps]
    reads = [got[p.index] for p in parts]
    assert all(r is not None for r in reads)
    return parts, [r for r in reads if r is not None]


def _check_ids(job: stages.Job, parts: list[Part], rendered: list[stages.RenderResult]) -> None:
    """``id_column`` values must be unique across the whole source (each partition checked its own)."""
    for task in job.card.tasks:
        if task.source.id_column is None:
            continue
        ids = [r.ids for p, r in zip(parts, rendered, strict=True) if p.task == task.name and r.ids is not None]
        if len(ids) < 2:
            continue
        all_ids = pl.concat(ids)
        dup = all_ids.filter(all_ids.is_duplicated()).head(1)
        if len(dup):
            value = dup.item().split(":", 1)[1]
            label = job.inputs.sources[task.name].label
            raise UserInputError(
                f"{label}: task {task.name!r}: id_column {task.source.id_column!r} is not unique ({value!r} repeats)"
            )


def _merge_row_filters(
    out: Outcome, segment: stages.Segment, per_part: list[dict[str, stages.FilterOut]], parts: list[Part]
) -> None:
    for flt, _ in segment.filters:
        outs = [p[flt.name] for p in per_part]
        out.reports[flt.name] = flt.merge([o.report for o in outs])
        counts: dict[str, int] = {}
        for part, o in zip(parts, outs, strict=True):
            if o.dropped:
                counts[part.task] = counts.get(part.task, 0) + o.dropped
        out.dropped[flt.name] = dict(sorted(counts.items()))


def _global_segment(
    job: stages.Job, out: Outcome, segment: stages.Segment, keys_pass: int, steps: Steps
) -> dict[int, list[stages.Drops]]:
    """Run a segment's global filters on the spilled keys; per partition, what each dropped."""
    view = spill.SpillView(
        job.spill, [p.index for p in out.parts], out.offsets, out.refs, out.tasks, out.final, keys_pass
    )
    ctx = job.context()
    drops: dict[int, list[stages.Drops]] = {}
    for flt, spec in segment.filters:
        assert flt.decide is not None, f"global filter {flt.name} has no decide"
        with steps.step(flt.title):
            decision = flt.decide(view, spec, ctx)
        rows = view.rows[decision.drop]
        owner = np.searchsorted(out.offsets, rows, side="right") - 1
        evidence = np.asarray(decision.evidence, dtype=object)
        dup_of = np.asarray(decision.duplicate_of, dtype=object) if decision.duplicate_of is not None else None
        counts: dict[str, int] = {}
        for k, sel in by_partition(owner):
            local = (rows[sel] - out.offsets[k]).astype(np.int64)
            part_decision = Decision(
                drop=local,
                reason=decision.reason,
                evidence=evidence[sel].tolist(),
                duplicate_of=dup_of[sel].tolist() if dup_of is not None else None,
            )
            drops.setdefault(k, []).append(stages.Drops(flt.name, part_decision))
            counts[out.parts[k].task] = counts.get(out.parts[k].task, 0) + len(sel)
        out.final[rows] = False  # the view sees the same array: the next filter no longer sees these rows
        out.reports[flt.name] = decision.report
        out.dropped[flt.name] = dict(sorted(counts.items()))
    return drops


def source_rows(job: stages.Job, out: Outcome, task: Any, refs: pl.Series) -> pl.DataFrame:
    """A task's source rows (renamed, with ``source_ref``) whose ``source_ref`` is in ``refs``, in source order,
    read back from the spill partition by partition."""
    from cardtune.curate.sources.read import apply_columns, with_source_ref

    label = job.inputs.sources[task.name].label
    wanted = refs.cast(pl.String)
    frames = []
    for part, offset, schema in out.sources:
        if part.task != task.name:
            continue
        raw = spill.read(spill.path(job.spill, "raw", part.index))
        if dict(raw.schema) != schema:
            raw = pl.concat([pl.DataFrame(schema=schema), raw], how="diagonal_relaxed")
        frame = with_source_ref(apply_columns(raw, task, label), task, label, offset=offset)
        frames.append(frame.filter(pl.col(SOURCE_REF).is_in(wanted.implode())))
    return pl.concat(frames, how="vertical_relaxed")
