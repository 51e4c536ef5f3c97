"""Token counts for mixing budgets, reports and quality bounds.

Without a tokenizer, a "token" is a whitespace-separated word (fast, dependency-free, stated as such in
reports). With one (a hub id or a local ``tokenizer.json``/directory), counts come from the ``tokenizers``
library, loaded lazily so the core install does not need it.
"""

from __future__ import annotations

from functools import lru_cache
from typing import TYPE_CHECKING, Any

import numpy as np
import polars as pl

from cardtune.curate.errors import UserInputError

if TYPE_CHECKING:
    from cardtune.curate.inputs import NamedInput

WORDS = "words"


def load_tokenizer(named: NamedInput) -> Any:
    """A ``tokenizers.Tokenizer`` from a resolved local file/directory or a hub id (clear error offline).

    Cached per process by the file's path, size and modification time, so an edited tokenizer file is reread.
    """
    path = named.path
    if path is not None and path.is_dir():
        path = path / "tokenizer.json"
    if path is not None:
        if not path.is_file():
            raise UserInputError(f"{path}: no tokenizer.json there (tokenizer {named.value!r})")
        stat = path.stat()
        return _from_file(str(path), stat.st_size, stat.st_mtime_ns)
    assert named.hub_id is not None
    return _from_hub(named.hub_id)


def _tokenizer_class() -> Any:
    try:
        from tokenizers import Tokenizer
    except ImportError:
        raise UserInputError("counting tokens needs `tokenizers`: pip install tokenizers") from None
    return Tokenizer


@lru_cache(maxsize=8)
def _from_file(path: str, size: int, mtime_ns: int) -> Any:
    try:
        return _tokenizer_class().from_file(path)
    except UserInputError:
        raise
    except Exception as exc:
        raise UserInputError(f"{path}: not a tokenizers JSON file: {exc}") from None


@lru_cache(maxsize=8)
def _from_hub(name: str) -> Any:
    cls = _tokenizer_class()
    try:
        return cls.from_pretrained(name)
    except Exception as exc:
        raise UserInputError(
            f"tokenizer {name!r}: not a local file or directory, and loading it from the hub failed ({exc}); "
            "it needs network access or a local path (relative to the card's folder)"
        ) from None


def count_tokens(texts: pl.Series, tokenizer: NamedInput | None) -> np.ndarray:
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


def row_tokens(rows: pl.DataFrame, tokenizer: NamedInput | None) -> np.ndarray[Any, np.dtype[np.int64]]:
    """Tokens of prompt + completion per rendered row (the flat-text columns; words without a tokenizer)."""
    from cardtune.curate.rows import COMPLETION_TEXT, PROMPT_TEXT

    if rows.height == 0:
        return np.zeros(0, dtype=np.int64)
    text = rows[PROMPT_TEXT].fill_null("") + "\n" + rows[COMPLETION_TEXT].fill_null("")
    return np.asarray(count_tokens(text, tokenizer), dtype=np.int64)
