"""The ``source:`` section of a task: where its raw rows come from (a local file/glob/folder or a hub dataset).

Owned by the sources stage; the card schema embeds it in ``tasks[].source`` and benchmarks reuse it to be read
by the same readers.
"""

from __future__ import annotations

from pydantic import Field, field_validator, model_validator

from cardtune.curate.card.section import Section
from cardtune.curate.errors import did_you_mean
from cardtune.curate.sources import registry


class Source(Section):
    """Where a task's raw rows come from: a local file/glob/directory, or a Hugging Face hub dataset."""

    path: str | None = Field(
        None,
        description="A local data file (in any `format`), a glob, a directory of such files, or a folder format's "
        "directory (e.g. `datasets.save_to_disk`). Relative to the card's folder. An object-store or other fsspec "
        "URL (`s3://bucket/data/*.parquet`, `gs://…`, `hf://datasets/…`, `https://…`) is fetched into a local "
        "mirror first (`$CARDTUNE_CACHE`, default `~/.cache/cardtune`). Default: none (give `path` or `hf`).",
    )
    hf: str | None = Field(None, description="Hugging Face hub dataset id, e.g. `super_glue`. Default: none.")
    config: str | None = Field(None, description="Hub dataset configuration name (with `hf`). Default: none.")
    split: str = Field(
        "train", description="Split to read (with `hf` or a `save_to_disk` DatasetDict). Default: `train`."
    )
    revision: str | None = Field(
        None, description="Hub dataset revision (commit sha or tag); pin it for reproducible versions. Default: none."
    )
    format: str = Field(registry.AUTO, description=registry.format_help())
    id_column: str | None = Field(
        None, description="Column holding a stable row id used in `source_ref`; default: the row index."
    )
    limit: int | None = Field(
        None, ge=1, le=2**63 - 1, description="Read at most this many rows (the first N). Default: all rows."
    )

    @field_validator("format")
    @classmethod
    def _known_format(cls, value: str) -> str:
        return known_format(value)

    @model_validator(mode="after")
    def _one_of(self) -> Source:
        if (self.path is None) == (self.hf is None):
            raise ValueError("give exactly one of `path` (a local file) or `hf` (a hub dataset id)")
        if self.path is not None and (self.config is not None or self.revision is not None):
            raise ValueError("`config` and `revision` apply to `hf` sources only")
        return self


def known_format(value: str) -> str:
    """``value`` if it names a registered reader (or ``auto``); else a did-you-mean ``ValueError``."""
    formats = registry.card_formats()
    if value not in formats:
        hint = did_you_mean(value.lower(), formats)
        raise ValueError(f"{value!r} is not one of {', '.join(formats)}{hint}")
    return value
