"""The shared word tokenizer and n-gram hashing, and dedup properties on random text (hypothesis)."""

from __future__ import annotations

import re
import unicodedata

import numpy as np
import polars as pl
from hypothesis import given, settings
from hypothesis import strategies as st

from cardtune.curate.filters import textnorm
from cardtune.curate.filters.exact_dedup import ExactDedup, exact_dedup
from cardtune.curate.filters.near_dedup import NearDedup, near_dedup
from cardtune.curate.testing import rendered_rows

ALPHABET = list("abcXYZ_09 \t\n.,!-çÇéÉßẞﬁＡ１’\u00a0\u2028")
texts = st.lists(st.text(alphabet=st.sampled_from(ALPHABET), max_size=30) | st.none(), max_size=20)
WORDS = ["alpha", "beta", "gamma", "delta", "eps", "zeta", "eta", "theta"]
sentences = st.lists(st.sampled_from(WORDS), min_size=0, max_size=14).map(" ".join)


frame = rendered_rows


def reference_words(text: str | None) -> list[str]:
    return re.findall(r"\w+", unicodedata.normalize("NFKC", text or "").lower())


@settings(max_examples=80, deadline=None)
@given(texts)
def test_words_match_python_regex(batch: list[str | None]) -> None:
    w = textnorm.words(pl.Series(batch, dtype=pl.String))
    assert len(w.doc_offsets) == len(batch) + 1
    for d, text in enumerate(batch):
        got = [w.text(i, 1) for i in range(int(w.doc_offsets[d]), int(w.doc_offsets[d + 1]))]
        assert got == reference_words(text)
    # equal words hash equally, different words differently
    spelled = [w.text(i, 1) for i in range(len(w.hashes))]
    assert len(set(spelled)) == len(set(w.hashes.tolist()))


@settings(max_examples=60, deadline=None)
@given(st.lists(sentences, max_size=12), st.integers(1, 6), st.booleans())
def test_ngrams_are_windows(batch: list[str], n: int, short_docs: bool) -> None:
    w = textnorm.words(pl.Series(batch, dtype=pl.String))
    g = textnorm.ngrams(w, n, short_docs=short_docs)
    windows: dict[tuple[str, ...], int] = {}
    for d, text in enumerate(batch):
        ws = text.split()
        expect = [tuple(ws[i : i + n]) for i in range(len(ws) - n + 1)]
        if short_docs and 0 < len(ws) < n:
            expect = [tuple(ws)]
        got = g.hashes[g.doc_offsets[d] : g.doc_offsets[d + 1]].tolist()
        assert len(got) == len(expect)
        for key, h in zip(expect, got, strict=True):
            assert windows.setdefault(key, h) == h  # same window, same hash, in any document
    assert len(set(windows.values())) == len(windows)  # different windows, different hashes


@settings(max_examples=60, deadline=None)
@given(st.lists(st.tuples(st.sampled_from(["a b", "A  b", "a\tb", "b a", "", "ç", "Ç"]), sentences), max_size=20))
def test_exact_dedup_both_scope_properties(pairs: list[tuple[str, str]]) -> None:
    df = frame([p for p, _ in pairs], [c for _, c in pairs])
    res = exact_dedup(df, ExactDedup(scope="both"))
    norm_p = textnorm.normalize(df["_prompt_text"]).to_list()
    norm_c = textnorm.normalize(df["_completion_text"]).to_list()
    key = dict(zip(df["source_ref"], zip(norm_p, norm_c, strict=True), strict=True))
    kept = [key[r] for r in res.kept["source_ref"]]
    assert len(kept) == len(set(kept)) == len(set(key.values()))  # never drops a row with a new normalized text
    for ref, dup in zip(res.rejects["source_ref"], res.rejects["duplicate_of"], strict=True):
        assert key[ref] == key[dup]
    assert exact_dedup(res.kept, ExactDedup(scope="both")).rejects.height == 0  # idempotent


@settings(max_examples=40, deadline=None)
@given(st.lists(sentences, max_size=25), st.sampled_from(["first", "longest_completion"]))
def test_near_dedup_idempotent_on_random_text(prompts: list[str], keep: str) -> None:
    spec = NearDedup(ngram=2, keep=keep)
    df = frame(prompts, [p[: i % 7] for i, p in enumerate(prompts)])
    res = near_dedup(df, spec)
    assert res.kept.height + res.rejects.height == df.height
    kept_refs = set(res.kept["source_ref"].to_list())
    assert set(res.rejects["duplicate_of"].to_list()) <= kept_refs  # every reject points at a kept row
    assert near_dedup(res.kept, spec).rejects.height == 0


def test_empty_batches() -> None:
    w = textnorm.words(pl.Series([], dtype=pl.String))
    assert len(w.hashes) == 0 and w.doc_offsets.tolist() == [0]
    g = textnorm.ngrams(w, 5, short_docs=True)
    assert len(g.hashes) == 0 and g.doc_offsets.tolist() == [0]
    w = textnorm.words(pl.Series(["", None, "  "], dtype=pl.String))
    assert w.counts.tolist() == [0, 0, 0]
    assert np.array_equal(textnorm.ngrams(w, 1).doc_offsets, [0, 0, 0, 0])
