"""Partitions of a task's source: which rows each covers, and reading them.

A partition is a slice of one task's source that a worker reads on its own: a Parquet file's row range (cut at
about ``partition_rows``), a row range of a hub dataset or ``save_to_disk`` folder (memory-mapped Arrow, so a
worker reads just its rows), a byte range of a plain JSON Lines file (cut at line ends) or of a plain CSV/TSV file
(cut at record ends: a line end outside quotes; read with the header and the column types a whole-file read
infers from the file's first rows), or one file of another format. A task whose rows depend on each other
(few-shot exemplars come from the whole task; ``limit`` stops early) is one partition holding the whole source.
Row numbers (and so ``source_ref`` ids) are counted across partitions by the driver after the read pass, so they
never depend on how the source was cut.
"""

from __future__ import annotations

import functools
import io
import mmap
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

from cardtune.curate.sources import registry
from cardtune.curate.sources.base import FileReader
from cardtune.curate.sources.text import CSV_INFER_ROWS, CsvReader, ragged_record
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
    bytes: tuple[int, int] | None = None  # plain JSON Lines or CSV/TSV: [start, end) byte offsets, at record starts
    header: int = 0  # CSV/TSV: the header's length in bytes (read with every byte range)


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


class Cut(NamedTuple):
    """Where one partition of a file lies (the fields of :class:`Part` after its path)."""

    rows: tuple[int, int] | None = None
    bytes: tuple[int, int] | None = None
    header: int = 0


def _cuts(kind: str, path: Path, rows: int) -> list[Cut]:
    """The partitions of one file."""
    if kind == "parquet":
        import pyarrow.parquet as pq

        try:
            total = pq.ParquetFile(path).metadata.num_rows
        except Exception:
            return [Cut()]
        return [Cut(rows=(lo, min(rows, total - lo))) for lo in range(0, total, rows)] or [Cut()]
    if kind == "jsonl" and compression_of(path) is None:
        return [Cut(bytes=span) for span in _line_spans(path, PARTITION_BYTES * rows // PARTITION_ROWS)]
    if kind in ("csv", "tsv") and compression_of(path) is None:
        header, spans = _record_spans(path, PARTITION_BYTES * rows // PARTITION_ROWS)
        return [Cut(bytes=span, header=header) for span in spans] if len(spans) > 1 else [Cut()]
    return [Cut()]


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


def _record_spans(path: Path, size: int) -> tuple[int, list[tuple[int, int]]]:
    """(the header's length, byte ranges of about ``size`` bytes of the records after it, each starting at a record)
    of a CSV file; no ranges when the file is not larger than ``size``.

    A record ends at a line end outside quotes: where the quote characters before it are even in number (a quote
    inside a quoted field is doubled, RFC 4180), so a quoted field holding line breaks is never cut.
    """
    total = path.stat().st_size
    if total <= size:
        return 0, []
    with path.open("rb") as fh, mmap.mmap(fh.fileno(), 0, access=mmap.ACCESS_READ) as view:
        quotes = 0  # quote characters before the last record end found

        def record_end(start: int, at: int) -> int:
            """The first record end at or after byte ``at`` (``start`` <= ``at``: the last record end found)."""
            nonlocal quotes
            seen = view[start:at].count(b'"')
            while True:
                cut = view.find(b"\n", at)
                if cut < 0:
                    return total
                seen += view[at : cut + 1].count(b'"')
                at = cut + 1
                if (quotes + seen) % 2 == 0:
                    quotes += seen
                    return at

        header = start = record_end(0, 0)
        spans: list[tuple[int, int]] = []
        while start < total:
            end = record_end(start, min(start + size, total) - 1)
            spans.append((start, end))
            start = end
    return header, spans


@functools.lru_cache(maxsize=64)
def _csv_schema(path: Path, sep: str, mtime_ns: int, infer_rows: int) -> pl.Schema:
    """The column types a whole-file read of a CSV file infers (from its first ``infer_rows`` rows): once per file
    and process, not once per range (``mtime_ns`` keys a changed file anew)."""
    import polars as pl

    return pl.read_csv(path, separator=sep, n_rows=infer_rows, infer_schema_length=infer_rows).schema


def _csv_records(path: Path, sep: str, header: bytes, chunk: bytes) -> pl.DataFrame:
    """A byte range of a CSV file's records, typed as a whole-file read types them (inferred from its first
    rows); a record with too few or too many fields sends the task to the whole-file read, which names its line."""
    import polars as pl

    schema = _csv_schema(path, sep, path.stat().st_mtime_ns, CSV_INFER_ROWS)
    frame = pl.read_csv(io.BytesIO(header + chunk), separator=sep, schema=schema)
    padded = frame.height and frame.null_count().sum_horizontal().item()  # polars pads short rows with nulls
    if padded and ragged_record(io.StringIO((header + chunk).decode("utf-8")), sep) is not None:
        raise NeedsWhole
    return frame


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
            header = fh.read(part.header)
            fh.seek(lo)
            chunk = fh.read(hi - lo)
        try:
            if isinstance(reader, CsvReader):
                return _csv_records(part.path, reader.separator, header, chunk)
            return pl.read_ndjson(io.BytesIO(chunk), infer_schema_length=None)
        except (pl.exceptions.PolarsError, OSError, UnicodeDecodeError):
            raise NeedsWhole from None  # the reader's whole-file path finds and names the bad line
    assert isinstance(reader, FileReader)
    frame: pl.DataFrame = reader.read_file(part.path, None)
    return frame
