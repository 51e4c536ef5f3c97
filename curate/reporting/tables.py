"""Readable reports of a version: rich tables for ``cardtune inspect`` and the build summary.

Everything is computed from the version directory (manifest + parquet files), so a report of a version
built elsewhere reads the same.
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import polars as pl
from rich.console import Group, RenderableType
from rich.table import Table
from rich.text import Text

from cardtune.curate.rows import COMPLETION, PROMPT, TASK, flat_text
from cardtune.curate.store import versions as store
from cardtune.curate.store.manifest import Manifest, PlanEntry


def plan_table(plan: Sequence[PlanEntry], strategy: str, unit: str = "words") -> Table:
    """The mixture plan: per task rows available, rate, requested share, target, repeats, caps, tokens."""
    table = Table(title=f"mixture plan ({strategy})", title_justify="left")
    for col in ("task", "available", "rate", "share", "target", "repeats", "cap binds", f"est. {unit}"):
        table.add_column(col, justify="left" if col == "task" else "right")
    for p in plan:
        repeats = f"{p.repeats}× +{p.remainder}" if p.upsampled else ""
        table.add_row(
            p.task,
            f"{p.available:,}",
            f"{p.rate:.4g}",
            f"{p.share:.1%}",
            f"{p.target:,}",
            Text(repeats, style="yellow") if repeats else "",
            "yes" if p.cap_binds else "",
            f"{p.estimated_tokens:,}",
        )
    return table


def mixture_table(manifest: Manifest) -> Table:
    """Requested vs realized examples and tokens per task."""
    plan = manifest.mixture.plan
    realized = manifest.counts.splits.train
    tokens = manifest.tokens.train
    total = sum(realized.values()) or 1
    total_tokens = sum(tokens.values()) or 1
    table = Table(title="mixture: requested vs realized (train)", title_justify="left")
    for col in (
        "task",
        "requested share",
        "target",
        "realized",
        "realized share",
        "tokens",
        "token share",
        "upsampled",
    ):
        table.add_column(col, justify="left" if col == "task" else "right")
    for p in plan:
        n = realized.get(p.task, 0)
        tok = tokens.get(p.task, 0)
        table.add_row(
            p.task,
            f"{p.share:.1%}",
            f"{p.target:,}",
            f"{n:,}",
            f"{n / total:.1%}",
            f"{tok:,}",
            f"{tok / total_tokens:.1%}",
            Text(f"{p.repeats}× +{p.remainder}", style="yellow") if p.upsampled else "",
        )
    return table


def filter_names(manifest: Manifest) -> list[str]:
    """The filters a version ran, in the order they ran (the filter registry's order, kept in the manifest)."""
    return manifest.counts.filter_names()


def counts_table(manifest: Manifest) -> Table:
    """The funnel per task: source → rendered → each filter's drops → train/eval/heldout."""
    counts = manifest.counts
    table = Table(title="rows per task through the pipeline", title_justify="left")
    table.add_column("task")
    splits = [name.replace("eval_unseen_templates", "unseen templates") for name, _ in counts.splits.items()]
    for col in ("source", "rendered", *[f"−{f.name}" for f in counts.filters], *splits):
        table.add_column(col, justify="right")
    for task in manifest.tasks:
        name = task.name
        drops = [f.dropped.get(name, 0) for f in counts.filters]
        table.add_row(
            name + (" [dim](held out)[/]" if task.held_out else ""),
            f"{counts.source.get(name, 0):,}",
            f"{counts.rendered.get(name, 0):,}",
            *[Text(f"{d:,}", style="red") if d else Text("0", style="dim") for d in drops],
            *[f"{per_task.get(name, 0):,}" for _, per_task in counts.splits.items()],
        )
    return table


def length_stats(version_dir: Path) -> pl.DataFrame:
    """Per split and task: rows and character-length statistics of prompt + completion."""
    frames = []
    for split in store.SPLITS:
        frame = pl.read_parquet(version_dir / f"{split}.parquet")
        if frame.height == 0:
            continue
        text_len = (
            flat_text(PROMPT, frame.schema[PROMPT]).str.len_chars()
            + flat_text(COMPLETION, frame.schema[COMPLETION]).str.len_chars()
        )
        frames.append(
            frame.select(pl.lit(split).alias("split"), pl.col(TASK), text_len.alias("chars"))
            .group_by("split", TASK, maintain_order=True)
            .agg(
                pl.len().alias("rows"),
                pl.col("chars").mean().round(1).alias("mean"),
                pl.col("chars").median().alias("median"),
                pl.col("chars").quantile(0.95).alias("p95"),
                pl.col("chars").max().alias("max"),
            )
        )
    return pl.concat(frames) if frames else pl.DataFrame()


def length_table(stats: pl.DataFrame) -> Table:
    table = Table(title="length (characters of prompt + completion)", title_justify="left")
    for col in ("split", "task", "rows", "mean", "median", "p95", "max"):
        table.add_column(col, justify="left" if col in ("split", "task") else "right")
    for r in stats.iter_rows(named=True):
        table.add_row(
            r["split"], r[TASK], f"{r['rows']:,}", *(f"{r[c]:,.0f}" for c in ("mean", "median", "p95", "max"))
        )
    return table


def rejects_table(rejects: pl.DataFrame, limit: int = 20) -> Table:
    """Why rows were dropped: counts per filter and reason, then example rows with their evidence."""
    table = Table(title=f"rejects ({rejects.height:,} rows): why each was dropped", title_justify="left")
    for col in ("filter", "reason", "task", "source_ref", "duplicate of", "evidence"):
        table.add_column(col, overflow="fold")
    for r in rejects.head(limit).iter_rows(named=True):
        table.add_row(
            r["filter"], r["reason"], r["task"], r["source_ref"], r["duplicate_of"] or "", clip(r["evidence"], 90)
        )
    if rejects.height > limit:
        table.caption = f"{rejects.height - limit:,} more (cardtune inspect --rejects N)"
    return table


def reject_reasons_table(rejects: pl.DataFrame) -> Table:
    agg = rejects.group_by("filter", "reason", TASK).len().sort("filter", "reason", TASK)
    table = Table(title="drops per filter, reason and task", title_justify="left")
    for col in ("filter", "reason", "task", "rows"):
        table.add_column(col, justify="right" if col == "rows" else "left")
    for r in agg.iter_rows(named=True):
        table.add_row(r["filter"], r["reason"], r[TASK], f"{r['len']:,}")
    return table


def samples(version_dir: Path, per_task: int = 2, split: str = "train") -> RenderableType:
    """A few rows per task, payload shown as role-tagged text."""
    frame = pl.read_parquet(version_dir / f"{split}.parquet")
    if frame.height == 0:
        return Text(f"({split} is empty)", style="dim")
    frame = frame.with_columns(
        flat_text(PROMPT, frame.schema[PROMPT]).alias("_p"), flat_text(COMPLETION, frame.schema[COMPLETION]).alias("_c")
    )
    table = Table(title=f"sample rows ({split})", title_justify="left", show_lines=True)
    for col in ("task", "template", "prompt", "completion"):
        table.add_column(col, overflow="fold", ratio=3 if col in ("prompt", "completion") else 1)
    for task in frame[TASK].unique(maintain_order=True).to_list():
        for r in frame.filter(pl.col(TASK) == task).head(per_task).iter_rows(named=True):
            table.add_row(task, r["template_id"], clip(r["_p"], 400), clip(r["_c"], 200))
    return table


def inspect_renderable(version_dir: Path, n_samples: int = 2, n_rejects: int = 10) -> RenderableType:
    """Everything ``cardtune inspect`` prints."""
    manifest = store.read_manifest(version_dir)
    head = Text.assemble(
        ("version ", "dim"),
        (manifest.version_id, "bold cyan"),
        ("  card ", "dim"),
        (f"{manifest.name} {manifest.card_version}", "bold"),
        ("  mode ", "dim"),
        (manifest.mode, "bold"),
        ("  built ", "dim"),
        (manifest.created, ""),
        ("  cardtune ", "dim"),
        (manifest.cardtune, ""),
    )
    parts: list[RenderableType] = [head, mixture_table(manifest), counts_table(manifest)]
    stats = length_stats(version_dir)
    if stats.height:
        parts.append(length_table(stats))
    from cardtune.curate.reporting.roles import role_table, role_tokens

    roles, unit = role_tokens(version_dir, manifest)
    if roles.height:  # conversation rows only
        parts.append(role_table(roles, unit))
    rejects = pl.read_parquet(version_dir / "rejects.parquet")  # read once for both tables
    parts += [reject_reasons_table(rejects), rejects_table(rejects, n_rejects)]
    reports = manifest.filter_reports
    parts += [report_table(name, reports[name]) for name in filter_names(manifest) if name in reports]
    if n_samples:
        parts.append(samples(version_dir, n_samples))
    return Group(*parts)


def report_table(name: str, report: Mapping[str, Any]) -> RenderableType:
    """A filter's own report: its scalar figures as one key/value table, list-of-record entries as tables."""
    out: list[RenderableType] = []
    scalars = [(k, v) for k, v in report.items() if not isinstance(v, (list, dict))]
    scalars += [
        (f"{k}.{k2}", v2)
        for k, v in report.items()
        if isinstance(v, dict)
        for k2, v2 in v.items()
        if not isinstance(v2, (list, dict))
    ]
    if scalars:
        table = Table(title=name, title_justify="left", show_header=False)
        table.add_column("key", style="dim")
        table.add_column("value", justify="right")
        for key, value in scalars:
            table.add_row(
                str(key), f"{value:,}" if isinstance(value, int) and not isinstance(value, bool) else str(value)
            )
        out.append(table)
    for key, value in report.items():
        if isinstance(value, list) and value and all(isinstance(v, dict) for v in value):
            table = Table(title=f"{name}: {key}", title_justify="left")
            cols = list(value[0].keys())
            for col in cols:
                table.add_column(str(col), overflow="fold")
            for v in value:
                table.add_row(*(clip(str(v.get(c, "")), 80) for c in cols))
            out.append(table)
    return Group(*out)


def clip(text: object, n: int) -> str:
    """``text`` as a string of at most ``n`` characters (an ellipsis marks a cut)."""
    text = "" if text is None else str(text).replace("\r", "")
    return text if len(text) <= n else text[: n - 1] + "…"
