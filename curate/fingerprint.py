"""Version ids: a sha256 over canonical JSON of everything that determines a dataset version.

Inputs: the card's data sections (validated, with defaults filled in), the bytes of every template used,
a content hash of every source (file bytes, or a hub commit sha), of every benchmark set and tokenizer file the
filters and the mixture read, and cardtune's version. Anything that
cannot be hashed raises — there is never a random fallback (DESIGN §10.5).
"""

from __future__ import annotations

import hashlib
import json
from collections.abc import Mapping
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
    }


def version_id(inputs: Mapping[str, Any]) -> str:
    """The content-addressed id of a version (first ``ID_LENGTH`` hex chars of a sha256)."""
    return hashlib.sha256(canonical_json(inputs)).hexdigest()[:ID_LENGTH]


def sha256_bytes(data: bytes) -> str:
    """``sha256:<hex>`` of some bytes."""
    return "sha256:" + hashlib.sha256(data).hexdigest()
