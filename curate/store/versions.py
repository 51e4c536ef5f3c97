"""The store: version directories ``<output.dir>/<name>/<id>/``, written atomically, read back safely.

A version is complete exactly when its ``manifest.json`` exists: files are written into a hidden temporary
directory beside the target, the manifest last, and the directory is renamed into place in one step. An
interrupted build leaves only a ``.tmp-*`` directory, which is never mistaken for a version. The manifest's shape
is owned by :mod:`cardtune.curate.store.manifest`; a version with a manifest of another format is listed by
:func:`scan_versions` with the reason, skipped by :func:`list_versions`, and refused by :func:`read_manifest`.
"""

from __future__ import annotations

import contextlib
import os
import shutil
import uuid
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import polars as pl

from cardtune.curate.errors import UserInputError
from cardtune.curate.rows import INTERNAL_COLUMNS
from cardtune.curate.store.manifest import Manifest, parse_manifest

SPLITS = ("train", "eval", "heldout")
UNSEEN_SPLIT = "eval_unseen_templates"  # written only by versions with unseen templates (templating/unseen.py)
MANIFEST = "manifest.json"
TMP_PREFIX = ".tmp-"


def is_complete(version_dir: Path) -> bool:
    """True when ``version_dir`` holds a finished version (its manifest exists)."""
    return (version_dir / MANIFEST).is_file()


def public_frame(frame: pl.DataFrame) -> pl.DataFrame:
    """The columns that are written: the row contract minus the internal flat-text columns."""
    return frame.drop([c for c in INTERNAL_COLUMNS if c in frame.columns])


def write_parquet(frame: pl.DataFrame, path: Path) -> None:
    """Deterministic parquet: fixed compression and row-group size, so equal frames give equal bytes."""
    frame.write_parquet(path, compression="zstd", compression_level=3, statistics=True, row_group_size=65536)


@contextmanager
def staging_dir(root: Path, version: str) -> Iterator[Path]:
    """A temporary directory beside the final one; removed if the block fails (also on SIGTERM, see the CLI).

    Staging dirs of processes that no longer run (a build killed with SIGKILL, a power cut) are removed first,
    and an interrupted ``--force`` replacement is undone (see :func:`recover`).
    """
    created = [p for p in (root, *root.parents) if not p.exists()]  # folders this build makes (removed on failure)
    root.mkdir(parents=True, exist_ok=True)
    recover(root)
    tmp = root / f"{TMP_PREFIX}{version}-{os.getpid()}-{uuid.uuid4().hex[:8]}"
    tmp.mkdir()
    try:
        yield tmp
    except BaseException:
        shutil.rmtree(tmp, ignore_errors=True)
        for folder in created:  # innermost first: e.g. datasets/<name>/ then datasets/, when still empty
            with contextlib.suppress(OSError):
                folder.rmdir()
        raise


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # another user's live process
        return True
    return True


def recover(root: Path) -> list[str]:
    """Clean what dead processes left under ``<output.dir>/<name>/``; returns what was done, one line each.

    * ``.tmp-<id>-<pid>-<x>``: a staging dir whose process is gone → removed;
    * ``.tmp-old-<id>-<pid>-<x>``: the previous version moved aside by ``--force``; if its process died before
      the new one was in place (no ``<id>`` dir), it is renamed back, else removed.
    """
    done: list[str] = []
    if not root.is_dir():
        return done
    for path in sorted(root.iterdir()):
        name = path.name
        if not name.startswith(TMP_PREFIX) or not path.is_dir():
            continue
        parts = name[len(TMP_PREFIX) :].split("-")
        old = parts[0] == "old"
        if old:
            parts = parts[1:]
        if len(parts) < 3 or not parts[-2].isdigit() or _pid_alive(int(parts[-2])):
            continue
        final = root / "-".join(parts[:-2])
        if old and not final.exists() and (path / MANIFEST).is_file():
            path.rename(final)
            done.append(f"restored {final} (a --force rebuild was interrupted)")
        else:
            shutil.rmtree(path, ignore_errors=True)
            done.append(f"removed {path} (left by an interrupted build)")
    return done


def publish(tmp: Path, final: Path, manifest: Manifest) -> Path:
    """Write the manifest last, then move the staged directory into place (replacing an old one)."""
    (tmp / MANIFEST).write_text(manifest.to_json(), encoding="utf-8")
    if final.exists():  # --force: move the old version aside; a crash in between is undone by `recover`
        trash = final.with_name(f"{TMP_PREFIX}old-{final.name}-{os.getpid()}-{uuid.uuid4().hex[:8]}")
        final.rename(trash)
        tmp.rename(final)
        shutil.rmtree(trash, ignore_errors=True)
    else:
        tmp.rename(final)
    return final


