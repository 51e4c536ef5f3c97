"""Streaming writes of a version's parquet files from the spill, in fixed row groups (bytes never depend on
how the rows were partitioned).

A split is a sequence of spilled row numbers (with repeats for upsampled rows, in output order). Rows already
in row order (eval, heldout) stream partition by partition. A shuffled split (train) goes through an external
shuffle: each partition's selected rows go to the bucket of their output positions (``BUCKET_ROWS`` each), then
each bucket is sorted and appended; memory holds one partition plus one bucket. Row groups are cut every
``ROW_GROUP`` rows, whatever the partitions and buckets, so equal rows give equal bytes.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl
import pyarrow.parquet as pq

from cardtune.curate.cores import one_ahead, thread_map
from cardtune.curate.execute import spill

ROW_GROUP = 65_536
BUCKET_ROWS = 2 * ROW_GROUP
_OUT = "__out_pos"


class RowGroupWriter:
    """A parquet file written in row groups of exactly ``ROW_GROUP`` rows (the last may be shorter)."""

    def __init__(self, path: Path, schema: dict[str, pl.DataType]) -> None:
        self.path = path
        self.schema = schema
        self.arrow_schema = pl.DataFrame(schema=schema).to_arrow().schema
        self._writer = pq.ParquetWriter(
            path, self.arrow_schema, compression="zstd", compression_level=3, write_statistics=True
        )
        self._pending: list[pl.DataFrame] = []
        self._rows = 0

    def add(self, frame: pl.DataFrame) -> None:
        if frame.height == 0:
            return
        self._pending.append(conform(frame, self.schema))
        self._rows += frame.height
        while self._rows >= ROW_GROUP:
            self._flush(ROW_GROUP)

    def _flush(self, n: int) -> None:
        frame = pl.concat(self._pending, how="vertical") if len(self._pending) > 1 else self._pending[0]
        head, tail = frame.head(n), frame.slice(n)
        self._writer.write_table(head.to_arrow().cast(self.arrow_schema), row_group_size=ROW_GROUP)
        self._pending = [tail] if tail.height else []
        self._rows = tail.height

    def close(self) -> None:
        if self._rows:
            self._flush(self._rows)
        self._writer.close()


def conform(frame: pl.DataFrame, schema: dict[str, pl.DataType]) -> pl.DataFrame:
    """``frame`` with exactly ``schema``'s columns and types (missing columns null), as a relaxed concat types it."""
    if dict(frame.schema) == schema:
        return frame
    missing = [pl.lit(None, dtype=dtype).alias(name) for name, dtype in schema.items() if name not in frame.columns]
    return frame.with_columns(missing).select([pl.col(n).cast(d) for n, d in schema.items()])


def unify(schemas: Iterable[dict[str, pl.DataType]]) -> dict[str, pl.DataType]:
    """The schema a relaxed diagonal concat of frames with these schemas has."""
    empties = [pl.DataFrame(schema=s) for s in schemas]
    if not empties:
        return {}
    return dict(pl.concat(empties, how="diagonal_relaxed").schema) if len(empties) > 1 else dict(empties[0].schema)


def write_split(
    file: Path,
    order: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    load: Callable[[int], pl.DataFrame],
    schema: dict[str, pl.DataType],
    scratch: Path,
) -> None:
    """Write the spilled rows ``order`` (global row numbers, in output order) to ``file``.

    ``offsets[k]`` is the first global row of partition ``k``; ``load(k)`` reads partition ``k``'s rows.
    """
    out = RowGroupWriter(file, schema)
    owner = np.searchsorted(offsets, order, side="right") - 1
    if bool(np.all(np.diff(order) >= 0)):  # in row order (eval, heldout): partition by partition
        for k, positions in by_partition(owner):
            out.add(spill.owned(load(k)[order[positions] - offsets[k]]))
    elif len(order) <= BUCKET_ROWS:
        _gather_small(out, order, owner, offsets, load)
    else:
        _shuffle(out, order, owner, offsets, load, scratch)
    out.close()


def by_partition(owner: npt.NDArray[np.int64]) -> list[tuple[int, npt.NDArray[np.int64]]]:
    """(partition, the positions it owns, ascending) for each partition in ``owner`` — one sort, not a scan each."""
    if not len(owner):
        return []
    order = np.argsort(owner, kind="stable")
    cuts = np.flatnonzero(np.diff(owner[order])) + 1
    return [(int(owner[g[0]]), g) for g in np.split(order, cuts)]


def _picked(
    load: Callable[[int], pl.DataFrame],
    k: int,
    positions: npt.NDArray[np.int64],
    order: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    schema: dict[str, pl.DataType],
) -> pl.DataFrame:
    """Partition ``k``'s rows for output ``positions`` (with repeats), tagged with their output position."""
    return conform(load(k)[order[positions] - offsets[k]], schema).with_columns(pl.Series(_OUT, positions))


def _gather_small(
    out: RowGroupWriter,
    order: npt.NDArray[np.int64],
    owner: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    load: Callable[[int], pl.DataFrame],
) -> None:
    """A small shuffled split: gather every partition's rows, then put them in output order."""
    chunks = [  # each chunk owns its rows: not its whole partition's buffers
        spill.owned(_picked(load, k, positions, order, offsets, out.schema)) for k, positions in by_partition(owner)
    ]
    if chunks:
        out.add(pl.concat(chunks).sort(_OUT).drop(_OUT))


def _shuffle(
    out: RowGroupWriter,
    order: npt.NDArray[np.int64],
    owner: npt.NDArray[np.int64],
    offsets: npt.NDArray[np.int64],
    load: Callable[[int], pl.DataFrame],
    scratch: Path,
) -> None:
    """External shuffle: partitions → output-position buckets on disk → each bucket sorted and appended.

    Both halves use the machine's cores from this process (polars and pyarrow release the GIL): partitions are
    scattered by a few threads at once, and the next bucket is gathered and sorted while this one is encoded.
    A bucket's rows are put in output position order, so the bytes never depend on which thread did what.
    """
    scratch.mkdir(parents=True, exist_ok=True)
    n_buckets = (len(order) + BUCKET_ROWS - 1) // BUCKET_ROWS

    def scatter(item: tuple[int, npt.NDArray[np.int64]]) -> list[tuple[int, Path]]:
        k, positions = item
        rows = _picked(load, k, positions, order, offsets, out.schema)
        bucket = positions // BUCKET_ROWS
        files = []
        for b in np.unique(bucket).tolist():
            file = scratch / f"bucket-{b:06d}-{k:06d}.arrow"
            spill.write(rows.filter(pl.Series(bucket == b)), file)
            files.append((b, file))
        return files

    written: dict[int, list[Path]] = {b: [] for b in range(n_buckets)}

    def gather(b: int) -> pl.DataFrame | None:
        parts = [spill.read(f) for f in written[b]]
        for f in written[b]:
            f.unlink()
        return pl.concat(parts).sort(_OUT).drop(_OUT) if parts else None

    for files in thread_map(scatter, by_partition(owner)):
        for b, file in files:
            written[b].append(file)
    for frame in one_ahead(gather, range(n_buckets)):  # the next bucket is gathered while this one is encoded
        if frame is not None:
            out.add(frame)


__all__ = ["ROW_GROUP", "RowGroupWriter", "conform", "unify", "write_split"]
