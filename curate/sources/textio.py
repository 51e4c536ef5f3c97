"""Local files as bytes or text lines, decompressed (gzip, zstd) with pyarrow when they are compressed.

Compression is read from the file's first bytes, so ``format: jsonl`` on a ``data.gz`` works too; a file named
``.gz``/``.zst`` that is not compressed is an error rather than a guess. Line numbers in errors count lines of
the decompressed text. Uncompressed files are handed to polars as paths (its fastest reader).
"""

from __future__ import annotations

import io
from collections.abc import Iterator
from pathlib import Path

from cardtune.curate.errors import UserInputError
from cardtune.curate.sources.base import first_line

COMPRESSIONS = {".gz": "gzip", ".zst": "zstd"}  # file-name suffix -> pyarrow codec
_MAGIC = {b"\x1f\x8b": "gzip", b"\x28\xb5\x2f\xfd": "zstd"}


def with_compressions(*suffixes: str) -> tuple[str, ...]:
    """``suffixes`` followed by each of them with every compression suffix (``.csv`` → ``.csv``, ``.csv.gz``, …)."""
    return (*suffixes, *(s + c for s in suffixes for c in COMPRESSIONS))


def compression_of(path: Path) -> str | None:
    """``"gzip"``/``"zstd"`` from the file's first bytes, ``None`` for a plain file."""
    try:
        with path.open("rb") as fh:
            head = fh.read(4)
    except OSError as exc:
        raise UserInputError(f"{path}: cannot be read: {first_line(exc)}") from None
    for magic, codec in _MAGIC.items():
        if head.startswith(magic):
            return codec
    named = COMPRESSIONS.get(path.suffix.lower())
    if named is not None:
        raise UserInputError(f"{path}: not a {named}-compressed file (its name says {path.suffix!r})")
    return None


def polars_input(path: Path) -> Path | io.BytesIO:
    """What to hand a polars reader: the path itself, or the decompressed bytes of a compressed file."""
    codec = compression_of(path)
    return path if codec is None else io.BytesIO(read_bytes(path, codec))


def read_bytes(path: Path, codec: str | None = None) -> bytes:
    """The file's (decompressed) bytes."""
    codec = codec or compression_of(path)
    if codec is None:
        return path.read_bytes()
    import pyarrow as pa

    try:
        with pa.input_stream(str(path), compression=codec) as stream:
            return bytes(stream.read())
    except (OSError, ValueError) as exc:  # ArrowIOError / ArrowInvalid
        raise UserInputError(f"{path}: cannot decompress ({codec}): {first_line(exc)}") from None


def read_text(path: Path) -> str:
    """The file's (decompressed) UTF-8 text."""
    try:
        return read_bytes(path).decode("utf-8")
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not UTF-8 text ({exc.reason} at byte {exc.start})") from None


def text_lines(path: Path) -> Iterator[str]:
    """The file's (decompressed) UTF-8 lines with their line endings, read as needed (fit for ``csv.reader``)."""
    codec = compression_of(path)
    try:
        if codec is None:
            fh: io.TextIOWrapper = path.open(encoding="utf-8", newline="")
        else:
            import pyarrow as pa

            fh = io.TextIOWrapper(pa.input_stream(str(path), compression=codec), encoding="utf-8", newline="")
        with fh:
            yield from fh
    except UnicodeDecodeError as exc:
        raise UserInputError(f"{path}: not UTF-8 text ({exc.reason})") from None
    except (OSError, ValueError) as exc:
        what = f"cannot decompress ({codec})" if codec else "cannot be read"
        raise UserInputError(f"{path}: {what}: {first_line(exc)}") from None
