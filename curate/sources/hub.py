"""Hugging Face readers: ``datasets.save_to_disk`` folders and hub datasets, and pinning hub revisions.

Both need the optional ``datasets`` package (imported when a source uses them). Hub column names come from the
dataset's metadata when the hub answers, so validating a card does not download rows.
"""

from __future__ import annotations

import functools
from abc import abstractmethod
from typing import TYPE_CHECKING, Any

from cardtune.curate.errors import UserInputError, did_you_mean
from cardtune.curate.sources.base import Reader, ResolvedSource, first_line

if TYPE_CHECKING:
    import polars as pl

    from cardtune.curate.sources.spec import Source


class _DatasetsReader(Reader):
    """A ``datasets.Dataset`` source: read whole, or a row range of its memory-mapped table (``_dataset`` opens it)."""

    def read(self, source: ResolvedSource, src: Source, limit: int | None = None) -> pl.DataFrame:
        return _dataset_to_polars(self._dataset(source, src))

    def row_count(self, source: ResolvedSource, src: Source) -> int | None:
        return len(self._dataset(source, src))

    def read_rows(self, source: ResolvedSource, src: Source, first: int, count: int) -> pl.DataFrame:
        return _dataset_to_polars(self._dataset(source, src), first, count)

    @abstractmethod
    def _dataset(self, source: ResolvedSource, src: Source) -> Any: ...


class HfDiskReader(_DatasetsReader):
    """A ``datasets`` ``save_to_disk`` folder (a ``Dataset``, or a ``DatasetDict`` read at ``split``)."""

    name = "hf_disk"
    reads = "directory"
    summary = "a `datasets.save_to_disk` folder"
    markers = ("dataset_info.json", "dataset_dict.json", "state.json")

    def _dataset(self, source: ResolvedSource, src: Source) -> Any:
        """The folder's dataset (memory-mapped Arrow: opening it reads no rows)."""
        path = source.files[0]
        datasets = _import_datasets(str(path))
        loaded = datasets.load_from_disk(str(path))
        if isinstance(loaded, datasets.DatasetDict):
            if src.split not in loaded:
                raise UserInputError(
                    f"{path}: no split {src.split!r}"
                    + did_you_mean(src.split, loaded)
                    + f" (splits: {', '.join(loaded)})"
                )
            loaded = loaded[src.split]
        return loaded


class HubReader(_DatasetsReader):
    """A Hugging Face hub dataset (``hf:``, with ``config``, ``split`` and a pinned ``revision``)."""

    name = "hf"
    reads = "hub"
    summary = "a Hugging Face hub dataset"

    def _dataset(self, source: ResolvedSource, src: Source) -> Any:
        """The split, downloaded once into the ``datasets`` cache and memory-mapped from there (a worker that
        opens it again reads the cache, not the hub)."""
        assert src.hf is not None
        datasets = _import_datasets(src.hf)
        try:
            return datasets.load_dataset(src.hf, src.config, split=src.split, revision=source.revision)
        except Exception as exc:  # datasets raises many types for offline / missing datasets
            raise UserInputError(
                f"hub dataset {src.hf!r}"
                + (f" (config {src.config!r}, split {src.split!r})" if src.config else f" (split {src.split!r})")
                + f" could not be loaded: {first_line(exc)}. It needs network access (or a local copy: "
                "`path:` to a save_to_disk directory or data files)"
            ) from None

    def columns(self, source: ResolvedSource, src: Source) -> list[str]:
        """Column names from the hub's metadata (no download of the rows); the rows if it does not say."""
        assert src.hf is not None
        datasets = _import_datasets(src.hf)
        try:
            builder = datasets.load_dataset_builder(src.hf, src.config, revision=source.revision)
        except Exception:  # offline or an unusual dataset: the full read below gives the precise error
            return self.read(source, src).columns
        features = builder.info.features
        return list(features) if features else self.read(source, src).columns


def _dataset_to_polars(ds: Any, first: int = 0, count: int | None = None) -> pl.DataFrame:
    """The dataset's rows (``count`` rows from ``first`` when given) as a polars frame.

    A range is read through ``datasets``' Arrow formatting: a zero-copy slice of the memory-mapped table (or the
    rows an indices mapping picks, in its order).
    """
    import polars as pl

    if count is not None:
        table = ds.with_format("arrow")[first : first + count]
    else:
        table = ds.data.table if hasattr(ds.data, "table") else ds.data
    frame = pl.from_arrow(table)
    assert isinstance(frame, pl.DataFrame)
    return frame


def _import_datasets(what: str) -> Any:
    try:
        import datasets
    except ImportError:
        raise UserInputError(
            f"{what}: reading Hugging Face datasets needs the `datasets` package: pip install 'cardtune[hf]'"
        ) from None
    return datasets


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
            f"hub dataset {hf!r}: cannot resolve its revision ({first_line(exc)}). Fingerprinting a hub "
            "source needs network access, or pin `revision:` to a 40-character commit sha"
        ) from None
    if not sha:
        raise UserInputError(f"hub dataset {hf!r}: the hub returned no revision; pin `revision:`")
    return str(sha)
