"""Task sources: read raw rows from local files or the Hugging Face hub, with stable ``source_ref`` ids.

Formats: JSONL, JSON arrays, CSV/TSV, Parquet (a file, a glob or a directory of such files), ``datasets``
``save_to_disk`` directories, and hub datasets through ``datasets.load_dataset``. Local files are read with
polars. Errors name the file and, where it applies, the line (malformed JSONL, ragged CSV rows).
This module also fingerprints sources by content for the version id.
"""

from __future__ import annotations

import csv
import functools
import glob as globlib
import json
from dataclasses import dataclass
from pathlib import Path

import polars as pl

from cardtune.curate.card.schema import Task
from cardtune.curate.errors import UserInputError, did_you_mean
from cardtune.curate.rows import SOURCE_REF
from cardtune.curate.sources.spec import Source

SUFFIX_FORMAT = {
    ".jsonl": "jsonl",
    ".ndjson": "jsonl",
    ".json": "json",
    ".csv": "csv",
    ".tsv": "tsv",
    ".parquet": "parquet",
    ".pq": "parquet",
}
_HF_DISK_MARKERS = ("dataset_info.json", "dataset_dict.json", "state.json")


@dataclass(frozen=True)
class ResolvedSource:
    """A source after resolution: its format and the concrete files, or the hub dataset pinned to a commit."""

    kind: str  # jsonl | json | csv | tsv | parquet | hf_disk | hf
    files: tuple[Path, ...]
    label: str  # how errors and reports name it
    revision: str | None = None  # hub sources: the commit sha the version id was computed from


def locate(src: Source, path: Path | None, where: str) -> ResolvedSource:
    """The files behind a source whose path the card's rule already resolved (or its pinned hub commit)."""
    if src.hf is not None:
        label = f"hf:{src.hf}" + (f"/{src.config}" if src.config else "")
        return ResolvedSource("hf", (), label, resolve_hub_revision(src.hf, src.revision))
    assert src.path is not None and path is not None
    raw = src.path
    if any(ch in raw for ch in "*?["):
        files = tuple(sorted(Path(p) for p in globlib.glob(str(path), recursive=True) if Path(p).is_file()))
        if not files:
            raise UserInputError(f"{where}: the glob matched no files (looked in {path.parent})")
        return ResolvedSource(_format_of(files, src, where), files, str(raw))
    if not path.exists():
        raise UserInputError(f"{path}: source file not found ({where})")
    if path.is_dir():
        if src.format == "hf_disk" or any((path / m).exists() for m in _HF_DISK_MARKERS):
            return ResolvedSource("hf_disk", (path,), str(raw))
        files = tuple(sorted(p for p in path.rglob("*") if p.is_file() and p.suffix.lower() in SUFFIX_FORMAT))
        if not files:
            raise UserInputError(f"{path}: directory holds no JSONL/JSON/CSV/TSV/Parquet files ({where})")
        return ResolvedSource(_format_of(files, src, where), files, str(raw))
    return ResolvedSource(_format_of((path,), src, where), (path,), str(raw))


def read_dataset(resolved: ResolvedSource, src: Source, what: str) -> pl.DataFrame:
    """All rows of a non-task input (e.g. a benchmark set) with the sources' readers and errors."""
    frame = _read(resolved, src)
    if frame.height == 0:
        raise UserInputError(f"{what}: the file is empty (no rows)")
    return frame


def _format_of(files: tuple[Path, ...], src: Source, where: str) -> str:
    if src.format != "auto":
        return src.format
    kinds = {SUFFIX_FORMAT.get(f.suffix.lower()) for f in files}
    if None in kinds:
        bad = next(f for f in files if f.suffix.lower() not in SUFFIX_FORMAT)
        raise UserInputError(
            f"{bad}: unknown file type {bad.suffix!r} ({where}); set `format:` to one of "
            + ", ".join(sorted(set(SUFFIX_FORMAT.values())))
        )
    if len(kinds) > 1:
        raise UserInputError(f"{where}: mixed file types {sorted(k for k in kinds if k)}; use one format per task")
    return str(next(iter(kinds)))


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