def read_manifest(version_dir: str | Path) -> Manifest:
    """The manifest of a complete version; a clear error for a missing or unfinished directory, a corrupt
    manifest, or one of another format (built by another cardtune: rebuild it)."""
    version_dir = Path(version_dir)
    if not version_dir.exists():
        raise UserInputError(f"{version_dir}: no such dataset version directory")
    if not version_dir.is_dir():
        raise UserInputError(f"{version_dir}: not a directory (expected a dataset version directory)")
    path = version_dir / MANIFEST
    if not path.is_file():
        if not any((version_dir / f"{split}.parquet").exists() for split in (*SPLITS, "rejects")):
            raise UserInputError(
                f"{version_dir}: not a dataset version directory (no {MANIFEST}); versions live under "
                "<output.dir>/<name>/<id>/ — `cardtune ls` lists them"
            )
        raise UserInputError(f"{version_dir}: incomplete dataset version (no {MANIFEST}); rebuild it")
    manifest = parse_manifest(path)
    for split in SPLITS:
        if not (version_dir / f"{split}.parquet").is_file():
            raise UserInputError(f"{version_dir}: incomplete dataset version ({split}.parquet is missing)")
    return manifest


def read_split(version_dir: str | Path, split: str) -> pl.DataFrame:
    """One split of a version as a polars frame."""
    if split not in (*SPLITS, UNSEEN_SPLIT, "rejects"):
        raise UserInputError(f"unknown split {split!r}; one of {', '.join((*SPLITS, UNSEEN_SPLIT, 'rejects'))}")
    manifest = read_manifest(version_dir)
    if split == UNSEEN_SPLIT and manifest.counts.splits.eval_unseen_templates is None:
        raise UserInputError(f"{version_dir}: this version has no {UNSEEN_SPLIT} split (no unseen templates)")
    return pl.read_parquet(Path(version_dir) / f"{split}.parquet")


def load_version(version_dir: str | Path) -> Any:
    """A version as a ``datasets.DatasetDict`` with ``train``, ``eval``, ``heldout`` (in memory), and
    ``eval_unseen_templates`` when the version has unseen templates."""
    version_dir = Path(version_dir)
    manifest = read_manifest(version_dir)
    names = (*SPLITS, UNSEEN_SPLIT) if manifest.counts.splits.eval_unseen_templates is not None else SPLITS
    try:
        import datasets
        import pyarrow.parquet as pq
    except ImportError:
        raise UserInputError(
            "loading a version as a DatasetDict needs `datasets`: pip install 'cardtune[hf]'"
        ) from None
    return datasets.DatasetDict(
        {split: datasets.Dataset(pq.read_table(version_dir / f"{split}.parquet")) for split in names}
    )


@dataclass(frozen=True)
class Listed:
    """A complete version directory under an output root: its manifest, or why it cannot be read."""

    name: str  # the card name (the parent folder)
    dir: Path
    manifest: Manifest | None
    problem: str = ""  # one line, e.g. "manifest format 1 is not supported ...; rebuild ..." (manifest is None)


def scan_versions(root: str | Path) -> list[Listed]:
    """Every complete version under an output root, readable or not; newest first per card, unreadable last."""
    root = Path(root)
    found: list[Listed] = []
    if not root.is_dir():
        return found
    for card_dir in sorted(p for p in root.iterdir() if p.is_dir() and not p.name.startswith(".")):
        for vdir in sorted(card_dir.iterdir()):
            if vdir.is_dir() and not vdir.name.startswith(".") and is_complete(vdir):
                try:
                    found.append(Listed(card_dir.name, vdir, parse_manifest(vdir / MANIFEST)))
                except (UserInputError, OSError) as exc:
                    problem = str(exc).removeprefix(f"{vdir / MANIFEST}: ")
                    found.append(Listed(card_dir.name, vdir, None, problem))
    found.sort(key=lambda v: v.manifest.created if v.manifest else "", reverse=True)  # newest first ...
    found.sort(key=lambda v: (v.name, v.manifest is None))  # ... within each card, unreadable last (stable)
    return found


def list_versions(root: str | Path) -> list[tuple[str, Path, Manifest]]:
    """Readable versions under an output root: (card name, version dir, manifest), newest first per card.

    Versions whose manifest is corrupt or of another format are skipped (``scan_versions`` lists them).
    """
    return [(v.name, v.dir, v.manifest) for v in scan_versions(root) if v.manifest is not None]


def resolve_version(ref: str | Path, root: str | Path = "datasets") -> Path:
    """A version directory from a path, ``<name>/<id>``, or a unique id prefix under ``root``."""
    path = Path(ref)
    if path.is_dir():
        return path
    # unreadable versions count too: naming one gives read_manifest's "rebuild" line, not "no such version"
    candidates = [
        v.dir
        for v in scan_versions(root)
        if v.dir.name.startswith(str(ref)) or str(ref) == f"{v.dir.parent.name}/{v.dir.name}"
    ]
    if len(candidates) == 1:
        return candidates[0]
    if not candidates:
        raise UserInputError(f"{ref}: no such dataset version (not a directory, nor an id under {root}/)")
    raise UserInputError(f"{ref}: ambiguous version id prefix ({', '.join(str(c) for c in candidates)})")
