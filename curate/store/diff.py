"""``cardtune diff A B``: what changed between two versions — inputs (card, templates, sources) and counts.

Both manifests record the exact inputs that were hashed into their ids, so a new id can always be explained.
Owns the comparison only; the manifests' shape is :mod:`cardtune.curate.store.manifest`'s.
"""

from __future__ import annotations

from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from typing import Any

from cardtune.curate.store.manifest import Manifest


@dataclass(frozen=True)
class Change:
    """One difference: where, old value, new value (``None`` = absent)."""

    section: str  # card | templates | sources | other | cardtune | counts
    path: str
    old: Any
    new: Any


def _walk(a: Any, b: Any, path: str) -> Iterator[tuple[str, Any, Any]]:
    if isinstance(a, Mapping) and isinstance(b, Mapping):
        for key in sorted(set(a) | set(b), key=str):
            sub = f"{path}.{key}" if path else str(key)
            if key not in a:
                yield sub, None, b[key]
            elif key not in b:
                yield sub, a[key], None
            else:
                yield from _walk(a[key], b[key], sub)
    elif isinstance(a, list) and isinstance(b, list) and len(a) == len(b):
        for i, (x, y) in enumerate(zip(a, b, strict=True)):
            yield from _walk(x, y, f"{path}[{i}]")
    elif a != b:
        yield path, a, b


def diff_manifests(a: Manifest, b: Manifest) -> list[Change]:
    """Input changes (what made the ids differ) and count changes (what it did to the data)."""
    changes: list[Change] = []
    ia, ib = a.inputs, b.inputs
    for section in ("card", "templates", "sources", "other"):
        for path, old, new in _walk(getattr(ia, section), getattr(ib, section), ""):
            changes.append(Change(section, path, old, new))
    if ia.curation_format != ib.curation_format:
        changes.append(Change("cardtune", "curation format", ia.curation_format, ib.curation_format))
    for path, old, new in _walk(_counts(a), _counts(b), ""):
        changes.append(Change("counts", path, old, new))
    return changes


def _counts(m: Manifest) -> dict[str, Any]:
    """Counts as nested mappings; per-filter drops keyed by filter name (so a new filter is one change)."""
    counts = m.counts.model_dump()
    counts["filters"] = {f.name: f.dropped for f in m.counts.filters}
    return counts
