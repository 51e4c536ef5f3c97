"""``build(card)``: the straight-line recipe from a card to a dataset version (torchtune's recipe style).

resolve inputs (``cardtune.curate.inputs``) → read, render and filter the tasks' rows in partitions (the
registered filters in order, ``cardtune.curate.filters.FILTERS``; passes mapped by an executor, global filters
decided on key columns: ``cardtune.curate.execute``) → split (held-out tasks whole; seeded per-task eval split)
→ mix the train pools → stream the splits out of the spill and publish the version atomically (manifest last).
The eval split is taken from the unique filtered rows *before* mixing, so upsampled copies of a row can never
land in both train and eval. Every step is visible here; there is no control flow hidden in base classes.
"""

from __future__ import annotations

import contextlib
import datetime as _dt
import shutil
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import cardtune
from cardtune.curate import cores, filters
from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.execute import spill
from cardtune.curate.execute.engine import Outcome, run_passes, source_rows
from cardtune.curate.execute.executors import Executor, make_executor
from cardtune.curate.execute.parts import PARTITION_ROWS
from cardtune.curate.execute.stages import Job
from cardtune.curate.execute.writer import RowGroupWriter, write_split
from cardtune.curate.inputs import ResolvedInputs, resolve_inputs
from cardtune.curate.mixing.mixture import TaskPlan, apply_mixture, plan_mixture
from cardtune.curate.mixing.split import ROW, split_eval
from cardtune.curate.progress import StepObserver, Steps
from cardtune.curate.rows import REJECT_SCHEMA, SOURCE_REF, TASK
from cardtune.curate.store import bucket
from cardtune.curate.store import versions as store
from cardtune.curate.store.datacard import render_readme
from cardtune.curate.store.fingerprint import (
    Snapshot,
    check_unchanged,
    input_files,
    input_hashes,
    sha256_bytes,
    sha256_file,
    snapshot,
    version_id,
    version_inputs,
)
from cardtune.curate.store.manifest import (
    Counts,
    FilterDrops,
    Inputs,
    Manifest,
    MixturePlan,
    PlanEntry,
    Splits,
    TaskEntry,
    Tokens,
)
from cardtune.curate.store.manifest import timings as manifest_timings
from cardtune.curate.store.versions import UNSEEN_SPLIT


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made (or found): the version id and directory, whether it was cached, the plan."""

    version_id: str
    version_dir: Path
    cached: bool
    manifest: Manifest
    plan: list[TaskPlan] = field(default_factory=list)
    dry_run: bool = False
    removed: tuple[str, ...] = ()  # files of a replaced (--force) version that a build does not write, e.g. report.html
    url: str | None = None  # where the version is in the object store (`output.dir` a URL); version_dir: local copy
    transfer: str | None = None  # "uploaded", "fetched" (from the store instead of rebuilt) or None


@dataclass(frozen=True)
class Resolved:
    """The inputs of a build, resolved and hashed: the resolved inputs, templates per task and the version id."""

    card: Card
    inputs: ResolvedInputs
    templates: dict[str, list[Any]]  # task name -> Template objects
    fingerprint: dict[str, Any]  # what the version id hashes (stored in the manifest as `inputs`)
    version_id: str
    files: Snapshot  # size + mtime of every input file before it was hashed; re-checked after reading
    unseen: dict[str, list[Any]] = field(default_factory=dict)  # task -> eval-only templates (templating/unseen.py)

    @property
    def version_dir(self) -> Path:
        return self.inputs.output_root / self.version_id


def resolve(card: Card) -> Resolved:
    """Resolve every input once, resolve templates, hash the inputs; compute the version id. Reads no rows."""
    from cardtune.curate.templating.library import template_bytes
    from cardtune.curate.templating.unseen import card_templates

    inputs = resolve_inputs(card)
    files = snapshot(input_files(inputs))  # before hashing: a later edit is caught by check_unchanged
    templates, unseen = card_templates(card, inputs)
    used = [t for ts in (*templates.values(), *unseen.values()) for t in ts]
    template_hashes = {t.id: sha256_bytes(template_bytes(t)) for t in used}
    source_hashes, other_hashes = input_hashes(inputs)
    fingerprint = version_inputs(card.data_sections(), template_hashes, source_hashes, other_hashes)
    return Resolved(card, inputs, templates, fingerprint, version_id(fingerprint), files, unseen)


def build(
    card: Card | str | Path,
    *,
    force: bool = False,
    dry_run: bool = False,
    progress: bool = False,
    observer: StepObserver | None = None,
    workers: int | None = None,
    executor: Executor | None = None,
    partition_rows: int | None = None,
) -> BuildResult:
    """Build (or reuse) the version a card describes. ``dry_run`` computes the plan and writes nothing.

    ``progress`` shows rich bars on stderr; ``observer`` is told each step's progress (see ``progress.Steps``).
    The passes run on ``executor`` (default: local with ``workers`` processes; unset: all cores for large
    sources) over partitions of about ``partition_rows`` rows; neither changes a byte of the version.
    """
    if not isinstance(card, Card):
        card = load_card(card)
    started = time.perf_counter()
    resolved = resolve(card)
    final = resolved.version_dir
    url = bucket.join(resolved.inputs.output_url, resolved.version_id) if resolved.inputs.output_url else None
    fetched = (
        url is not None and not force and not dry_run and not store.is_complete(final) and bucket.download(url, final)
    )
    if store.is_complete(final) and not force and not dry_run:
        try:
            manifest = store.read_manifest(final)
        except UserInputError:
            pass  # written by another cardtune (an unknown manifest format): rebuilt and replaced below
        else:
            uploaded = url is not None and bucket.upload(final, url)
            how = "fetched" if fetched else "uploaded" if uploaded else None
            return BuildResult(resolved.version_id, final, True, manifest, url=url, transfer=how)

    with contextlib.ExitStack() as stack:
        steps = stack.enter_context(Steps(show=progress, observer=observer))
        steps.timings["resolve + fingerprint"] = round(time.perf_counter() - started, 4)
        runner = executor if executor is not None else make_executor("local", _workers(workers, resolved))
        if executor is None:
            stack.callback(runner.close)
        stack.enter_context(cores.using(runner.workers))  # the driver's own steps use as many cores as the workers
        if dry_run:  # the spill of a dry run goes to a temporary folder; nothing is written beside the versions
            spill_dir = Path(stack.enter_context(tempfile.TemporaryDirectory(prefix="cardtune-spill-")))
        else:
            tmp = stack.enter_context(store.staging_dir(final.parent, resolved.version_id))
            spill_dir = (tmp / SPILL).resolve()
            spill_dir.mkdir()
        job = Job(resolved.version_id, card, resolved.inputs, spill_dir, _boilerplate(resolved))
        out = run_passes(job, resolved.templates, runner, steps, partition_rows or PARTITION_ROWS)
        check_unchanged(resolved.files)  # every input has been read: it must still be what was hashed
        with steps.step("split + mix", total=len(card.tasks)):
            # Split and mix a light (row, task, source_ref) frame of the surviving rows; rows stay in the spill.
            rows = np.flatnonzero(out.final).astype(np.int64)
            light = pl.DataFrame(
                {
                    ROW: rows,
                    TASK: out.tasks.filter(pl.Series(out.final)).cast(pl.String),
                    SOURCE_REF: out.refs.filter(pl.Series(out.final)),
                }
            )
            row_tokens = np.zeros(len(out.final), dtype=np.int64)
            row_tokens[rows] = out.tokens
            heldout_idx, eval_idx, pools = split_eval(light, card)
            avg_tokens = {t: mean for t, (_, mean) in _per_task_tokens(light[TASK], out.tokens).items()}
            sizes = {n: f.height for n, f in pools.items()}
            plans = plan_mixture(
                card.tasks, sizes, {t.name: avg_tokens.get(t.name, 0.0) for t in card.tasks}, card.mixture
            )
            orders = {"eval": eval_idx.to_numpy(), "heldout": heldout_idx.to_numpy()}
            split_counts = {name: _per_task_of(out, order) for name, order in orders.items()}
            unseen = (
                _render_unseen(job, out, light.filter(pl.col(ROW).is_in(orders["eval"])), resolved.unseen)
                if resolved.unseen
                else None
            )
            if unseen is not None:  # every eval row once more per unseen template (seen task, unseen phrasing)
                split_counts[UNSEEN_SPLIT] = _per_task(unseen)
            if dry_run:  # counts only: the plan says how many rows each task gets; nothing is sampled
                train_counts = {p.task: p.target for p in plans if p.target}
                train_tokens = {p.task: (p.estimated_tokens, p.avg_tokens) for p in plans if p.target}
            else:
                orders = {"train": apply_mixture(pools, plans, card.mixture.seed)[ROW].to_numpy(), **orders}
                train_counts = _per_task_of(out, orders["train"])
                train_tokens = _per_task_tokens(
                    out.tasks.gather(orders["train"]).cast(pl.String), row_tokens[orders["train"]]
                )
            split_counts = {"train": train_counts, **split_counts}
        with steps.step("manifest"):
            manifest = _manifest(
                resolved,
                out.source_counts,
                out.rendered,
                split_counts,
                out.dropped,
                plans,
                train_tokens,
                out.reports,
                steps.timings,
            )
        if dry_run:
            return BuildResult(resolved.version_id, final, False, manifest, plans, dry_run=True)
        with steps.step("write", total=len(orders) + 2) as advance:
            write_start = time.perf_counter()
            load = out.load(spill_dir)
            largest = max(orders, key=lambda name: len(orders[name]), default=None)

            def write(name: str) -> None:
                order = orders[name]
                write_split(
                    tmp / f"{name}.parquet", order, out.offsets, load, out.schema, spill_dir / f"shuffle-{name}"
                )

            def write_others() -> None:  # the smaller splits, unseen templates' rows and the rejects
                for name in orders:
                    if name != largest:
                        write(name)
                if unseen is not None:
                    store.write_parquet(store.public_frame(unseen), tmp / f"{UNSEEN_SPLIT}.parquet")
                rejects = RowGroupWriter(tmp / "rejects.parquet", dict(REJECT_SCHEMA))
                for file in out.rejects:
                    rejects.add(spill.read(file))
                rejects.close()

            # the largest split (with the driver's threads) beside the other files: separate files, same bytes
            cores.side_by_side(lambda: write(largest) if largest is not None else None, write_others)
            advance(len(orders) + 1)
            shutil.rmtree(spill_dir)
            (tmp / "README.md").write_text(render_readme(card, resolved.version_id, manifest), encoding="utf-8")
            names = sorted(p.name for p in tmp.iterdir())
            files = dict(zip(names, cores.thread_map(lambda name: sha256_file(tmp / name), names), strict=True))
            # the write step is still open: record its time so far (everything but the manifest itself)
            written_in = {**steps.timings, "write": round(time.perf_counter() - write_start, 4)}
            manifest = Manifest.model_validate(
                {**manifest.model_dump(), "files": files, "timings": manifest_timings(written_in)}
            )
            written = {p.name for p in tmp.iterdir()} | {store.MANIFEST}
            removed = tuple(sorted({p.name for p in final.iterdir()} - written)) if final.is_dir() else ()
            store.publish(tmp, final, manifest)
            advance(1)
    uploaded = url is not None and bucket.upload(final, url)
    how = "uploaded" if uploaded else None
    return BuildResult(resolved.version_id, final, False, manifest, plans, removed=removed, url=url, transfer=how)


PARALLEL_BYTES = 64 << 20  # with `workers` unset, smaller sources build in this process (workers cost seconds)


def _workers(workers: int | None, resolved: Resolved) -> int | None:
    """``workers`` as given; unset: every core for sources of ``PARALLEL_BYTES`` or more, else this process."""
    if workers is not None:
        return workers
    size = sum(f.stat().st_size for src in resolved.inputs.sources.values() for f in src.files if f.is_file())
    return None if size >= PARALLEL_BYTES else 1


SPILL = ".spill"  # the spill folder inside the staging directory (gone before the version is published)


def _boilerplate(resolved: Resolved) -> dict[str, str]:
    return {t.id: t.literal_text() for ts in resolved.templates.values() for t in ts}


def _per_task_of(out: Outcome, order: np.ndarray) -> dict[str, int]:
    """Rows per task among the spilled rows ``order``."""
    if len(order) == 0:
        return {}
    return _per_task(pl.DataFrame({TASK: out.tasks.gather(order).cast(pl.String)}))


def _render_unseen(job: Job, out: Outcome, evals: pl.DataFrame, unseen: dict[str, list[Any]]) -> pl.DataFrame:
    """The eval rows of each task with unseen templates, rendered once with each of them (source order).

    Their source rows passed the filters as eval rows already, so the filters do not run again. The source rows
    of those eval rows are read back from the spill, partition by partition.
    """
    from cardtune.curate.templating.render import render_task

    card = job.card
    frames: list[pl.DataFrame] = []
    for task in card.tasks:
        if task.name not in unseen:
            continue
        refs = evals.filter(pl.col(TASK) == task.name)[SOURCE_REF]
        raw = source_rows(job, out, task, refs)
        frames.extend(render_task(raw, task, [t], card.mode, card.mixture.seed) for t in unseen[task.name])
    return pl.concat(frames, how="vertical_relaxed") if frames else pl.DataFrame()


def _per_task_tokens(tasks: pl.Series, counts: np.ndarray) -> dict[str, tuple[int, float]]:
    """Per task: (total tokens, mean tokens per row)."""
    if len(tasks) == 0:
        return {}
    frame = pl.DataFrame({TASK: tasks, "n": counts})
    agg = frame.group_by(TASK).agg(pl.col("n").sum().alias("sum"), pl.col("n").mean().alias("mean")).sort(TASK)
    return {r[TASK]: (int(r["sum"]), float(r["mean"])) for r in agg.iter_rows(named=True)}


def _per_task(frame: pl.DataFrame) -> dict[str, int]:
    if frame.height == 0:
        return {}
    agg = frame.group_by(TASK).len().sort(TASK)
    return dict(zip(agg[TASK].to_list(), agg["len"].to_list(), strict=True))


def _manifest(
    resolved: Resolved,
    counts_source: dict[str, int],
    rendered: dict[str, int],
    split_counts: dict[str, dict[str, int]],
    dropped: dict[str, dict[str, int]],
    plans: Sequence[TaskPlan],
    train_tokens: dict[str, tuple[int, float]],
    reports: dict[str, Any],
    timings: dict[str, float],
) -> Manifest:
    card = resolved.card
    return Manifest(
        version_id=resolved.version_id,
        name=card.name,
        card_version=card.version,
        mode=card.mode,
        cardtune=cardtune.__version__,
        created=_dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        card_path=str(card.path) if card.path else None,
        inputs=Inputs.model_validate(resolved.fingerprint),
        tasks=tuple(
            TaskEntry(
                name=t.name,
                held_out=t.held_out,
                templates=tuple(x.id for x in resolved.templates[t.name]),
                unseen_templates=tuple(x.id for x in resolved.unseen.get(t.name, ())),
            )
            for t in card.tasks
        ),
        counts=Counts(
            source=counts_source,
            rendered={k: v for k, v in sorted(rendered.items()) if v},
            # in the registry's order (the order they ran): a list, so the sorted keys on disk cannot lose it
            filters=tuple(FilterDrops(name=n, dropped=dropped[n]) for n in filters.names() if n in dropped),
            splits=Splits(
                train=split_counts["train"],
                eval=split_counts["eval"],
                heldout=split_counts["heldout"],
                eval_unseen_templates=split_counts.get(UNSEEN_SPLIT),
            ),
        ),
        tokens=Tokens(unit=card.mixture.tokenizer or "words", train={k: v[0] for k, v in train_tokens.items()}),
        mixture=MixturePlan(strategy=card.mixture.strategy, plan=tuple(PlanEntry.of(p) for p in plans)),
        filter_reports=reports,
        timings=manifest_timings(timings),
    )