def with_source_ref(frame: pl.DataFrame, task: Task, label: str) -> pl.DataFrame:
    """Add ``source_ref`` = ``<task>:<id>`` from ``id_column`` (must be unique) or the row index."""
    id_column = task.source.id_column
    if id_column is None:
        ids = pl.int_range(0, pl.len(), dtype=pl.Int64).cast(pl.String)
    else:
        if id_column not in frame.columns:
            raise UserInputError(
                f"{label}: task {task.name!r}: id_column {id_column!r} is not a column"
                + did_you_mean(id_column, frame.columns)
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
    names = _schema_names(resolved, task.source)
    renamed = {column: target for target, column in task.columns.items()}
    missing = [c for c in renamed if c not in names]
    if missing:
        target = next(t for t, c in task.columns.items() if c == missing[0])
        raise UserInputError(
            f"{resolved.label}: task {task.name!r}: columns.{target}: source has no column {missing[0]!r}"
            + did_you_mean(missing[0], names)
        )
    return [renamed.get(n, n) for n in names]


def _schema_names(resolved: ResolvedSource, src: Source) -> list[str]:
    kind, first = resolved.kind, (resolved.files[0] if resolved.files else None)
    if kind == "parquet" and first is not None:
        return list(pl.read_parquet_schema(first).keys())
    if kind in ("csv", "tsv") and first is not None:
        return _read_csv(first, "\t" if kind == "tsv" else ",", n_rows=1).columns
    if kind == "hf":
        names = _hub_feature_names(src, resolved.revision)
        if names is not None:
            return names
    if kind == "jsonl" and first is not None:
        with first.open(encoding="utf-8") as fh:
            for lineno, line in enumerate(fh, 1):
                if line.strip():
                    return list(_json_line(line, first, lineno).keys())
        raise UserInputError(f"{first}: the source is empty")
    return _read(resolved, src).columns


def _hub_feature_names(src: Source, revision: str | None) -> list[str] | None:
    """Column names of a hub dataset from its metadata (no download of the rows); ``None`` if unknown."""
    assert src.hf is not None
    datasets = _import_datasets(src.hf)
    try:
        builder = datasets.load_dataset_builder(src.hf, src.config, revision=revision)
    except Exception:  # offline or an unusual dataset: the full read below gives the precise error
        return None
    features = builder.info.features
    return list(features) if features else None


# ---------------------------------------------------------------- readers


def _read(resolved: ResolvedSource, src: Source, limit: int | None = None) -> pl.DataFrame:
    """Read a source; with ``limit``, stop after the files (and, where the format allows, rows) it needs."""
    kind = resolved.kind
    if kind == "hf":
        return _read_hub(src, resolved.revision)
    if kind == "hf_disk":
        return _read_hf_disk(resolved.files[0], src)
    frames: list[pl.DataFrame] = []
    remaining = limit
    for path in resolved.files:
        frames.append(_read_file(path, kind, remaining))
        if remaining is not None:
            remaining -= frames[-1].height
            if remaining <= 0:
                break
    if len(frames) == 1:
        return frames[0]
    try:
        return pl.concat(frames, how="diagonal_relaxed")
    except pl.exceptions.PolarsError as exc:
        raise UserInputError(f"{resolved.label}: files do not share a schema: {exc}") from None


def _read_file(path: Path, kind: str, limit: int | None = None) -> pl.DataFrame:
    """One file; Parquet is scanned lazily and CSV/TSV read only as far as ``limit`` needs."""
    if kind == "parquet":
        try:
            lazy = pl.scan_parquet(path)
            return (lazy.head(limit) if limit is not None else lazy).collect()
        except (pl.exceptions.PolarsError, OSError) as exc:
            raise UserInputError(f"{path}: not a readable Parquet file: {_first_line(exc)}") from None
    if kind == "jsonl":
        return _read_jsonl(path)
    if kind == "json":
        return _read_json_array(path)
    return _read_csv(path, "\t" if kind == "tsv" else ",", n_rows=limit)


def _read_jsonl(path: Path) -> pl.DataFrame:
    try:
        return pl.read_ndjson(path, infer_schema_length=None)
    except (pl.exceptions.PolarsError, OSError):
        pass
    # polars does not say which line is bad: find it, and fall back to Python when the lines are valid JSON
    # whose types polars cannot unify.
    rows = []
    with path.open(encoding="utf-8") as fh:
        for lineno, line in enumerate(fh, 1):
            if line.strip():
                rows.append(_json_line(line, path, lineno))
    if not rows:
        return pl.DataFrame()  # callers say "empty" with their own context
    return _from_dicts(rows, path)


def _json_line(line: str, path: Path, lineno: int) -> dict[str, object]:
    try:
        value = json.loads(line)
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}:{lineno}: malformed JSON line (column {exc.colno}): {exc.msg}") from None
    if not isinstance(value, dict):
        raise UserInputError(f"{path}:{lineno}: expected a JSON object per line, got {type(value).__name__}")
    return value


