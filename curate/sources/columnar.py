"""Columnar readers: Parquet and Arrow IPC (file or stream format), scanned lazily so ``limit`` reads little.

Column names come from the file's schema without reading rows.
"""

from __future__ import annotations

from pathlib import Path
from typing import TYPE_CHECKING

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources.base import FileReader, first_line

if TYPE_CHECKING:
    import polars as pl


class ParquetReader(FileReader):
    """Apache Parquet files."""

    name = "parquet"
    summary = "Apache Parquet"
    suffixes = (".parquet", ".pq")

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        import polars as pl

        try:
            lazy = pl.scan_parquet(path)
            return (lazy.head(limit) if limit is not None else lazy).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserInputError(f"{path}: not a readable Parquet file: {first_line(exc)}") from None

    def file_columns(self, path: Path) -> list[str]:
        import polars as pl

        try:
            return list(pl.read_parquet_schema(path).keys())
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserInputError(f"{path}: not a readable Parquet file: {first_line(exc)}") from None


class ArrowReader(FileReader):
    """Arrow IPC files (``.arrow``/``.feather`` v2) and streams (e.g. the ``.arrow`` shards ``datasets`` writes)."""

    name = "arrow"
    summary = "Arrow IPC / Feather v2"
    suffixes = (".arrow", ".feather", ".ipc", ".arrows")

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        import polars as pl

        try:
            if _is_ipc_file(path):
                lazy = pl.scan_ipc(path)
                return (lazy.head(limit) if limit is not None else lazy).collect()
            return pl.read_ipc_stream(path, n_rows=limit)
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserInputError(f"{path}: not a readable Arrow IPC file: {first_line(exc)}") from None

    def file_columns(self, path: Path) -> list[str]:
        import polars as pl

        if not _is_ipc_file(path):
            return self.read_file(path, 1).columns
        try:
            return list(pl.read_ipc_schema(path).keys())
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserInputError(f"{path}: not a readable Arrow IPC file: {first_line(exc)}") from None


def _is_ipc_file(path: Path) -> bool:
    """``True`` for the IPC file format (magic ``ARROW1``), ``False`` for the stream format."""
    try:
        with path.open("rb") as fh:
            return fh.read(6) == b"ARROW1"
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be read: {first_line(exc)}") from None
