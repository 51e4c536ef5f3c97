"""The reader protocol every source format implements, and ``ResolvedSource`` (what ``locate`` hands a reader).

A reader is one class, listed once in ``cardtune.curate.sources.registry.READERS``:

* ``name``: the card's ``source.format`` value and ``ResolvedSource.kind``;
* ``reads``: ``"files"`` (matched by ``suffixes`` against the whole lower-cased file name, longest wins),
  ``"directory"`` (a folder recognized by one of its ``markers`` files) or ``"hub"`` (``hf:`` sources);
* ``read(source, src, limit)``: the rows, stopping early for ``limit`` where the format allows;
* ``columns(source, src)``: the column names, reading as little as possible.

File formats derive from ``FileReader`` and implement only ``read_file`` (plus ``file_columns`` where names are
cheaper than rows); it reads the files in order, stops once ``limit`` rows are in, and concatenates.

Reader modules import polars, pyarrow and datasets inside their methods: the card schema reads the registry at
import time (for ``source.format``) and must stay light.
"""

from __future__ import annotations

from abc import ABC, abstractmethod
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar, Literal

from cardtune.curate.errors import UserInputError

if TYPE_CHECKING:
    import polars as pl

    from cardtune.curate.sources.spec import Source

Reads = Literal["files", "directory", "hub"]


@dataclass(frozen=True)
class ResolvedSource:
    """A source after resolution: its reader and the concrete files, or the hub dataset pinned to a commit."""

    kind: str  # the reader's name in the registry (jsonl, csv, parquet, arrow, hf_disk, hf, ...)
    files: tuple[Path, ...]  # file readers: the files in read order; directory readers: (folder,); hub: ()
    label: str  # how errors and reports name it
    revision: str | None = None  # hub sources: the commit sha the version id was computed from


class Reader(ABC):
    """One source format: how ``locate`` recognizes its inputs, and how to read their rows and column names."""

    name: ClassVar[str]
    reads: ClassVar[Reads] = "files"
    suffixes: ClassVar[tuple[str, ...]] = ()  # lower-case file-name endings, e.g. ".jsonl.gz" ("files" readers)
    markers: ClassVar[tuple[str, ...]] = ()  # file names that identify a folder ("directory" readers)
    summary: ClassVar[str] = ""  # a few words for the card reference, e.g. "JSON Lines"

    @abstractmethod
    def read(self, source: ResolvedSource, src: Source, limit: int | None = None) -> pl.DataFrame:
        """All rows (at least the first ``limit`` where given; callers cut to ``limit``)."""

    def columns(self, source: ResolvedSource, src: Source) -> list[str]:
        """Column names; by default the rows are read. Override where metadata or a first line is enough."""
        return self.read(source, src).columns

    def row_count(self, source: ResolvedSource, src: Source) -> int | None:
        """How many rows, where ``read_rows`` can read them a range at a time (a memory-mapped dataset);
        ``None`` (the default): the source is read whole."""
        return None

    def read_rows(self, source: ResolvedSource, src: Source, first: int, count: int) -> pl.DataFrame:
        """Rows ``[first, first + count)``, for a reader whose ``row_count`` is not ``None``."""
        raise NotImplementedError(f"{self.name} sources are read whole")

    def suffix_of(self, filename: str) -> str | None:
        """The longest of ``suffixes`` that ``filename`` (any case) ends with, or ``None``."""
        lower = filename.lower()
        hits = [s for s in self.suffixes if lower.endswith(s) and len(lower) > len(s)]
        return max(hits, key=len) if hits else None


class FileReader(Reader):
    """A format of single files: implement ``read_file`` (and ``file_columns`` if names can be read cheaply)."""

    reads: ClassVar[Reads] = "files"

    @abstractmethod
    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        """One file's rows; with ``limit``, may stop after that many rows (it may also return more)."""

    def file_columns(self, path: Path) -> list[str] | None:
        """One file's column names without reading its rows, or ``None`` when the format cannot (the default)."""
        return None

    def read(self, source: ResolvedSource, src: Source, limit: int | None = None) -> pl.DataFrame:
        frames: list[pl.DataFrame] = []
        remaining = limit
        for path in source.files:
            frames.append(self.read_file(path, remaining))
            if remaining is not None:
                remaining -= frames[-1].height
                if remaining <= 0:
                    break
        return concat(frames, source.label)

    def columns(self, source: ResolvedSource, src: Source) -> list[str]:
        names = self.file_columns(source.files[0]) if source.files else None
        return names if names is not None else self.read(source, src).columns


def concat(frames: list[pl.DataFrame], label: str) -> pl.DataFrame:
    """Frames of one source's files, stacked (columns unioned); an error names the source if types clash."""
    import polars as pl

    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise UserInputError(f"{label}: files do not share a schema: {exc}") from None


def first_line(exc: BaseException) -> str:
    """The first line of an exception's message (library errors can span pages), or its type's name."""
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__
