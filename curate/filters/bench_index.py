"""Benchmark indexes for decontamination: a benchmark's items read and n-gram-hashed once per process.

:class:`BenchmarkIndex` holds a benchmark's sorted unique n-gram hashes and, for each, the first item that has it;
:class:`Prefilter` is a one-probe membership table in front of the binary search. ``benchmark_index`` caches an
index per process (a partitioned build scans many slices against the same benchmarks). The filter itself is
:mod:`cardtune.curate.filters.decontaminate`.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import TYPE_CHECKING

import numpy as np
import numpy.typing as npt
import polars as pl

from cardtune.curate.errors import Issue, UserInputError, did_you_mean
from cardtune.curate.filters import textnorm
from cardtune.curate.filters.base import BuildContext
from cardtune.curate.sources.spec import Source

if TYPE_CHECKING:
    from cardtune.curate.filters.decontaminate import Benchmark

ROW_BATCH = 4_096  # rows per batch (rendered + fields): small temporaries reuse freed heap instead of page-faulting


@dataclass(frozen=True)
class BenchmarkIndex:
    """A benchmark's n-grams: sorted unique hashes and, for each, the first item that has it."""

    name: str
    hashes: npt.NDArray[np.uint64]
    item_of: npt.NDArray[np.int64]
    item_ids: list[str]
    items_too_short: int

    def lookup(self, query: npt.NDArray[np.uint64]) -> npt.NDArray[np.int64]:
        """For each query hash, the index into ``hashes`` if present, else -1."""
        if not len(self.hashes):
            return np.full(len(query), -1, dtype=np.int64)
        pos = np.searchsorted(self.hashes, query)
        pos = np.minimum(pos, len(self.hashes) - 1)
        return np.where(self.hashes[pos] == query, pos, -1).astype(np.int64)


class Prefilter:
    """A one-probe membership table over the top bits of the hashes of several benchmarks.

    Most training n-grams are in no benchmark: one gather into a table of ~32 slots per benchmark n-gram
    rejects ~97% of them, so the binary search (cache-unfriendly) only runs on the few that remain.
    """

    def __init__(self, indexes: list[BenchmarkIndex]) -> None:
        total = sum(len(i.hashes) for i in indexes)
        bits = min(max(int(total * 32).bit_length(), 16), 26)
        self.shift = np.uint64(64 - bits)
        self.table = np.zeros(1 << bits, dtype=bool)
        for idx in indexes:
            self.table[(idx.hashes >> self.shift).astype(np.intp)] = True

    def candidates(self, query: npt.NDArray[np.uint64]) -> npt.NDArray[np.intp]:
        """Positions of the query hashes that may be in some benchmark (a superset of the true hits)."""
        return np.flatnonzero(self.table[(query >> self.shift).astype(np.intp)])


def _where(bench: Benchmark, index: int) -> tuple[str, tuple[str | int, ...]]:
    return (bench.path or f"hf:{bench.hf}"), ("filters", "decontaminate", "benchmarks", index)


def load_benchmark(bench: Benchmark, ctx: BuildContext, index: int = 0) -> pl.DataFrame:
    """The benchmark's rows with an ``_item_id`` and an ``_item_text`` column (named fields joined by newlines)."""
    file, loc = _where(bench, index)
    from cardtune.curate.sources.read import read_dataset

    try:
        frame = read_dataset(ctx.inputs.benchmark(bench.name), benchmark_source(bench), f"benchmark '{bench.name}'")
    except UserInputError as exc:  # the reader's precise message, at the card's benchmark entry
        raise UserInputError([Issue(file, 0, (*loc, "path" if bench.path else "hf"), str(exc))]) from None
    if frame.height == 0:
        raise UserInputError([Issue(file, 0, loc, f"benchmark '{bench.name}' is empty (no rows)")])
    for name in [*bench.fields, *([bench.id_field] if bench.id_field else [])]:
        if name not in frame.columns:
            raise UserInputError(
                [
                    Issue(
                        file,
                        0,
                        (*loc, "id_field" if name == bench.id_field else "fields"),
                        f"benchmark '{bench.name}' has no field '{name}'{did_you_mean(name, frame.columns)}"
                        f" (fields: {', '.join(frame.columns)})",
                    )
                ]
            )
    parts = []
    for name in bench.fields:
        dtype = frame.schema[name]
        col = pl.col(name)
        if isinstance(dtype, pl.List):
            col = col.cast(pl.List(pl.String)).list.join("\n")
        elif isinstance(dtype, pl.Struct | pl.Array):
            raise UserInputError([Issue(file, 0, (*loc, "fields"), f"field '{name}' is {dtype}, not text")])
        parts.append(col.cast(pl.String).fill_null(""))
    ids = pl.col(bench.id_field).cast(pl.String) if bench.id_field else pl.int_range(pl.len()).cast(pl.String)
    return frame.select(ids.alias("_item_id"), pl.concat_str(parts, separator="\n").alias("_item_text"))


def index_benchmark(name: str, items: pl.DataFrame, n: int) -> BenchmarkIndex:
    """Hash every item's n-grams; keep the first item per n-gram."""
    hashes: list[npt.NDArray[np.uint64]] = []
    owners: list[npt.NDArray[np.int64]] = []
    too_short = 0
    for lo in range(0, items.height, ROW_BATCH):
        grams = textnorm.ngrams(textnorm.words(items.get_column("_item_text").slice(lo, ROW_BATCH)), n)
        counts = np.diff(grams.doc_offsets)
        too_short += int((counts == 0).sum())
        hashes.append(grams.hashes)
        owners.append(np.repeat(np.arange(lo, lo + len(counts), dtype=np.int64), counts))
    flat = np.concatenate(hashes) if hashes else np.zeros(0, np.uint64)
    owner = np.concatenate(owners) if owners else np.zeros(0, np.int64)
    uniq, first = np.unique(flat, return_index=True)
    return BenchmarkIndex(name, uniq, owner[first], items.get_column("_item_id").to_list(), too_short)


_INDEXES: dict[tuple[object, ...], BenchmarkIndex] = {}  # per process: partitions of one build share an index


def benchmark_index(bench: Benchmark, ctx: BuildContext, index: int, n: int) -> BenchmarkIndex:
    """The n-gram index of a benchmark, built once per process (a partitioned build scans many slices)."""
    source = ctx.inputs.benchmark(bench.name)
    stats = tuple((str(f), f.stat().st_mtime_ns, f.stat().st_size) for f in source.files if f.is_file())
    key = (bench.model_dump_json(), source, stats, n)
    if key not in _INDEXES:
        if len(_INDEXES) >= 8:
            _INDEXES.clear()
        _INDEXES[key] = index_benchmark(bench.name, load_benchmark(bench, ctx, index), n)
    return _INDEXES[key]


def benchmark_source(bench: Benchmark) -> Source:
    """The reader settings of a benchmark set (read like a task source)."""
    return Source(
        path=bench.path,
        hf=bench.hf,
        config=bench.config,
        split=bench.split,
        revision=bench.revision,
        format=bench.format,
    )
