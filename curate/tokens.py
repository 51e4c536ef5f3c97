"""Token counts for mixing budgets, reports and quality bounds.

Without a tokenizer, a "token" is a whitespace-separated word (fast, dependency-free, stated as such in
reports). With one (a hub id or a local ``tokenizer.json``/directory), counts come from the ``tokenizers``
library, loaded lazily so the core install does not need it.
"""

from __future__ import annotations

from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import polars as pl

from cardtune.curate.yamlsrc import UserInputError

WORDS = "words"


@lru_cache(maxsize=8)
def load_tokenizer(name: str) -> Any:
    """A ``tokenizers.Tokenizer`` from a local file/directory or a hub id (clear error offline)."""
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserInputError(
            f"tokenizer {name!r}: counting tokens needs `tokenizers`: pip install tokenizers"
        ) from None
    path = Path(name).expanduser()
    if path.is_dir():
        path = path / "tokenizer.json"
    if path.is_file():
        try:
            return Tokenizer.from_file(str(path))
        except Exception as exc:
            raise UserInputError(f"{path}: not a tokenizers JSON file: {exc}") from None
    try:
        return Tokenizer.from_pretrained(name)
    except Exception as exc:
        raise UserInputError(
            f"tokenizer {name!r}: not a local file or directory, and loading it from the hub failed ({exc}); "
            "it needs network access or a local path"
        ) from None


def count_tokens(texts: pl.Series, tokenizer: str | None) -> np.ndarray:
    """Tokens per text (int64): whitespace words without a tokenizer, else the tokenizer's ids."""
    if tokenizer is None:
        return texts.fill_null("").str.count_matches(r"\S+").cast(pl.Int64).to_numpy()
    tok = load_tokenizer(tokenizer)
    values = texts.fill_null("").to_list()
    out = np.empty(len(values), dtype=np.int64)
    batch = 4096
    for start in range(0, len(values), batch):
        encodings = tok.encode_batch(values[start : start + batch], add_special_tokens=False)
        out[start : start + len(encodings)] = [len(e.ids) for e in encodings]
    return out