def _read_json_array(path: Path) -> pl.DataFrame:
    try:
        value = json.loads(path.read_text(encoding="utf-8"))
    except json.JSONDecodeError as exc:
        raise UserInputError(f"{path}:{exc.lineno}: malformed JSON (column {exc.colno}): {exc.msg}") from None
    if isinstance(value, dict) and len(value) == 1 and isinstance(next(iter(value.values())), list):
        value = next(iter(value.values()))  # {"data": [...]}
    if not isinstance(value, list) or not all(isinstance(v, dict) for v in value):
        raise UserInputError(f"{path}: expected a JSON array of objects")
    return _from_dicts(value, path)


def _from_dicts(rows: list[dict[str, object]], path: Path) -> pl.DataFrame:
    try:
        return pl.from_dicts(rows, infer_schema_length=None)
    except (pl.exceptions.PolarsError, TypeError, ValueError) as exc:
        raise UserInputError(f"{path}: rows do not share a schema: {_first_line(exc)}") from None


def _read_csv(path: Path, sep: str, n_rows: int | None = None) -> pl.DataFrame:
    try:
        return pl.read_csv(path, separator=sep, n_rows=n_rows, infer_schema_length=10000)
    except pl.exceptions.NoDataError:
        raise UserInputError(f"{path}: the source is empty") from None
    except (pl.exceptions.PolarsError, OSError) as exc:
        ragged = _ragged_line(path, sep)
        if ragged is not None:
            raise UserInputError(
                f"{path}:{ragged[0]}: ragged row: {ragged[1]} fields, header has {ragged[2]}"
            ) from None
        raise UserInputError(f"{path}: not a readable CSV file: {_first_line(exc)}") from None


def _ragged_line(path: Path, sep: str) -> tuple[int, int, int] | None:
    with path.open(encoding="utf-8", newline="") as fh:
        reader = csv.reader(fh, delimiter=sep)
        header = next(reader, None)
        if header is None:
            return None
        for row in reader:
            if row and len(row) != len(header):
                return reader.line_num, len(row), len(header)
    return None


def _read_hf_disk(path: Path, src: Source) -> pl.DataFrame:
    datasets = _import_datasets(str(path))
    loaded = datasets.load_from_disk(str(path))
    if isinstance(loaded, datasets.DatasetDict):
        if src.split not in loaded:
            raise UserInputError(
                f"{path}: no split {src.split!r}" + did_you_mean(src.split, loaded) + f" (splits: {', '.join(loaded)})"
            )
        loaded = loaded[src.split]
    return _dataset_to_polars(loaded)


def _read_hub(src: Source, revision: str | None) -> pl.DataFrame:
    assert src.hf is not None
    datasets = _import_datasets(src.hf)
    try:
        loaded = datasets.load_dataset(src.hf, src.config, split=src.split, revision=revision)
    except Exception as exc:  # datasets raises many types for offline / missing datasets
        raise UserInputError(
            f"hub dataset {src.hf!r}"
            + (f" (config {src.config!r}, split {src.split!r})" if src.config else f" (split {src.split!r})")
            + f" could not be loaded: {_first_line(exc)}. It needs network access (or a local copy: "
            "`path:` to a save_to_disk directory or data files)"
        ) from None
    return _dataset_to_polars(loaded)


def _dataset_to_polars(ds: object) -> pl.DataFrame:
    table = ds.data.table if hasattr(ds.data, "table") else ds.data  # type: ignore[attr-defined]
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _import_datasets(what: str):  # type: ignore[no-untyped-def]
    try:
        import datasets
    except ImportError:
        raise UserInputError(
            f"{what}: reading Hugging Face datasets needs the `datasets` package: pip install 'cardtune[hf]'"
        ) from None
    return datasets


def _first_line(exc: BaseException) -> str:
    text = str(exc).strip()
    return text.splitlines()[0] if text else type(exc).__name__


# ---------------------------------------------------------------- hub revisions


@functools.lru_cache(maxsize=64)
def resolve_hub_revision(hf: str, revision: str | None) -> str:
    """The commit sha a hub dataset resolves to (asks the hub when ``revision`` is a branch/tag or unset).

    Asked once per process: fingerprinting and loading a source within one build see the same commit.
    """
    if revision is not None and len(revision) == 40 and all(c in "0123456789abcdef" for c in revision):
        return revision
    try:
        from huggingface_hub import HfApi

        sha = HfApi().dataset_info(hf, revision=revision).sha
    except Exception as exc:  # offline, unknown dataset, auth
        raise UserInputError(
            f"hub dataset {hf!r}: cannot resolve its revision ({_first_line(exc)}). Fingerprinting a hub "
            "source needs network access, or pin `revision:` to a 40-character commit sha"
        ) from None
    if not sha:
        raise UserInputError(f"hub dataset {hf!r}: the hub returned no revision; pin `revision:`")
    return str(sha)
