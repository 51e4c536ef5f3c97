"""The spill: rows and keys between the passes of a partitioned build, one file per partition and kind.

Files live in one folder under the build's staging directory (removed with it, on success or failure):
``raw-<part>.arrow`` (source rows as read), ``rows-<part>.arrow`` (rendered rows that passed the first row-local
filters), ``keys<pass>-<part>.arrow`` (global filters' key columns, row-aligned with ``rows``) and
``rej-<part>-<filter>.arrow`` (rejects). Arrow IPC with LZ4: fast to write, and columns read one at a time.

:class:`SpillView` is what a global filter's ``decide`` sees in a partitioned build: the rows still in, their
key columns read from the spill one column at a time, and the text of a few rows fetched on demand.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.cores import thread_map
from cardtune.curate.filters.base import Scope
from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT, SOURCE_REF, TASK


def path(spill: Path, kind: str, part: int, extra: str = "") -> Path:
    """A spill file: ``<kind>-<part>[-<extra>].arrow``."""
    return spill / f"{kind}-{part:06d}{'-' + extra if extra else ''}.arrow"


def write(frame: pl.DataFrame, file: Path) -> None:
    """Write a spill file (LZ4 Arrow IPC)."""
    frame.write_ipc(file, compression="lz4")


def owned(frame: pl.DataFrame) -> pl.DataFrame:
    """``frame`` with buffers of its own. Rows gathered from a partition's frame (``frame[idx]``) keep, in their
    list and struct columns, the whole partition's buffers alive; a few hundred rows picked from each of many
    partitions would so hold them all. An Arrow round trip copies just the picked values."""
    copied = pl.from_arrow(frame.to_arrow(compat_level=pl.CompatLevel.oldest()))
    assert isinstance(copied, pl.DataFrame)
    return copied


def read(file: Path, columns: list[str] | None = None) -> pl.DataFrame:
    """Read a spill file (some columns)."""
    return pl.read_ipc(file, columns=columns)


@dataclass
class SpillView:
    """The rows of a partitioned build still in, for a global filter's ``decide`` (a ``RowView``)."""

    spill: Path
    parts: list[int]  # partition numbers, in row order
    offsets: npt.NDArray[np.int64]  # first global row of each partition (len(parts) + 1 entries)
    refs: pl.Series  # source_ref of every spilled row (global order)
    tasks: pl.Series  # task of every spilled row
    alive: npt.NDArray[np.bool_]  # rows still in
    keys_pass: int  # which keys files hold the columns

    @property
    def rows(self) -> npt.NDArray[np.int64]:
        return np.flatnonzero(self.alive).astype(np.int64)

    @property
    def height(self) -> int:
        return int(self.alive.sum())

    def column(self, name: str) -> pl.Series:
        if name == SOURCE_REF:
            return self.refs.filter(pl.Series(self.alive))
        if name == TASK:
            return self.tasks.filter(pl.Series(self.alive))

        def fetch(k: int) -> pl.Series:
            column = read(path(self.spill, f"keys{self.keys_pass}", self.parts[k]), [name]).to_series()
            return column.filter(pl.Series(self.alive[self.offsets[k] : self.offsets[k + 1]]))

        chunks = thread_map(fetch, [k for k in range(len(self.parts)) if self.offsets[k + 1] > self.offsets[k]])
        return pl.concat(chunks) if chunks else pl.Series(name, [])

    def texts(self, positions: npt.NDArray[np.int64], scope: Scope) -> pl.Series:
        from cardtune.curate.execute.writer import by_partition
        from cardtune.curate.filters.exact_dedup import scoped_text

        wanted = self.rows[positions]
        owner = np.searchsorted(self.offsets, wanted, side="right") - 1

        def fetch(item: tuple[int, npt.NDArray[np.int64]]) -> pl.Series:
            k, mine = item
            frame = read(path(self.spill, "rows", self.parts[k]), [PROMPT_TEXT, COMPLETION_TEXT])
            return scoped_text(frame[wanted[mine] - self.offsets[k]], scope)

        chunks = thread_map(fetch, by_partition(owner))  # partitions read on the driver's threads, kept in order
        return pl.concat(chunks) if chunks else pl.Series([], dtype=pl.String)
