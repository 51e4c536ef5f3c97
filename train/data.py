"""A dataset version as training and evaluation rows (``datasets.Dataset``), with the manifest checked first.

Versions are read through ``cardtune.curate.store.versions`` (a missing or incomplete directory is a clear error). Training
uses only ``prompt`` and ``completion``: conversational message lists in instruction mode (TRL applies the chat
template and completion-only loss), plain strings in finetune mode. Multi-turn ``messages`` rows become
prompt = all turns but the last, completion = the last assistant turn.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

from cardtune.curate.errors import UserInputError
from cardtune.curate.store import versions as store
from cardtune.curate.store.manifest import Manifest


@dataclass(frozen=True)
class Version:
    """A complete version on disk: its directory, manifest and splits."""

    dir: Path
    manifest: Manifest
    splits: Any  # datasets.DatasetDict

    @property
    def id(self) -> str:
        return self.manifest.version_id

    @property
    def mode(self) -> str:
        return self.manifest.mode

    def held_out_tasks(self) -> set[str]:
        return self.manifest.held_out_tasks()


def open_version(version_dir: str | Path) -> Version:
    """Read a version (manifest checked); ``UserInputError`` when it is missing or incomplete."""
    version_dir = Path(version_dir)
    manifest = store.read_manifest(version_dir)
    return Version(version_dir, manifest, store.load_version(version_dir))


def normalized(dataset: Any, mode: str) -> Any:
    """The dataset, checked to hold the ``prompt``/``completion`` columns every cardtune version has."""
    missing = [c for c in ("prompt", "completion") if c not in dataset.column_names]
    if missing:
        raise UserInputError(f"dataset rows lack column(s) {missing}; rebuild the version with this cardtune")
    return dataset
