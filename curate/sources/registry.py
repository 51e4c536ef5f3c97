"""The one ordered list of source readers (``READERS``) and the look-ups built on it.

Everything that names formats reads this list: ``locate`` (by file name, folder markers or ``format:``), the
directory scan, the "unknown file type" message, and the card's ``source.format`` field (its allowed values and
its reference text). Order matters: it is the order formats are listed in, and the first reader wins a tie
between equally long suffixes or between folder markers. To add a format, write a ``Reader`` (see
``cardtune.curate.sources.base``) and append an instance here.
"""

from __future__ import annotations

from pathlib import Path

from cardtune.curate.errors import UserInputError, did_you_mean
from cardtune.curate.sources.base import Reader
from cardtune.curate.sources.columnar import ArrowReader, ParquetReader
from cardtune.curate.sources.hub import HfDiskReader, HubReader
from cardtune.curate.sources.text import CsvReader, JsonlReader, JsonReader, TsvReader
from cardtune.curate.sources.textio import COMPRESSIONS

AUTO = "auto"

READERS: tuple[Reader, ...] = (
    JsonlReader(),
    JsonReader(),
    CsvReader(),
    TsvReader(),
    ParquetReader(),
    ArrowReader(),
    HfDiskReader(),
    HubReader(),
)


def reader(name: str) -> Reader:
    """The reader called ``name`` (a ``ResolvedSource.kind`` or a card's ``format``)."""
    for candidate in READERS:
        if candidate.name == name:
            return candidate
    names = [r.name for r in READERS]
    raise UserInputError(f"unknown source format {name!r}{did_you_mean(name, names)}; one of {', '.join(names)}")


def card_formats() -> list[str]:
    """The values a card's ``source.format`` may take: ``auto``, then every file and folder format."""
    return [AUTO, *(r.name for r in READERS if r.reads != "hub")]


def file_formats() -> list[str]:
    """Names of the readers of single files, in registry order."""
    return [r.name for r in READERS if r.reads == "files"]


def hub_reader() -> Reader:
    """The reader of ``hf:`` sources."""
    return next(r for r in READERS if r.reads == "hub")


def reader_for_file(path: Path) -> Reader | None:
    """The file reader whose suffix is the longest ending of ``path``'s name (any case), or ``None``."""
    best: tuple[int, Reader] | None = None
    for candidate in READERS:
        if candidate.reads != "files":
            continue
        suffix = candidate.suffix_of(path.name)
        if suffix is not None and (best is None or len(suffix) > best[0]):
            best = (len(suffix), candidate)
    return best[1] if best else None


def directory_reader(path: Path) -> Reader | None:
    """The first folder reader with one of its marker files in ``path``, or ``None``."""
    for candidate in READERS:
        if candidate.reads == "directory" and any((path / m).exists() for m in candidate.markers):
            return candidate
    return None


def format_help() -> str:
    """The card reference text of ``source.format``: every format with its file endings or marker files."""
    zipped = "/".join(f"`{c}`" for c in COMPRESSIONS)
    parts = []
    for r in READERS:
        if r.reads == "files":
            plain = [s for s in r.suffixes if not s.endswith(tuple(COMPRESSIONS))]
            also = f", optionally + {zipped}" if len(plain) < len(r.suffixes) else ""
            parts.append(f"`{r.name}` ({r.summary}; {', '.join(f'`{s}`' for s in plain)}{also})")
        elif r.reads == "directory":
            parts.append(f"`{r.name}` ({r.summary}; found by {', '.join(f'`{m}`' for m in r.markers)})")
    return (
        f"File format: `{AUTO}` picks it from the file name (the longest known ending wins), or one of "
        + "; ".join(parts)
        + f". Compression is detected from the file's bytes. Default: `{AUTO}`."
    )
