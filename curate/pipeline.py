"""``build(card)``: the straight-line recipe from a card to a dataset version (torchtune's recipe style).

load + render each task → quality → exact dedup → near dedup → decontaminate → split (held-out tasks whole;
seeded per-task eval split) → mix the train pools → write the version atomically (manifest last).
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
from cardtune.curate import store
from cardtune.curate.card import Card, load_card
from cardtune.curate.datacard import render_readme
from cardtune.curate.fingerprint import sha256_bytes, version_id, version_inputs
from cardtune.curate.mixing import TaskPlan, apply_mixture, plan_mixture, stable_keys
from cardtune.curate.progress import Steps
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, TASK, StepResult, empty_rejects
from cardtune.curate.sources import input_fingerprint, load_source, source_fingerprint
from cardtune.curate.tokens import count_tokens


@dataclass(frozen=True)
class BuildResult:
    """What ``build`` made (or found): the version id and directory, whether it was cached, the plan."""

    version_id: str
    version_dir: Path
    cached: bool
    manifest: dict[str, Any]
    plan: list[TaskPlan] = field(default_factory=list)
    dry_run: bool = False


@dataclass(frozen=True)
class Resolved:
    """The inputs of a build, resolved and hashed: templates per task and the version id."""

    card: Card
    templates: dict[str, list[Any]]  # task name -> Template objects
    inputs: dict[str, Any]
    version_id: str

    @property
    def version_dir(self) -> Path:
        return Path(self.card.output.dir) / self.card.name / self.version_id


def resolve(card: Card) -> Resolved:
    """Resolve templates and fingerprint sources; compute the version id. Reads no rows."""
    from cardtune.curate.templating import resolve_card_templates, template_bytes

    templates = resolve_card_templates(card)
    template_hashes = {t.id: sha256_bytes(template_bytes(t)) for ts in templates.values() for t in ts}
    source_hashes = {task.name: source_fingerprint(card, task) for task in card.tasks}
    inputs = version_inputs(card.data_sections(), template_hashes, source_hashes, _other_hashes(card))
    return Resolved(card, templates, inputs, version_id(inputs))


def _other_hashes(card: Card) -> dict[str, str]:
    """Content hashes of the benchmark sets and tokenizers a build reads besides its sources."""
    out: dict[str, str] = {}
    decon = card.filters.decontaminate
    for bench in decon.benchmarks if decon is not None else []:
        out[f"benchmark:{bench.name}"] = input_fingerprint(card, "benchmark", bench.path, bench.hf, bench.revision)
    quality = card.filters.quality
    for tokenizer in {card.mixture.tokenizer, quality.tokenizer if quality is not None else None} - {None}:
        assert tokenizer is not None
        out[f"tokenizer:{tokenizer}"] = input_fingerprint(card, "tokenizer", tokenizer)
    return out


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
        return BuildResult(resolved.version_id, final, True, store.read_manifest(final))

    with Steps(show=progress) as steps:
        steps.timings["resolve + fingerprint"] = round(time.perf_counter() - started, 4)
        rendered, counts_source = _load_and_render(resolved, steps)
        kept, rejects, reports, dropped = _filter(card, resolved, rendered, steps)
        with steps.step("split + mix", total=len(card.tasks)):
            # Split and mix a light (row index, task, source_ref) frame; gather the heavy rows once per split.
            light = kept.select(TASK, SOURCE_REF).with_row_index(ROW)
            heldout_idx, eval_idx, pools = split_eval(light, card)
            row_tokens = _row_tokens(kept, card.mixture.tokenizer)  # counted once, gathered for train
            avg_tokens = {t: mean for t, (_, mean) in _per_task_tokens(light[TASK], row_tokens).items()}
            sizes = {n: f.height for n, f in pools.items()}
            plans = plan_mixture(
                card.tasks, sizes, {t.name: avg_tokens.get(t.name, 0.0) for t in card.tasks}, card.mixture
            )
            train_idx = apply_mixture(pools, plans, card.mixture.seed)[ROW]
            splits = {"train": kept[train_idx], "eval": kept[eval_idx], "heldout": kept[heldout_idx]}
            train_tokens = _per_task_tokens(splits["train"][TASK], row_tokens[train_idx.to_numpy()])
        with steps.step("manifest"):
            manifest = _manifest(
                resolved, counts_source, rendered, splits, dropped, plans, train_tokens, reports, steps.timings
            )
        if dry_run:
            return BuildResult(resolved.version_id, final, False, manifest, plans, dry_run=True)
        with steps.step("write", total=4), store.staging_dir(final.parent, resolved.version_id) as tmp:
            write_start = time.perf_counter()
            for name, frame in splits.items():
                store.write_parquet(store.public_frame(frame), tmp / f"{name}.parquet")
            store.write_parquet(rejects, tmp / "rejects.parquet")
            (tmp / "README.md").write_text(render_readme(card, resolved.version_id, manifest), encoding="utf-8")
            manifest["files"] = {p.name: sha256_bytes(p.read_bytes()) for p in sorted(tmp.iterdir())}
            # the write step is still open: record its time so far (everything but the manifest itself)
            manifest["timings"] = {**steps.timings, "write": round(time.perf_counter() - write_start, 4)}
            store.publish(tmp, final, manifest)
    return BuildResult(resolved.version_id, final, False, manifest, plans)


def _load_and_render(resolved: Resolved, steps: Steps) -> tuple[pl.DataFrame, dict[str, int]]:
    from cardtune.curate.render import render_task

    card = resolved.card
    frames: list[pl.DataFrame] = []
    counts: dict[str, int] = {}
    with steps.step("load + render", total=len(card.tasks)) as advance:
        for task in card.tasks:
            raw = load_source(card, task)
            counts[task.name] = raw.height
            frames.append(render_task(raw, task, resolved.templates[task.name], card.mode, card.mixture.seed))
            advance(1)
    return pl.concat(frames, how="vertical_relaxed"), counts


def _filter(
    card: Card, resolved: Resolved, rows: pl.DataFrame, steps: Steps
) -> tuple[pl.DataFrame, pl.DataFrame, dict[str, Any], dict[str, dict[str, int]]]:
    """Run the configured filters in order; collect rejects, reports and per-task drop counts."""
    from cardtune.curate.decontam import decontaminate
    from cardtune.curate.dedup import exact_dedup, near_dedup
    from cardtune.curate.quality import quality_filter

    f = card.filters
    rejects: list[pl.DataFrame] = [empty_rejects()]
    reports: dict[str, Any] = {}
    dropped: dict[str, dict[str, int]] = {}

    def record(name: str, result: StepResult) -> pl.DataFrame:
        rejects.append(result.rejects)
        if result.report:
            reports[name] = result.report
        per_task = result.rejects.group_by("task").len().sort("task")
        dropped[name] = dict(zip(per_task["task"].to_list(), per_task["len"].to_list(), strict=True))
        return result.kept

    if f.quality is not None:
        with steps.step("quality"):
            rows = record("quality", quality_filter(rows, f.quality))
    if f.dedup.exact is not None:
        with steps.step("exact dedup"):
            rows = record("exact_dedup", exact_dedup(rows, f.dedup.exact))
    if f.dedup.near is not None:
        with steps.step("near dedup"):
            against = [_earlier_rows(card, ref) for ref in f.dedup.near.against]
            rows = record("near_dedup", near_dedup(rows, f.dedup.near, against=against))
    if f.decontaminate is not None:
        with steps.step("decontaminate"):
            boilerplate = {t.id: t.literal_text() for ts in resolved.templates.values() for t in ts}
            rows = record("decontaminate", decontaminate(rows, f.decontaminate, card.base_dir, boilerplate))
    return rows, pl.concat(rejects, how="vertical"), reports, dropped


def _earlier_rows(card: Card, ref: str) -> pl.DataFrame:
    """Rows of an earlier version (train + eval) with their flat text, for dedup against released data."""
    from cardtune.curate.rows import with_flat_text

    path = card.resolve(ref)
    version_dir = path if path.is_dir() else store.resolve_version(ref, card.output.dir)
    frames = [store.read_split(version_dir, s) for s in ("train", "eval")]
    return with_flat_text(
        pl.concat(frames, how="vertical_relaxed").unique(SOURCE_REF, keep="first", maintain_order=True)
    )


ROW = "_row"


def split_eval(light: pl.DataFrame, card: Card) -> tuple[pl.Series, pl.Series, dict[str, pl.DataFrame]]:
    """Held-out tasks whole; per trained task a seeded eval sample; the rest are the train pools.

    ``light`` holds ``_row`` (index into the filtered rows), ``task`` and ``source_ref``. Returns the row
    indices of heldout and eval (in row order) and each trained task's pool (a ``light`` slice).
    """
    held = [t.name for t in card.tasks if t.held_out]
    heldout_idx = light.filter(pl.col(TASK).is_in(held))[ROW]
    eval_parts: list[pl.Series] = []
    pools: dict[str, pl.DataFrame] = {}
    for task in card.tasks:
        if task.held_out:
            continue
        frame = light.filter(pl.col(TASK) == task.name)
        k = eval_count(frame.height, card.split.eval_fraction)
        order = np.argsort(
            stable_keys(card.split.seed, f"eval:{task.name}", frame[SOURCE_REF].to_list()), kind="stable"
        )
        mask = np.zeros(frame.height, dtype=bool)
        mask[order[:k]] = True
        eval_parts.append(frame.filter(pl.Series(mask))[ROW])
        pools[task.name] = frame.filter(pl.Series(~mask))
    eval_idx = pl.concat(eval_parts) if eval_parts else heldout_idx.head(0)
    return heldout_idx, eval_idx, pools


def eval_count(n: int, fraction: float) -> int:
    """Eval rows for a task of ``n`` rows: round(n·fraction), at least 1 when fraction > 0 and n ≥ 2."""
    if fraction <= 0 or n < 2:
        return 0
    return min(max(1, round(n * fraction)), n - 1)


def _row_tokens(frame: pl.DataFrame, tokenizer: str | None) -> np.ndarray:
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
    splits: dict[str, pl.DataFrame],
    dropped: dict[str, dict[str, int]],
    plans: Sequence[TaskPlan],
    train_tokens: dict[str, tuple[int, float]],
    reports: dict[str, Any],
    timings: dict[str, float],
) -> dict[str, Any]:
    card = resolved.card
    tokenizer = card.mixture.tokenizer
    return {
        "format": 1,
        "version_id": resolved.version_id,
        "name": card.name,
        "card_version": card.version,
        "mode": card.mode,
        "cardtune": cardtune.__version__,
        "created": _dt.datetime.now(_dt.timezone.utc).isoformat(timespec="seconds"),
        "card_path": str(card.path) if card.path else None,
        "inputs": resolved.inputs,
        "tasks": [
            {"name": t.name, "held_out": t.held_out, "templates": [x.id for x in resolved.templates[t.name]]}
            for t in card.tasks
        ],
        "counts": {
            "source": counts_source,
            "rendered": _per_task(rendered),
            "filters": dropped,
            "filter_order": list(dropped),  # the manifest's keys are sorted on disk; this keeps pipeline order
            "splits": {name: _per_task(frame) for name, frame in splits.items()},
        },
        "tokens": {"unit": tokenizer or "words", "train": {k: v[0] for k, v in train_tokens.items()}},
        "mixture": {"strategy": card.mixture.strategy, "plan": [p.to_json() for p in plans]},
        "filter_reports": reports,
        "timings": dict(timings),
    }
