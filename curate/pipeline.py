"""``build(card)``: the straight-line recipe from a card to a dataset version (torchtune's recipe style).

resolve inputs (``cardtune.curate.inputs``) → load + render each task → the registered filters in order
(``cardtune.curate.filters.FILTERS``) → split (held-out tasks whole; seeded per-task eval split) → mix the
train pools → write the version atomically (manifest last).
The eval split is taken from the unique filtered rows *before* mixing, so upsampled copies of a row can never
land in both train and eval. Every step is visible here; there is no control flow hidden in base classes.
"""

from __future__ import annotations

import datetime as _dt
import time
from collections.abc import Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

import cardtune
from cardtune.curate import filters
from cardtune.curate.card.load import load_card
from cardtune.curate.card.schema import Card
from cardtune.curate.errors import UserInputError
from cardtune.curate.filters.base import BuildContext
from cardtune.curate.inputs import NamedInput, ResolvedInputs, resolve_inputs
from cardtune.curate.mixing.mixture import TaskPlan, apply_mixture, plan_mixture
from cardtune.curate.mixing.split import ROW, split_eval
from cardtune.curate.progress import Steps
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, TASK, empty_rejects
from cardtune.curate.sources.read import load_source
from cardtune.curate.store import versions as store
from cardtune.curate.store.datacard import render_readme
from cardtune.curate.store.fingerprint import (
    Snapshot,
    check_unchanged,
    input_files,
    input_hashes,
    sha256_bytes,
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
from cardtune.curate.tokens import count_tokens


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


@dataclass(frozen=True)
class Resolved:
    """The inputs of a build, resolved and hashed: the resolved inputs, templates per task and the version id."""

    card: Card
    inputs: ResolvedInputs
    templates: dict[str, list[Any]]  # task name -> Template objects
    fingerprint: dict[str, Any]  # what the version id hashes (stored in the manifest as `inputs`)
    version_id: str
    files: Snapshot  # size + mtime of every input file before it was hashed; re-checked after reading

    @property
    def version_dir(self) -> Path:
        return self.inputs.output_root / self.version_id


def resolve(card: Card) -> Resolved:
    """Resolve every input once, resolve templates, hash the inputs; compute the version id. Reads no rows."""
    from cardtune.curate.templating.library import resolve_card_templates, template_bytes

    inputs = resolve_inputs(card)
    files = snapshot(input_files(inputs))  # before hashing: a later edit is caught by check_unchanged
    templates = resolve_card_templates(card, inputs)
    template_hashes = {t.id: sha256_bytes(template_bytes(t)) for ts in templates.values() for t in ts}
    source_hashes, other_hashes = input_hashes(inputs)
    fingerprint = version_inputs(card.data_sections(), template_hashes, source_hashes, other_hashes)
    return Resolved(card, inputs, templates, fingerprint, version_id(fingerprint), files)


def build(
    card: Card | str | Path, *, force: bool = False, dry_run: bool = False, progress: bool = False
) -> BuildResult:
    """Build (or reuse) the version a card describes. ``dry_run`` computes the plan and writes nothing."""
    if not isinstance(card, Card):
        card = load_card(card)
    started = time.perf_counter()
    resolved = resolve(card)
    final = resolved.version_dir
    if store.is_complete(final) and not force and not dry_run:
        try:
            return BuildResult(resolved.version_id, final, True, store.read_manifest(final))
        except UserInputError:
            pass  # written by another cardtune (an unknown manifest format): rebuilt and replaced below

    with Steps(show=progress) as steps:
        steps.timings["resolve + fingerprint"] = round(time.perf_counter() - started, 4)
        rendered, counts_source = _load_and_render(resolved, steps)
        kept, rejects, reports, dropped = _filter(card, resolved, rendered, steps)
        check_unchanged(resolved.files)  # every input has been read: it must still be what was hashed
        with steps.step("split + mix", total=len(card.tasks)):
            # Split and mix a light (row index, task, source_ref) frame; gather the heavy rows once per split.
            light = kept.select(TASK, SOURCE_REF).with_row_index(ROW)
            heldout_idx, eval_idx, pools = split_eval(light, card)
            row_tokens = _row_tokens(kept, _mixture_tokenizer(resolved.inputs))  # counted once, gathered for train
            avg_tokens = {t: mean for t, (_, mean) in _per_task_tokens(light[TASK], row_tokens).items()}
            sizes = {n: f.height for n, f in pools.items()}
            plans = plan_mixture(
                card.tasks, sizes, {t.name: avg_tokens.get(t.name, 0.0) for t in card.tasks}, card.mixture
            )
            splits = {"eval": kept[eval_idx], "heldout": kept[heldout_idx]}
            if dry_run:  # counts only: the plan says how many rows each task gets; nothing is sampled
                train_counts = {p.task: p.target for p in plans if p.target}
                train_tokens = {p.task: (p.estimated_tokens, p.avg_tokens) for p in plans if p.target}
            else:
                train_idx = apply_mixture(pools, plans, card.mixture.seed)[ROW]
                splits = {"train": kept[train_idx], **splits}
                train_counts = _per_task(splits["train"])
                train_tokens = _per_task_tokens(splits["train"][TASK], row_tokens[train_idx.to_numpy()])
            split_counts = {"train": train_counts, **{name: _per_task(splits[name]) for name in ("eval", "heldout")}}
        with steps.step("manifest"):
            manifest = _manifest(
                resolved, counts_source, rendered, split_counts, dropped, plans, train_tokens, reports, steps.timings
            )
        if dry_run:
            return BuildResult(resolved.version_id, final, False, manifest, plans, dry_run=True)
        with steps.step("write", total=4), store.staging_dir(final.parent, resolved.version_id) as tmp:
            write_start = time.perf_counter()
            for name, frame in splits.items():
                store.write_parquet(store.public_frame(frame), tmp / f"{name}.parquet")
            store.write_parquet(rejects, tmp / "rejects.parquet")
            (tmp / "README.md").write_text(render_readme(card, resolved.version_id, manifest), encoding="utf-8")
            files = {p.name: sha256_bytes(p.read_bytes()) for p in sorted(tmp.iterdir())}
            # the write step is still open: record its time so far (everything but the manifest itself)
            written_in = {**steps.timings, "write": round(time.perf_counter() - write_start, 4)}
            manifest = Manifest.model_validate(
                {**manifest.model_dump(), "files": files, "timings": manifest_timings(written_in)}
            )
            written = {p.name for p in tmp.iterdir()} | {store.MANIFEST}
            removed = tuple(sorted({p.name for p in final.iterdir()} - written)) if final.is_dir() else ()
            store.publish(tmp, final, manifest)
    return BuildResult(resolved.version_id, final, False, manifest, plans, removed=removed)


def _load_and_render(resolved: Resolved, steps: Steps) -> tuple[pl.DataFrame, dict[str, int]]:
    from cardtune.curate.templating.render import render_task

    card = resolved.card
    frames: list[pl.DataFrame] = []
    counts: dict[str, int] = {}
    with steps.step("load + render", total=len(card.tasks)) as advance:
        for task in card.tasks:
            raw = load_source(resolved.inputs.sources[task.name], task)
            counts[task.name] = raw.height
            frames.append(render_task(raw, task, resolved.templates[task.name], card.mode, card.mixture.seed))
            advance(1)
    return pl.concat(frames, how="vertical_relaxed"), counts


def _filter(
    card: Card, resolved: Resolved, rows: pl.DataFrame, steps: Steps
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], dict[str, dict[str, int]]]:
    """Run the card's filters in registry order; collect rejects, reports and per-task drop counts."""
    boilerplate = {t.id: t.literal_text() for ts in resolved.templates.values() for t in ts}
    ctx = BuildContext(resolved.inputs, boilerplate)
    rejects: list[pl.DataFrame] = [empty_rejects()]
    reports: dict[str, Any] = {}
    dropped: dict[str, dict[str, int]] = {}
    for flt, spec in filters.enabled(card.filters):
        with steps.step(flt.title):
            result = flt.run(rows, spec, ctx)
        rejects.append(result.rejects)
        if result.report:
            reports[flt.name] = result.report
        dropped[flt.name] = _per_task(result.rejects)
        rows = result.kept
    return rows, pl.concat(rejects, how="vertical"), reports, dropped


