"""Version ids: a sha256 over canonical JSON of everything that determines a version's bytes.

Inputs: the card's data sections (validated, with defaults filled in), the bytes of every template used, a
content hash of every source (file bytes, or the hub commit), of every benchmark set and tokenizer the
filters and the mixture read — all taken from the card's :class:`~cardtune.curate.inputs.ResolvedInputs`, so
what is hashed is what is read — and :data:`CURATION_FORMAT`.

``CURATION_FORMAT`` is an explicit version of *how* inputs become bytes (rendering, filters, mixing, the
parquet layout). It replaces a hash of every ``curate/*.py`` file, which changed every id on any edit (a colour
in the HTML report, a docstring, a refactor that moves files) and so rebuilt every user's versions after each
upgrade. Golden tests (``tests/test_golden.py``) build every example card and pin the digests of the output
files: a change in output bytes fails them with a message to bump ``CURATION_FORMAT`` and re-pin. Anything
that cannot be hashed raises — there is never a random fallback (DESIGN §10.5).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Iterator, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from cardtune.curate.inputs import NamedInput, ResolvedInputs
    from cardtune.curate.sources.read import ResolvedSource

ID_LENGTH = 16  # hex characters of the sha256 shown as the version id
# Bump when the same inputs would give other output bytes (and re-pin tests/golden_digests.json).
CURATION_FORMAT = 4  # 4: splits streamed from the partitioned spill in fixed 65,536-row groups (pyarrow writer)


def canonical_json(value: Any) -> bytes:
    """Deterministic JSON bytes (sorted keys, no whitespace, NaN refused)."""
    try:
        return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=False, allow_nan=False).encode()
    except (TypeError, ValueError) as exc:
        raise TypeError(f"cannot fingerprint a non-JSON value: {exc}") from None


def version_inputs(
    card_data: Mapping[str, Any],
    template_hashes: Mapping[str, str],
    source_hashes: Mapping[str, str],
    other_hashes: Mapping[str, str],
) -> dict[str, Any]:
    """The full record that is hashed (also stored in the manifest, so `diff` can explain a new id).

    ``other_hashes`` covers inputs that change the data without being sources: benchmark sets (what
    decontamination drops) and tokenizers (token bounds and token budgets).
    """
    return {
        "card": dict(card_data),
        "templates": dict(sorted(template_hashes.items())),
        "sources": dict(sorted(source_hashes.items())),
        "other": dict(sorted(other_hashes.items())),
        "curation_format": CURATION_FORMAT,
    }


def version_id(inputs: Mapping[str, Any]) -> str:
    """The content-addressed id of a version (first ``ID_LENGTH`` hex chars of a sha256)."""
    return hashlib.sha256(canonical_json(inputs)).hexdigest()[:ID_LENGTH]


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()


def source_fingerprint(resolved: ResolvedSource, hub: str | None = None) -> str:
    """A content hash of a source: sha256 of every file's bytes, or ``hf:<id>:...@<commit>`` for the hub."""
    if resolved.kind == "hf":
        return f"hf:{hub or resolved.label}@{resolved.revision}"
    return files_fingerprint(source_files(resolved))


def local_files(path: Path) -> list[Path]:
    """A file, or every file under a folder (sorted): what hashing and the change check read."""
    return [path] if path.is_file() else sorted(p for p in path.rglob("*") if p.is_file())


def source_files(resolved: ResolvedSource) -> list[Path]:
    """The files of a resolved source: its files, or everything in a ``save_to_disk`` folder."""
    return local_files(resolved.files[0]) if resolved.kind == "hf_disk" else list(resolved.files)


def named_fingerprint(named: NamedInput) -> str:
    """A tokenizer (or model) reference: its file or folder by content, a hub id by name."""
    if named.path is None:
        return f"name:{named.hub_id}"
    return files_fingerprint(local_files(named.path))


def input_hashes(inputs: ResolvedInputs) -> tuple[dict[str, str], dict[str, str]]:
    """(sources by task, other inputs) — every content hash of a build, from its resolved inputs."""
    card = inputs.card
    sources = {}
    for task in card.tasks:
        src = task.source
        hub = f"{src.hf}:{src.config}:{src.split}" if src.hf is not None else None
        sources[task.name] = source_fingerprint(inputs.sources[task.name], hub)
    other: dict[str, str] = {}
    for value, resolved in inputs.benchmarks.items():
        other[f"benchmark:{value}"] = source_fingerprint(resolved)
    for value, named in inputs.tokenizers.items():
        other[f"tokenizer:{value}"] = named_fingerprint(named)
    for value, path in inputs.versions.items():
        other[f"version:{value}"] = files_fingerprint([path / "manifest.json"])
    return sources, other


Snapshot = dict[Path, tuple[int, int]]  # file -> (size, mtime_ns)


def input_files(inputs: ResolvedInputs) -> list[Path]:
    """Every local file a build reads: sources, benchmarks, tokenizers, earlier versions' manifests."""
    found: list[Path] = []
    for resolved in [*inputs.sources.values(), *inputs.benchmarks.values()]:
        found.extend(source_files(resolved))
    for named in inputs.tokenizers.values():
        if named.path is not None:
            found.extend(local_files(named.path))
    found.extend(path / "manifest.json" for path in inputs.versions.values())
    return found


def snapshot(files: list[Path]) -> Snapshot:
    """Size and modification time of each file, taken before hashing (compared again after reading)."""
    out: Snapshot = {}
    for path in files:
        stat = path.stat()
        out[path] = (stat.st_size, stat.st_mtime_ns)
    return out


def check_unchanged(before: Snapshot) -> None:
    """Refuse to publish when an input changed between hashing and reading (the id would name other bytes)."""
    from cardtune.curate.errors import UserInputError

    for path, (size, mtime) in before.items():
        try:
            stat = path.stat()
        except OSError:
            raise UserInputError(f"{path}: removed while the build was reading it; nothing was written") from None
        if (stat.st_size, stat.st_mtime_ns) != (size, mtime):
            raise UserInputError(
                f"{path}: changed while the build was reading it (its hash no longer names what was read); "
                "nothing was written — build again"
            )


def files_fingerprint(paths: list[Path]) -> str:
    """``sha256:`` over the names and bytes of some files, in the given order."""
    digest = hashlib.sha256()
    for path in paths:
        digest.update(str(path.name).encode() + b"\0")
        for chunk in _chunks(path):
            digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def sha256_file(path: Path) -> str:
    """``sha256:`` of one file's bytes, read in chunks (a version's train split can be gigabytes)."""
    digest = hashlib.sha256()
    for chunk in _chunks(path):
        digest.update(chunk)
    return "sha256:" + digest.hexdigest()


def _chunks(path: Path, size: int = 1 << 22) -> Iterator[bytes]:
    with path.open("rb") as fh:
        while chunk := fh.read(size):
            yield chunk
