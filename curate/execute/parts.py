"""Partitions of a task's source: which rows each covers, and reading them.

A partition is a slice of one task's source that a worker reads on its own: a Parquet file's row range (cut at
about ``partition_rows``), a row range of a hub dataset or ``save_to_disk`` folder (memory-mapped Arrow, so a
worker reads just its rows), a byte range of a plain JSON Lines file (cut at line ends), or one file of another
format. A task whose rows depend on each other (few-shot exemplars come from the whole task; ``limit`` stops
early) is one partition holding the whole source. Row numbers (and so ``source_ref`` ids) are counted across partitions by the driver after the
read pass, so they never depend on how the source was cut.
"""

from __future__ import annotations

import io
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from cardtune.curate.sources import registry
from cardtune.curate.sources.base import FileReader
from cardtune.curate.sources.textio import compression_of

if TYPE_CHECKING:
    import polars as pl

    from cardtune.curate.card.schema import Task
    from cardtune.curate.sources.base import ResolvedSource

PARTITION_ROWS = 50_000  # rows per Parquet partition (each partition's rows are rendered and hashed at once)
PARTITION_BYTES = 48 << 20  # bytes per JSON Lines partition (about 50k rows of ~150 words)


@dataclass(frozen=True)
class Part:
    """One partition: a task's source slice (``path`` None: the whole source through its reader)."""

    index: int  # position in the build: partitions are in task order, then source order
    task: str
    path: Path | None = None
    rows: tuple[int, int] | None = None  # (first row, row count): within a Parquet file, or a dataset (no path)
    bytes: tuple[int, int] | None = None  # plain JSON Lines: [start, end) byte offsets, at line starts


class NeedsWhole(Exception):
    """A slice could not be read on its own (e.g. JSON whose types only the whole file settles): read the task
    as one partition."""


def plan_parts(
    task: Task, source: ResolvedSource, whole: bool, first_index: int, rows: int = PARTITION_ROWS
) -> list[Part]:
    """The partitions of one task's source (``whole``: one partition, e.g. for a few-shot task)."""
    reader = registry.reader(source.kind)
    if whole or task.source.limit is not None:
        return [Part(first_index, task.name)]
    if reader.reads != "files":  # a hub dataset or save_to_disk folder: row ranges of the memory-mapped table
        total = reader.row_count(source, task.source)
        if total is None or total <= rows:
            return [Part(first_index, task.name)]
        return [
            Part(first_index + k, task.name, rows=(lo, min(rows, total - lo)))
            for k, lo in enumerate(range(0, total, rows))
        ]
    parts: list[Part] = []
    for path in source.files:
        for cut in _cuts(source.kind, path, rows):
            parts.append(Part(first_index + len(parts), task.name, path, *cut))
    return parts


def _cuts(kind: str, path: Path, rows: int) -> list[tuple[tuple[int, int] | None, tuple[int, int] | None]]:
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            total = pq.ParquetFile(path).metadata.num_rows
        except Exception:
            return [(None, None)]
        return [((lo, min(rows, total - lo)), None) for lo in range(0, total, rows)] or [(None, None)]
    if kind == "jsonl" and compression_of(path) is None:
        return [(None, span) for span in _line_spans(path, PARTITION_BYTES * rows // PARTITION_ROWS)]
    return [(None, None)]


def _line_spans(path: Path, size: int) -> list[tuple[int, int]]:
    """Byte ranges of about ``size`` bytes that start at the beginning of a line."""
    total = path.stat().st_size
    if total <= size:
        return [(0, total)]
    spans: list[tuple[int, int]] = []
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        start = 0
        while start < total:
            cut = view.find(b"\n", min(start + size, total) - 1)
            end = total if cut < 0 else cut + 1
            spans.append((start, end))
            start = end
    return spans


def read_part(part: Part, task: Task, source: ResolvedSource) -> pl.DataFrame:
    """The raw rows of one partition (before renames and ``source_ref``)."""
    import polars as pl

    reader = registry.reader(source.kind)
    if part.path is None and part.rows is not None:
        return reader.read_rows(source, task.source, *part.rows)
    if part.path is None:
        return reader.read(source, task.source, task.source.limit)
    if part.rows is not None:
        lo, n = part.rows
        try:
            return pl.scan_parquet(part.path).slice(lo, n).collect()
        except (pl.exceptions.PolarsError, OSError):
            raise NeedsWhole from None
    if part.bytes is not None:
        lo, hi = part.bytes
        with part.path.open("rb") as fh:
            fh.seek(lo)
            chunk = fh.read(hi - lo)
        try:
            return pl.read_ndjson(io.BytesIO(chunk), infer_schema_length=None)
        except (pl.exceptions.PolarsError, OSError):
            raise NeedsWhole from None  # the reader's whole-file path finds and names the bad line
    assert isinstance(reader, FileReader)
    frame: pl.DataFrame = reader.read_file(part.path, None)
    return frame
