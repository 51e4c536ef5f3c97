"""Version ids: a sha256 over canonical JSON of everything that determines a dataset version.

Inputs: the card's data sections (validated, with defaults filled in), the bytes of every template used,
a content hash of every source (file bytes, or a hub commit sha), of every benchmark set and tokenizer file the
filters and the mixture read, cardtune's version, and a hash of the curation code itself. Anything that
cannot be hashed raises — there is never a random fallback (DESIGN §10.5).
"""

from __future__ import annotations

import functools
import hashlib
import json
from collections.abc import Mapping
from pathlib import Path
from typing import Any

import cardtune

ID_LENGTH = 16  # hex characters of the sha256 shown as the version id


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
        "cardtune": cardtune.__version__,
        "code": code_fingerprint(),
    }


@functools.lru_cache(maxsize=1)
def code_fingerprint() -> str:
    """sha256 over the curation code itself (``cardtune.curate``'s modules).

    The version label alone is not enough: between releases (or in a checkout) a change to how rows are rendered,
    filtered or mixed must not reuse a version built by the old code under the same id.
    """
    digest = hashlib.sha256()
    for path in sorted(Path(__file__).resolve().parent.glob("*.py")):
        digest.update(path.name.encode() + b"\0" + path.read_bytes())
    return "sha256:" + digest.hexdigest()


def version_id(inputs: Mapping[str, Any]) -> str:
    """The content-addressed id of a version (first ``ID_LENGTH`` hex chars of a sha256)."""
    return hashlib.sha256(canonical_json(inputs)).hexdigest()[:ID_LENGTH]


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
