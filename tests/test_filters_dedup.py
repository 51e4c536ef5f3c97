"""Exact and near dedup: properties (idempotent, never merges different texts), keep policies, bad input."""

from __future__ import annotations

import numpy as np
import polars as pl
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st
from pydantic import ValidationError

from cardtune.curate.filters import minhash, textnorm
from cardtune.curate.filters.exact_dedup import ExactDedup, exact_dedup
from cardtune.curate.filters.near_dedup import NearDedup, near_dedup
from cardtune.curate.testing import rendered_rows

frame = rendered_rows


texts = st.lists(st.text(alphabet=st.sampled_from(list("ab Ab\t\nçÇ")), max_size=12), max_size=25)
SENTENCE = "the quick brown fox jumps over the lazy dog while the cat sleeps on the warm mat in the sun"


@settings(max_examples=60, deadline=None)
@given(texts)
def test_exact_dedup_idempotent_and_never_merges_different_texts(prompts: list[str]) -> None:
    df = frame(prompts)
    res = exact_dedup(df, ExactDedup(scope="prompt"))
    norm = textnorm.normalize(pl.Series(prompts, dtype=pl.String)).to_list()
    assert sorted(set(norm)) == sorted(textnorm.normalize(res.kept["_prompt_text"]).to_list())
    assert res.kept.height + res.rejects.height == df.height
    again = exact_dedup(res.kept, ExactDedup(scope="prompt"))
    assert again.rejects.height == 0
    # every reject names a kept row with the same normalized text
    by_ref = dict(zip(df["source_ref"], norm, strict=True))
    for ref, dup in zip(res.rejects["source_ref"], res.rejects["duplicate_of"], strict=True):
        assert by_ref[ref] == by_ref[dup]


def test_exact_dedup_first_kept_and_scope() -> None:
    df = frame(["Hello  World", "hello world", "other"], ["x", "y", "x"])
    assert exact_dedup(df, ExactDedup(scope="prompt")).kept["source_ref"].to_list() == ["t:0", "t:2"]
    assert exact_dedup(df, ExactDedup(scope="both")).rejects.height == 0


@settings(max_examples=25, deadline=None)
@given(st.lists(st.sampled_from([SENTENCE, SENTENCE + " again", "a b c d e f", "", "x y"]), max_size=15))
def test_near_dedup_idempotent(prompts: list[str]) -> None:
    res = near_dedup(frame(prompts), NearDedup())
    assert near_dedup(res.kept, NearDedup()).rejects.height == 0


def test_near_dedup_keep_policies_and_against() -> None:
    df = frame([SENTENCE, SENTENCE + " again", "something else entirely, five words"], ["a", "longer", "z"])
    first = near_dedup(df, NearDedup())
    assert first.kept["source_ref"].to_list() == ["t:0", "t:2"]
    assert first.rejects["duplicate_of"].to_list() == ["t:0"]
    longest = near_dedup(df, NearDedup(keep="longest_completion"))
    assert longest.kept["source_ref"].to_list() == ["t:1", "t:2"]
    released = frame([SENTENCE]).with_columns(pl.lit("v1:0").alias("source_ref"))
    res = near_dedup(df, NearDedup(), against=[released])
    assert res.kept["source_ref"].to_list() == ["t:2"]
    assert set(res.rejects["duplicate_of"].to_list()) == {"v1:0"}


def test_empty_and_short_text_never_crash() -> None:
    df = frame(["", "", "a", "a", "   "], ["", "", "", "", ""])
    res = near_dedup(df, NearDedup())
    assert res.report["rows_without_shingles"] == 3
    assert exact_dedup(df, ExactDedup()).kept.height == 2


def test_estimates_track_true_jaccard() -> None:
    words = [f"w{i}" for i in range(400)]
    a = " ".join(words[:300])
    b = " ".join(words[100:400])  # 5-gram Jaccard = 196 / 400 ≈ 0.49
    sig = minhash.MinHasher(num_perm=256).signatures(pl.Series([a, b]))
    est = minhash.estimated_jaccard(sig, np.array([0]), np.array([1]))[0]
    assert abs(est - 196 / 400) < 0.1


def test_banding_derivation_and_validation() -> None:
    assert minhash.optimal_banding(0.8, 128) == (16, 8)
    with pytest.raises(ValidationError):
        NearDedup(bands=10, rows=8)
    with pytest.raises(ValidationError):
        NearDedup(threshold=0.0)
    with pytest.raises(ValidationError):
        NearDedup(threshold=1.5)
    with pytest.raises(ValueError):
        minhash.optimal_banding(0.0, 128)
