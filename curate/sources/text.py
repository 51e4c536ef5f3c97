"""Text readers: JSON Lines, JSON arrays and CSV/TSV, plain or gzip/zstd-compressed.

Errors name the file and, where it applies, the line of the (decompressed) text: malformed JSONL lines and
ragged CSV rows. polars reads the rows; Python finds the bad line when polars fails without saying where.
"""

from __future__ import annotations

import csv
import io
import itertools
import json
from collections.abc import Iterable, Iterator
from pathlib import Path
from typing import TYPE_CHECKING, ClassVar

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources.base import FileReader, first_line
from cardtune.curate.sources.textio import compression_of, polars_input, read_text, text_lines, with_compressions

if TYPE_CHECKING:
    import polars as pl


CSV_INFER_ROWS = 10_000  # rows a CSV's column types are inferred from


class JsonlReader(FileReader):
    """One JSON object per line; blank lines are skipped."""

    name = "jsonl"
    summary = "JSON Lines"
    suffixes = with_compressions(".jsonl", ".ndjson")

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        import polars as pl

        try:
            return pl.read_ndjson(polars_input(path), infer_schema_length=None)
        except (pl.exceptions.PolarsError, OSError):
            pass
        # polars does not say which line is bad: find it, and fall back to Python when the lines are valid JSON
        # whose types polars cannot unify.
        rows = [_json_line(line, path, n) for n, line in enumerate(text_lines(path), 1) if line.strip()]
        if not rows:
            return pl.DataFrame()  # callers say "empty" with their own context
        return _from_dicts(rows, path)

    def file_columns(self, path: Path) -> list[str]:
        for lineno, line in enumerate(text_lines(path), 1):
            if line.strip():
                return list(_json_line(line, path, lineno).keys())
        raise UserInputError(f"{path}: the source is empty")


class JsonReader(FileReader):
    """A JSON array of objects, or ``{"key": [objects]}``."""

    name = "json"
    summary = "a JSON array of objects"
    suffixes = with_compressions(".json")

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        try:
            value = json.loads(read_text(path))
        except json.JSONDecodeError as exc:
            raise UserInputError(f"{path}:{exc.lineno}: malformed JSON (column {exc.colno}): {exc.msg}") from None
        if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
            value = next(iter(value.values()))  # {"data": [...]}
        if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
            raise UserInputError(f"{path}: expected a JSON array of objects")
        return _from_dicts(value, path)


class CsvReader(FileReader):
    """Comma-separated values with a header row; only the first ``limit`` rows are parsed."""

    name = "csv"
    summary = "comma-separated, with a header row"
    suffixes = with_compressions(".csv")
    separator: ClassVar[str] = ","

    def read_file(self, path: Path, limit: int | None) -> pl.DataFrame:
        return _read_csv(path, self.separator, limit)

    def file_columns(self, path: Path) -> list[str]:
        return _read_csv(path, self.separator, 1).columns


class TsvReader(CsvReader):
    """Tab-separated values with a header row."""

    name = "tsv"
    summary = "tab-separated, with a header row"
    suffixes = with_compressions(".tsv")
    separator: ClassVar[str] = "\t"


def _json_line(line: str, path: Path, lineno: int) -> dict[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}:{lineno}: malformed JSON line (column {exc.colno}): {exc.msg}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{path}:{lineno}: expected a JSON object per line, got {type(value).__name__}")
    return value


def _from_dicts(rows: list[dict[str, object]], path: Path) -> pl.DataFrame:
    import polars as pl

    if not rows:
        raise UserInputError(f"{path}: the file holds no rows")
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise UserInputError(f"{path}: rows do not share a schema: {first_line(exc)}") from None


def _read_csv(path: Path, sep: str, n_rows: int | None = None) -> pl.DataFrame:
    """A CSV/TSV file; a row with fewer fields than the header is an error at its line, not silent nulls."""
    frame = _read_csv_frame(path, sep, n_rows)
    if frame.height and frame.null_count().sum_horizontal().item():  # polars pads short rows with nulls
        ragged = _ragged_line(path, sep, n_rows)
        if ragged is not None:
            raise UserInputError(f"{path}:{ragged[0]}: ragged row: {ragged[1]} fields, header has {ragged[2]}")
    return frame


def _read_csv_frame(path: Path, sep: str, n_rows: int | None = None) -> pl.DataFrame:
    import polars as pl

    try:
        if n_rows is not None and compression_of(path) is not None:
            head, complete = _csv_head(path, sep, n_rows)
            frame = pl.read_csv(head, separator=sep, n_rows=n_rows, infer_schema_length=CSV_INFER_ROWS)
            if frame.height >= n_rows or complete:
                return frame
        return pl.read_csv(polars_input(path), separator=sep, n_rows=n_rows, infer_schema_length=CSV_INFER_ROWS)
    except pl.exceptions.NoDataError:
        raise UserInputError(f"{path}: the source is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        ragged = _ragged_line(path, sep)
        if ragged is not None:
            raise UserInputError(
                f"{path}:{ragged[0]}: ragged row: {ragged[1]} fields, header has {ragged[2]}"
            ) from None
        raise UserInputError(f"{path}: not a readable CSV file: {first_line(exc)}") from None


def _csv_head(path: Path, sep: str, n_rows: int) -> tuple[io.BytesIO, bool]:
    """The text of a compressed CSV's header and first ``n_rows`` records, and whether that is the whole file.

    Decompresses only as far as needed; records are counted with Python's csv module, and the caller falls back
    to the whole file if polars finds fewer rows in it.
    """
    kept: list[str] = []
    lines = text_lines(path)

    def keep() -> Iterator[str]:
        for line in lines:
            kept.append(line)
            yield line

    wanted = n_rows + 1  # the header and n_rows records
    found = sum(1 for _ in itertools.islice(csv.reader(keep(), delimiter=sep), wanted))
    complete = found < wanted or next(lines, None) is None
    return io.BytesIO("".join(kept).encode("utf-8")), complete


def _ragged_line(path: Path, sep: str, n_rows: int | None = None) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the file's first record whose field count differs from the header's."""
    return ragged_record(text_lines(path), sep, n_rows)


def ragged_record(lines: Iterable[str], sep: str, n_rows: int | None = None) -> tuple[int, int, int] | None:
    """(line, fields, header fields) of the first record in CSV text ``lines`` (header first) whose field count
    differs from the header's."""
    reader = csv.reader(lines, delimiter=sep)
    header = next(reader, None)
    if header is None:
        return None
    for i, row in enumerate(reader):
        if n_rows is not None and i >= n_rows:
            break
        if row and len(row) != len(header):
            return reader.line_num, len(row), len(header)
    return None
