"""Task sources: resolve a card's source to files (or a pinned hub dataset), and read its rows through the readers.

This is the sources stage's public face: ``locate`` picks the reader (by file name, folder markers or
``format:``, all from ``cardtune.curate.sources.registry``), ``load_source`` reads a task's rows with renames,
``limit`` and stable ``source_ref`` ids, ``source_columns`` reads only column names, and ``read_dataset`` reads
non-task inputs (benchmarks). The formats themselves live in the reader modules.
"""

from __future__ import annotations

import glob as globlib
from pathlib import Path
from typing import TYPE_CHECKING

import polars as pl

from cardtune.curate.errors import UserInputError, did_you_mean
from cardtune.curate.rows import SOURCE_REF
from cardtune.curate.sources import registry, remote
from cardtune.curate.sources.base import ResolvedSource
from cardtune.curate.sources.hub import resolve_hub_revision
from cardtune.curate.sources.spec import Source

if TYPE_CHECKING:
    from cardtune.curate.card.schema import Task

__all__ = [
    "ResolvedSource",
    "apply_columns",
    "load_source",
    "locate",
    "read_dataset",
    "resolve_hub_revision",
    "source_columns",
    "with_source_ref",
]


def locate(src: Source, path: Path | None, where: str) -> ResolvedSource:
    """The files behind a source whose path the card's rule already resolved (or its pinned hub commit)."""
    if src.hf is not None:
        label = f"hf:{src.hf}" + (f"/{src.config}" if src.config else "")
        return ResolvedSource(registry.hub_reader().name, (), label, resolve_hub_revision(src.hf, src.revision))
    assert src.path is not None and path is not None
    raw = src.path
    if any(ch in raw for ch in remote.GLOB_CHARS):
        files = tuple(sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file()))
        if not files:
            raise UserInputError(f"{where}: the glob matched no files (looked in {path.parent})")
        return ResolvedSource(_format_of(files, src, where), files, str(raw))
    if not path.exists():
        raise UserInputError(f"{path}: source file not found ({where})")
    if path.is_dir():
        forced = registry.reader(src.format) if src.format != registry.AUTO else None
        folder = forced if forced is not None and forced.reads == "directory" else registry.directory_reader(path)
        if folder is not None:
            return ResolvedSource(folder.name, (path,), str(raw))
        files = tuple(sorted(p for p in path.rglob("*") if p.is_file() and registry.reader_for_file(p) is not None))
        if not files:
            raise UserInputError(
                f"{path}: directory holds no files of a known format ({', '.join(registry.file_formats())}) ({where})"
            )
        return ResolvedSource(_format_of(files, src, where), files, str(raw))
    return ResolvedSource(_format_of((path,), src, where), (path,), str(raw))


def read_dataset(resolved: ResolvedSource, src: Source, what: str) -> pl.DataFrame:
    """All rows of a non-task input (e.g. a benchmark set) with the sources' readers and errors."""
    frame = _read(resolved, src)
    if frame.height == 0:
        raise UserInputError(f"{what}: the file is empty (no rows)")
    return frame


def _format_of(files: tuple[Path, ...], src: Source, where: str) -> str:
    if src.format != registry.AUTO:
        if registry.reader(src.format).reads != "files":
            raise UserInputError(f"{files[0]}: format {src.format!r} reads a folder, not a file ({where})")
        return src.format
    kinds: set[str] = set()
    for f in files:
        found = registry.reader_for_file(f)
        if found is None:
            raise UserInputError(
                f"{f}: unknown file type {f.suffix!r} ({where}); set `format:` to one of "
                + ", ".join(registry.file_formats())
            )
        kinds.add(found.name)
    if len(kinds) > 1:
        raise UserInputError(f"{where}: mixed file types {sorted(kinds)}; use one format per task")
    return next(iter(kinds))


def load_source(resolved: ResolvedSource, task: Task) -> pl.DataFrame:
    """All rows of a task's source, renamed per ``columns``, with a ``source_ref`` column, limited per ``limit``."""
    frame = _read(resolved, task.source, task.source.limit)
    if task.source.limit is not None:
        frame = frame.head(task.source.limit)
    if frame.height == 0:
        raise UserInputError(f"{resolved.label}: the source is empty (task {task.name!r})")
    frame = apply_columns(frame, task, resolved.label)
    return with_source_ref(frame, task, resolved.label)


def apply_columns(frame: pl.DataFrame, task: Task, label: str) -> pl.DataFrame:
    """Rename source columns to template inputs (``columns: {input: source_column}``)."""
    if not task.columns:
        return frame
    mapping: dict[str, str] = {}
    for target, column in task.columns.items():
        if column not in frame.columns:
            raise UserInputError(
                f"{label}: task {task.name!r}: columns.{target}: source has no column {column!r}"
                + did_you_mean(column, frame.columns)
                + f" (columns: {', '.join(frame.columns)})"
            )
        mapping[column] = target
    clashes = [t for c, t in mapping.items() if t in frame.columns and t not in mapping]
    if clashes:
        raise UserInputError(
            f"{label}: task {task.name!r}: columns: renaming onto existing column(s) {clashes}; "
            "rename those too or pick another input name"
        )
    return frame.rename(mapping)


def with_source_ref(frame: pl.DataFrame, task: Task, label: str, offset: int = 0) -> pl.DataFrame:
    """Add ``source_ref`` = ``<task>:<id>`` from ``id_column`` (must be unique) or the row index.

    ``offset`` is the source row number of ``frame``'s first row (a partition of the source).
    """
    id_column = task.source.id_column
    if id_column is None:
        ids = pl.int_range(offset, offset + pl.len(), dtype=pl.Int64).cast(pl.String)
    else:
        if id_column not in frame.columns:
            raise UserInputError(
                f"{label}: task {task.name!r}: id_column {id_column!r} is not a column"
                + did_you_mean(id_column, frame.columns)
            )
        nulls = frame.select(pl.col(id_column).is_null().arg_true().head(1)).to_series()
        if len(nulls):
            raise UserInputError(
                f"{label}: task {task.name!r}: id_column {id_column!r} is null in row {offset + int(nulls[0]) + 1} "
                "(every row needs an id)"
            )
        dup = frame.filter(pl.col(id_column).is_duplicated()).select(id_column).head(1)
        if dup.height:
            raise UserInputError(
                f"{label}: task {task.name!r}: id_column {id_column!r} is not unique ({dup.item()!r} repeats)"
            )
        ids = pl.col(id_column).cast(pl.String)
    return frame.with_columns((pl.lit(f"{task.name}:") + ids).alias(SOURCE_REF))


def source_columns(resolved: ResolvedSource, task: Task) -> list[str]:
    """The input names a task's rows will have (after ``columns`` renames), reading as little as possible."""
    names = registry.reader(resolved.kind).columns(resolved, task.source)
    renamed = {column: target for target, column in task.columns.items()}
    missing = [c for c in renamed if c not in names]
    if missing:
        target = next(t for t, c in task.columns.items() if c == missing[0])
        raise UserInputError(
            f"{resolved.label}: task {task.name!r}: columns.{target}: source has no column {missing[0]!r}"
            + did_you_mean(missing[0], names)
        )
    return [renamed.get(n, n) for n in names]


def _read(resolved: ResolvedSource, src: Source, limit: int | None = None) -> pl.DataFrame:
    """Read a source; with ``limit``, stop after the files (and, where the format allows, rows) it needs."""
    return registry.reader(resolved.kind).read(resolved, src, limit)
