"""Quality rules: rule order and evidence, token bounds with a real (tiny) tokenizer, and bad tokenizers."""

from __future__ import annotations

import json
from pathlib import Path

import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cardtune.curate.errors import UserInputError
from cardtune.curate.filters.quality import Quality
from cardtune.curate.testing import rendered_rows, run_filter

rows = rendered_rows


def word_level_tokenizer(directory: Path) -> Path:
    """A WordLevel tokenizer (whitespace/punctuation pre-tokenizer) saved as ``directory/tokenizer.json``."""
    from tokenizers import Tokenizer, models, pre_tokenizers

    vocab = {"[UNK]": 0, **{w: i + 1 for i, w in enumerate(["one", "two", "three", "four", *"abcdefg"])}}
    tok = Tokenizer(models.WordLevel(vocab=vocab, unk_token="[UNK]"))
    tok.pre_tokenizer = pre_tokenizers.Whitespace()
    path = directory / "tokenizer.json"
    tok.save(str(path))
    return path


def test_quality_rules() -> None:
    df = rows(["p", "same", "p", "p" * 50, "p"], ["", "same", "ok", "ok", "la la la la la la la la"])
    res = run_filter("quality", df, Quality(min_chars=2, max_chars=40, max_repetition=0.5))
    assert res.kept["source_ref"].to_list() == ["t:2"]
    assert res.rejects["reason"].to_list() == [
        "empty_completion",
        "completion_equals_prompt",
        "too_long_chars",
        "repetition",
    ]
    assert json.loads(res.rejects["evidence"][2]) == {"rule": "too_long_chars", "value": 52, "bound": 40}
    assert res.report == {
        "dropped": 4,
        "by_rule": {
            "empty_completion": 1,
            "completion_equals_prompt": 1,
            "too_short_chars": 0,
            "too_long_chars": 1,
            "repetition": 1,
        },
    }


def test_token_bounds(tmp_path: Path) -> None:
    path = word_level_tokenizer(tmp_path)
    # prompt + completion tokens: 1 + 2 = 3 (kept), 4 + 5 = 9 (too many), 1 + 1 = 2 (too few), "zz, q" = 3 + 1
    df = rows(["one", "one two three four", "x", "zz, q"], ["a b", "c d e f g", "y", "a"])
    res = run_filter("quality", df, Quality(tokenizer=str(path), min_tokens=3, max_tokens=8))
    assert res.kept["source_ref"].to_list() == ["t:0", "t:3"]
    assert res.rejects["reason"].to_list() == ["too_many_tokens", "too_few_tokens"]
    evidence = [json.loads(e) for e in res.rejects["evidence"]]
    assert evidence == [
        {"rule": "too_many_tokens", "value": 9, "bound": 8},
        {"rule": "too_few_tokens", "value": 2, "bound": 3},
    ]
    # a directory holding tokenizer.json works too; the char rules come first ("x" + "y" is 2 chars)
    by_dir = run_filter("quality", df, Quality(tokenizer=str(tmp_path), max_tokens=8, min_chars=5))
    assert by_dir.rejects["reason"].to_list() == ["too_many_tokens", "too_short_chars"]


def test_bad_tokenizer(tmp_path: Path) -> None:
    bad = tmp_path / "bad.json"
    bad.write_text("not a tokenizer")
    with pytest.raises(UserInputError, match="not a tokenizers JSON file") as info:
        run_filter("quality", rows(["p"], ["c"]), Quality(tokenizer=str(bad), max_tokens=5))
    assert info.value.issues[0].loc == ("filters", "quality", "tokenizer")
    with pytest.raises(ValidationError, match="need a `tokenizer`"):
        Quality(max_tokens=5)


@settings(max_examples=80, deadline=None)
@given(st.lists(st.text(alphabet="ab c\n", max_size=60), min_size=1, max_size=30), st.integers(1, 4))
def test_repetition_matches_a_set_per_text(texts: list[str], n: int) -> None:
    from cardtune.curate.filters import textnorm
    from cardtune.curate.filters.quality import repetition

    series = pl.Series(texts, dtype=pl.String)
    grams = textnorm.ngrams(textnorm.words(series), n)
    expected = []
    for i in range(len(texts)):
        hs = grams.hashes[grams.doc_offsets[i] : grams.doc_offsets[i + 1]].tolist()
        expected.append(1 - len(set(hs)) / len(hs) if hs else 0.0)
    assert repetition(series, n).tolist() == pytest.approx(expected)