def _mixture_tokenizer(inputs: ResolvedInputs) -> NamedInput | None:
    value = inputs.card.mixture.tokenizer
    return inputs.tokenizer(value) if value is not None else None


def _row_tokens(frame: pl.DataFrame, tokenizer: NamedInput | None) -> np.ndarray:
    """Tokens of prompt + completion per row (whitespace words without a tokenizer)."""
    if frame.height == 0:
        return np.zeros(0, dtype=np.int64)
    return count_tokens(frame[PROMPT_TEXT].fill_null("") + "\n" + frame[COMPLETION_TEXT].fill_null(""), tokenizer)


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
    rendered: pl.DataFrame,
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
            TaskEntry(name=t.name, held_out=t.held_out, templates=tuple(x.id for x in resolved.templates[t.name]))
            for t in card.tasks
        ),
        counts=Counts(
            source=counts_source,
            rendered=_per_task(rendered),
            # in the registry's order (the order they ran): a list, so the sorted keys on disk cannot lose it
            filters=tuple(FilterDrops(name=n, dropped=dropped[n]) for n in filters.names() if n in dropped),
            splits=Splits(train=split_counts["train"], eval=split_counts["eval"], heldout=split_counts["heldout"]),
        ),
        tokens=Tokens(unit=card.mixture.tokenizer or "words", train={k: v[0] for k, v in train_tokens.items()}),
        mixture=MixturePlan(strategy=card.mixture.strategy, plan=tuple(PlanEntry.of(p) for p in plans)),
        filter_reports=reports,
        timings=manifest_timings(timings),
    )
